//! Programs run inside the lab's namespaces, with their JSON event lines captured.
//!
//! Each program runs as `setpriv --pdeathsig KILL -- ip netns exec NS PROGRAM ARGS`
//! (`ip netns exec` and `setpriv` both `exec`, so the child's pid is the program's). All
//! children are started from one thread the lab owns, so the parent-death signal, which
//! Linux sends when the *thread* that forked the child ends, fires exactly when the lab
//! is gone: even a test process killed before its destructors ran leaves no program
//! behind. Without `setpriv` (util-linux) the wrapper is left out and only the drop
//! guards apply.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::error::LabError;
use super::netns;

/// How much of a process's standard error is kept (the end of it).
const STDERR_KEEP: usize = 256 * 1024;

/// A child process shared between its [`Process`] handle and the lab, so whichever
/// ends first kills it, and a pid is never signalled after it was reaped.
pub(crate) type SharedChild = Arc<Mutex<Option<Child>>>;

/// A program running inside one of the lab's namespaces.
///
/// Standard output is read line by line; each line that parses as JSON is an event (the
/// `relay` command prints one object per line with an `"event"` field), any other line
/// is kept as a JSON string. Standard error is kept for error messages. Dropping the
/// handle kills the program; so does dropping the lab.
#[derive(Debug)]
pub struct Process {
    what: String,
    pid: u32,
    child: SharedChild,
    lines: mpsc::Receiver<(Instant, Value)>,
    seen: Vec<Value>,
    /// When each line of `seen` was read from the pipe.
    seen_at: Vec<Instant>,
    cursor: usize,
    stderr: Arc<Mutex<String>>,
}

impl Process {
    /// The program's process id (valid until it is killed or reaped).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the next line whose `"event"` field is `event`, after the one the
    /// previous call returned. Lines in between stay in [`Process::events`].
    pub fn wait_event(&mut self, event: &str, timeout: Duration) -> Result<Value, LabError> {
        self.wait_for(&format!("event {event:?}"), timeout, |v| {
            v.get("event").and_then(Value::as_str) == Some(event)
        })
    }

    /// Waits for the next line that `matches`, after the one the previous wait returned.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        matches: impl FnMut(&Value) -> bool,
    ) -> Result<Value, LabError> {
        self.wait_for_at(what, timeout, matches)
            .map(|(line, _)| line)
    }

    /// [`Process::wait_event`] that also says when the line was read from the program's
    /// output: a timestamp independent of how late the caller looked.
    pub fn wait_event_at(
        &mut self,
        event: &str,
        timeout: Duration,
    ) -> Result<(Value, Instant), LabError> {
        self.wait_for_at(&format!("event {event:?}"), timeout, |v| {
            v.get("event").and_then(Value::as_str) == Some(event)
        })
    }

    /// [`Process::wait_for`] that also says when the line was read from the program's
    /// output.
    pub fn wait_for_at(
        &mut self,
        what: &str,
        timeout: Duration,
        mut matches: impl FnMut(&Value) -> bool,
    ) -> Result<(Value, Instant), LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            while self.cursor < self.seen.len() {
                let i = self.cursor;
                self.cursor += 1;
                if matches(&self.seen[i]) {
                    return Ok((self.seen[i].clone(), self.seen_at[i]));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, line)) => {
                    self.seen.push(line);
                    self.seen_at.push(at);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(LabError::Timeout {
                        what: format!("{what} from {}", self.what),
                        after: timeout,
                        stderr: self.stderr(),
                    });
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self
                        .wait(Duration::from_secs(2))
                        .map(|s| s.to_string())
                        .unwrap_or_else(|_| "still running".into());
                    return Err(LabError::Exited {
                        what: format!("{what} from {}", self.what),
                        status,
                        stderr: self.stderr(),
                    });
                }
            }
        }
    }

    /// Every line read so far, including any that arrived since the last wait.
    pub fn events(&mut self) -> &[Value] {
        while let Ok((at, line)) = self.lines.try_recv() {
            self.seen.push(line);
            self.seen_at.push(at);
        }
        &self.seen
    }

    /// Every line read so far with the time it was read, including any that arrived
    /// since the last wait.
    pub fn timed_events(&mut self) -> Vec<(Instant, Value)> {
        self.events();
        self.seen_at
            .iter()
            .copied()
            .zip(self.seen.iter().cloned())
            .collect()
    }

    /// The end of what the program wrote to standard error so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits for the program to exit.
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus, LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut guard = self.child.lock().unwrap_or_else(PoisonError::into_inner);
                let Some(child) = guard.as_mut() else {
                    return Err(LabError::Invalid(format!("{} was killed", self.what)));
                };
                if let Some(status) = child
                    .try_wait()
                    .map_err(|e| LabError::io(format!("wait for {}", self.what), e))?
                {
                    return Ok(status);
                }
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!("{} to exit", self.what),
                    after: timeout,
                    stderr: self.stderr(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the program (if it still runs) and reaps it.
    pub fn kill(&mut self) {
        kill(&self.child);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        kill(&self.child);
    }
}

