//! The relay's decision hook answered by a program (`node.relay.service.acl.hook_command`).
//!
//! Each request the policy asks about ([`Event::RelayAsk`](relay_proto::Event::RelayAsk))
//! runs the program once, with the request as one JSON line on its stdin:
//!
//! ```json
//! {"ticket":7,"kind":"reserve","peer":"12D3...","ip":"192.0.2.1"}
//! {"ticket":8,"kind":"connect","peer":"12D3...","ip":"192.0.2.1","target":"12D3..."}
//! ```
//!
//! Exit status 0 allows the request; any other status, a program that cannot be started,
//! or one still running at the request's deadline (`transport.hop_timeout`) refuses it.
//! The program's stdout is discarded (ours carries JSON events); its stderr is ours.
//! Requests wait at most `service.max_pending_asks` at a time, which bounds the programs
//! running at once.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use relay_proto::hop::{HookQuery, HookRequest};
use relay_tokio::Node;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// How long a program may take when the policy set no deadline.
const NO_DEADLINE_CAP: Duration = Duration::from_secs(60);

/// Runs the hook program for each request and answers the node.
#[derive(Clone)]
pub(crate) struct HookRunner {
    argv: Arc<[String]>,
    node: Node,
}

impl HookRunner {
    /// `argv` is the program and its arguments; not empty (the config check says so).
    pub(crate) fn new(argv: Vec<String>, node: Node) -> Self {
        Self {
            argv: argv.into(),
            node,
        }
    }

    /// Starts answering `request` in the background.
    pub(crate) fn ask(&self, request: HookRequest) {
        let runner = self.clone();
        tokio::spawn(async move {
            let budget = request.deadline.map_or(NO_DEADLINE_CAP, |deadline| {
                deadline.saturating_duration_since(Instant::now())
            });
            let allow = match tokio::time::timeout(budget, runner.decide(&request)).await {
                Ok(Ok(allow)) => allow,
                Ok(Err(e)) => {
                    tracing::warn!(program = %runner.argv[0], "decision hook: {e}; refusing");
                    false
                }
                Err(_) => {
                    tracing::warn!(program = %runner.argv[0], "decision hook timed out; refusing");
                    false
                }
            };
            let ticket = request.ticket;
            // The node may have refused the request already (its deadline passed); an
            // answer for an unknown ticket is ignored there.
            let _ = runner
                .node
                .with_node(move |node, now| node.relay_answer(now, ticket, allow))
                .await;
        });
    }

    async fn decide(&self, request: &HookRequest) -> std::io::Result<bool> {
        let mut child = Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            let mut line = request_json(request).to_string();
            line.push('\n');
            // A program that exits without reading its input still answers by its status.
            let _ = stdin.write_all(line.as_bytes()).await;
        }
        Ok(child.wait().await?.success())
    }
}

/// The JSON line a hook program reads.
pub(crate) fn request_json(request: &HookRequest) -> serde_json::Value {
    let ticket = request.ticket.as_u64();
    match request.query {
        HookQuery::Reserve { peer, ip } => serde_json::json!({
            "ticket": ticket,
            "kind": "reserve",
            "peer": peer.to_string(),
            "ip": ip.to_string(),
        }),
        HookQuery::Connect { src, src_ip, dst } => serde_json::json!({
            "ticket": ticket,
            "kind": "connect",
            "peer": src.to_string(),
            "ip": src_ip.to_string(),
            "target": dst.to_string(),
        }),
    }
}
