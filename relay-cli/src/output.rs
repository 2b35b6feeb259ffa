//! JSON events on stdout, one object per line.

use std::io::Write;

/// Writes one event line and flushes, so scripts see it at once.
pub(crate) fn emit(event: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{event}");
    let _ = out.flush();
}