/// Kills and reaps a shared child unless that was done already.
pub(crate) fn kill(child: &SharedChild) {
    let mut guard = child.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(mut c) = guard.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// The lab's thread that starts every child (see the module doc).
#[derive(Debug)]
pub(crate) struct Spawner {
    requests: Option<mpsc::Sender<SpawnRequest>>,
    thread: Option<JoinHandle<()>>,
    setpriv: bool,
}

impl Spawner {
    pub(crate) fn start() -> Result<Self, LabError> {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        let thread = std::thread::Builder::new()
            .name("natlab-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .map_err(|e| LabError::io("spawn the spawner thread", e))?;
        let setpriv = Command::new("setpriv")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        Ok(Spawner {
            requests: Some(tx),
            thread: Some(thread),
            setpriv,
        })
    }

    /// Starts `program args` in namespace `ns`; `what` names it in errors.
    pub(crate) fn spawn(
        &self,
        ns: &str,
        what: String,
        program: &OsStr,
        args: &[OsString],
    ) -> Result<(Process, SharedChild), LabError> {
        let mut command = if self.setpriv {
            let mut c = Command::new("setpriv");
            c.args(["--pdeathsig", "KILL", "--", "ip"]);
            c
        } else {
            Command::new("ip")
        };
        command
            .args(["netns", "exec", ns])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let line = netns::describe(&command);
        let (reply_tx, reply_rx) = mpsc::channel();
        let sent = self
            .requests
            .as_ref()
            .is_some_and(|r| r.send((command, reply_tx)).is_ok());
        let spawned = match (sent, reply_rx.recv()) {
            (true, Ok(result)) => result,
            _ => Err(std::io::Error::other("the spawner thread is gone")),
        };
        let mut child = spawned.map_err(|e| LabError::Command {
            command: line,
            detail: format!("cannot start it: {e}"),
        })?;
        let pid = child.id();
        let (lines_tx, lines) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let at = Instant::now();
                    let value = serde_json::from_str::<Value>(&line).unwrap_or(Value::String(line));
                    if lines_tx.send((at, value)).is_err() {
                        break;
                    }
                }
            });
        }
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut pipe) = child.stderr.take() {
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut kept = stderr.lock().unwrap_or_else(PoisonError::into_inner);
                    kept.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if kept.len() > STDERR_KEEP {
                        let mut cut = kept.len() - STDERR_KEEP / 2;
                        while !kept.is_char_boundary(cut) {
                            cut += 1;
                        }
                        kept.drain(..cut);
                    }
                }
            });
        }
        let child = Arc::new(Mutex::new(Some(child)));
        let process = Process {
            what,
            pid,
            child: child.clone(),
            lines,
            seen: Vec::new(),
            seen_at: Vec::new(),
            cursor: 0,
            stderr,
        };
        Ok((process, child))
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
