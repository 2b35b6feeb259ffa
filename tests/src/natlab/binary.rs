//! Finding the `relay` binary for tests that run it inside the lab.
//!
//! Cargo tells only relay-cli's own tests where its binary is (`CARGO_BIN_EXE_relay`),
//! so this crate builds it: `cargo build -p relay-cli --bin relay --profile test`, run
//! from the workspace root with the cargo that runs the tests (`$CARGO`), and reads the
//! binary's path from cargo's JSON messages. The `test` profile is the one `cargo test`
//! already built the workspace with, so this is a no-op or a short link step. Set
//! `RELAY_BIN` to use a binary built elsewhere instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::error::LabError;

/// The path of an up-to-date `relay` binary, built once per test process.
pub fn relay_binary() -> Result<PathBuf, LabError> {
    static RELAY: OnceLock<Result<PathBuf, (String, String)>> = OnceLock::new();
    RELAY
        .get_or_init(find_or_build)
        .clone()
        .map_err(|(command, detail)| LabError::Command { command, detail })
}

fn find_or_build() -> Result<PathBuf, (String, String)> {
    if let Some(path) = std::env::var_os("RELAY_BIN") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err((
                "RELAY_BIN".into(),
                format!("{} is not a file", path.display()),
            ))
        };
    }
    let cargo = std::env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(Into::into))
        .unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."));
    let mut command = Command::new(&cargo);
    // Cargo gives this test process the variables it sets for a crate (CARGO_PKG_NAME,
    // CARGO_MANIFEST_DIR, ...). Build scripts watch some of them (ring's does), so
    // passing them on would make this build and the outer one rebuild each other.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ]
        .iter()
        .any(|p| key.starts_with(p))
            || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&key)
        {
            command.env_remove(key);
        }
    }
    command.current_dir(workspace).args([
        "build",
        "-p",
        "relay-cli",
        "--bin",
        "relay",
        "--profile",
        "test",
        "--message-format",
        "json-render-diagnostics",
    ]);
    let line = super::netns::describe(&command);
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| (line.clone(), format!("cannot start it: {e}")))?;
    if !out.status.success() {
        return Err((
            line,
            format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "relay")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| (line, "cargo named no `relay` executable".into()))
}
