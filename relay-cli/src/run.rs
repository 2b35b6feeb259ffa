//! The long-running roles: `listen` and `dial`.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use relay_proto::Event;
use relay_proto::node::addr::{parse_tcp, peer_of};
use relay_tokio::Node;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::output::emit;
use crate::{DialArgs, ListenArgs, identity};

/// The echo protocol `relay listen` answers, for tests and scripts.
pub(crate) const ECHO_PROTOCOL: &str = "/echo/1.0.0";

/// Runs a future on a multi-threaded tokio runtime.
pub(crate) fn block_on<F: Future<Output = Result<(), String>>>(future: F) -> Result<(), String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?
        .block_on(future)
}

async fn hold(seconds: Option<f64>) {
    match seconds {
        Some(s) if s.is_finite() && s >= 0.0 => {
            tokio::time::sleep(Duration::from_secs_f64(s)).await
        }
        _ => std::future::pending().await,
    }
}

pub(crate) async fn listen(args: ListenArgs) -> Result<(), String> {
    let keypair = identity::load(&args.identity)?;
    let mut builder = Node::builder().keypair(keypair);
    for addr in &args.listen {
        let (socket, peer) = parse_tcp(addr).map_err(|e| e.to_string())?;
        if peer.is_some() {
            return Err(format!(
                "--listen {addr}: a listen address has no /p2p/ part"
            ));
        }
        builder = builder.listen(socket);
    }
    let node = builder.start().map_err(|e| format!("cannot listen: {e}"))?;
    let mut events = node.events().map_err(|e| e.to_string())?;
    let mut echo = node.accept(ECHO_PROTOCOL).map_err(|e| e.to_string())?;
    emit(&json!({
        "event": "listening",
        "peer_id": node.peer_id().to_string(),
        "addrs": node.listen_addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    }));
    tokio::spawn(async move {
        while let Some(mut stream) = echo.next().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = tokio::io::split(&mut stream);
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
                let _ = writer.shutdown().await;
            });
        }
    });
    let report = async {
        while let Some(event) = events.next().await {
            report_event(&event);
        }
    };
    tokio::select! {
        _ = report => {}
        _ = hold(args.hold) => {}
    }
    node.shutdown().await;
    Ok(())
}

pub(crate) async fn dial(args: DialArgs) -> Result<(), String> {
    let keypair = identity::load(&args.identity)?;
    parse_tcp(&args.target).map_err(|e| e.to_string())?;
    if peer_of(&args.target).is_none() {
        return Err(format!(
            "{}: the target must end with /p2p/<peer id>",
            args.target
        ));
    }
    let node = Node::builder()
        .keypair(keypair)
        .start()
        .map_err(|e| e.to_string())?;
    let peer = node
        .dial(args.target.clone())
        .await
        .map_err(|e| e.to_string())?;
    emit(
        &json!({"event": "connected", "peer": peer.to_string(), "relayed": false, "addr": args.target.to_string()}),
    );
    for _ in 0..args.ping {
        let rtt = node.ping(peer).await.map_err(|e| e.to_string())?;
        emit(&json!({
            "event": "ping",
            "peer": peer.to_string(),
            "relayed": false,
            "rtt_ms": rtt.as_secs_f64() * 1000.0,
        }));
    }
    if args.hold.is_some() {
        hold(args.hold).await;
    }
    node.shutdown().await;
    Ok(())
}

/// Prints the node events that programs watching a listener care about.
fn report_event(event: &Event) {
    match event {
        Event::ConnectionEstablished {
            peer, remote_addr, ..
        } => emit(&json!({
            "event": "connected",
            "peer": peer.to_string(),
            "relayed": false,
            "addr": remote_addr.to_string(),
        })),
        Event::ConnectionClosed { peer, error, .. } => emit(&json!({
            "event": "disconnected",
            "peer": peer.to_string(),
            "reason": error.to_string(),
        })),
        _ => {}
    }
}
