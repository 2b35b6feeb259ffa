//! Creating, entering and removing network namespaces, and running the `ip`, `nft` and
//! `iptables` commands that configure them.
//!
//! Namespaces are named `natlab-<pid>-<n>-<host>`: the test process's id and a counter
//! keep parallel labs (in one process or several) apart, and let a later lab remove the
//! namespaces of a process that died without cleaning up (see [`sweep_stale`]).

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sched::CloneFlags;

use super::error::LabError;
use super::topology::Host;

const PREFIX: &str = "natlab-";
const NETNS_DIR: &str = "/run/netns";

/// The names of one lab's namespaces, and the guard that deletes them.
#[derive(Debug)]
pub(crate) struct Namespaces {
    /// `natlab-<pid>-<n>`, shared by the lab's namespaces.
    id: String,
    /// The namespaces created so far, deleted in reverse order on drop.
    created: Vec<Host>,
}

impl Namespaces {
    /// Checks that namespaces can be made here and reserves a fresh lab id. Nothing is
    /// created yet.
    pub(crate) fn prepare() -> Result<Self, LabError> {
        if !nix::unistd::geteuid().is_root() {
            return Err(LabError::Unavailable("not running as root".into()));
        }
        match Command::new("ip").arg("-V").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                return Err(LabError::Unavailable(format!(
                    "`ip -V` failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            Err(e) => {
                return Err(LabError::Unavailable(format!(
                    "no `ip` command (install iproute2): {e}"
                )));
            }
        }
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Ok(Namespaces {
            id: format!("{PREFIX}{}-{n}", std::process::id()),
            created: Vec::new(),
        })
    }

    /// The lab's id: the common prefix of its namespace names.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The namespace name of a host.
    pub(crate) fn name(&self, host: Host) -> String {
        format!("{}-{}", self.id, host.name())
    }

    /// Creates the namespace of `host` with its loopback up. The first creation that
    /// fails means namespaces are unavailable here.
    pub(crate) fn create(&mut self, host: Host) -> Result<(), LabError> {
        let name = self.name(host);
        if let Err(e) = run("ip", ["netns", "add", name.as_str()]) {
            if self.created.is_empty() {
                return Err(LabError::Unavailable(format!(
                    "cannot create a network namespace: {e}"
                )));
            }
            return Err(e);
        }
        self.created.push(host);
        run("ip", ["-n", name.as_str(), "link", "set", "lo", "up"])?;
        Ok(())
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        while let Some(host) = self.created.pop() {
            let name = self.name(host);
            if let Err(e) = run("ip", ["netns", "del", name.as_str()]) {
                eprintln!("natlab: cannot delete namespace {name}: {e}");
            }
        }
    }
}

/// Moves the calling thread into the namespace `name`. Sockets the thread creates from
/// then on belong to that namespace wherever they are used later.
pub(crate) fn enter(name: &str) -> Result<(), LabError> {
    let path = Path::new(NETNS_DIR).join(name);
    let file = std::fs::File::open(&path)
        .map_err(|e| LabError::io(format!("open {}", path.display()), e))?;
    nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
        .map_err(|e| LabError::io(format!("setns into {name}"), e.into()))
}

/// Deletes the namespaces of labs whose process no longer exists, left behind by a test
/// process that was killed before its guards ran. Best effort: failures are ignored.
pub(crate) fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let _ = run("ip", ["netns", "del", name]);
    }
}

/// Lists the lab namespaces that exist now whose names start with `prefix`.
pub(crate) fn existing(prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// Runs a command to completion; its standard output on success.
pub(crate) fn run<I, S>(program: &str, args: I) -> Result<String, LabError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_with_input(program, args, None)
}

/// Runs a command with `input` on its standard input; its standard output on success.
pub(crate) fn run_with_input<I, S>(
    program: &str,
    args: I,
    input: Option<&str>,
) -> Result<String, LabError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(program);
    command.args(args);
    let line = describe(&command);
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| LabError::Command {
        command: line.clone(),
        detail: format!("cannot start it: {e}"),
    })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| LabError::io(format!("write to `{line}`"), e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| LabError::io(format!("wait for `{line}`"), e))?;
    if !out.status.success() {
        return Err(LabError::Command {
            command: line,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A command as a reader would type it.
pub(crate) fn describe(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}
