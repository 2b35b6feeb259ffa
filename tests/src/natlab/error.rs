//! The one error type of the lab.

use std::time::Duration;

/// What went wrong while building, using or tearing down a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Network namespaces cannot be made here: not root, no `ip` command, or the kernel
    /// refused to create one. Tests print `natlab: skipped: <reason>` and return; this is
    /// the only error that skips rather than fails.
    #[error("network namespaces are unavailable: {0}")]
    Unavailable(String),
    /// An external command (`ip`, `nft`, `iptables`, `cargo`) failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line, for the reader.
        command: String,
        /// Its exit status and standard error.
        detail: String,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What the lab was doing.
        what: String,
        /// The error the system gave.
        #[source]
        source: std::io::Error,
    },
    /// Something did not happen in time.
    #[error("timed out after {after:?} waiting for {what}{}", stderr_tail(.stderr))]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long the lab waited.
        after: Duration,
        /// The end of the process's standard error, when a process was awaited.
        stderr: String,
    },
    /// A process ended before it produced what was awaited.
    #[error("{what}: the process ended first ({status}){}", stderr_tail(.stderr))]
    Exited {
        /// What was awaited.
        what: String,
        /// The exit status, or "still running" when only its output ended.
        status: String,
        /// The end of its standard error.
        stderr: String,
    },
    /// An argument the lab cannot use, such as a router asked for its NAT's host.
    #[error("invalid argument: {0}")]
    Invalid(String),
}

impl LabError {
    /// An [`LabError::Io`] saying what the lab was doing.
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        LabError::Io {
            what: what.into(),
            source,
        }
    }

    /// Whether this error means the lab cannot run here at all (the skip case).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, LabError::Unavailable(_))
    }
}

fn stderr_tail(stderr: &str) -> String {
    const KEEP: usize = 2000;
    let trimmed = stderr.trim_end();
    if trimmed.is_empty() {
        return String::new();
    }
    let mut start = trimmed.len().saturating_sub(KEEP);
    while !trimmed.is_char_boundary(start) {
        start += 1;
    }
    format!("; stderr:\n{}", &trimmed[start..])
}
