//! The long-running roles: `serve`, `listen` and `dial`.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use relay_proto::Multiaddr;
use relay_proto::node::Config;
use relay_proto::node::addr::{parse_circuit, parse_tcp, peer_of};
use relay_tokio::Node;
use serde_json::json;
use tokio_util::compat::TokioAsyncReadCompatExt;

use crate::output::emit;
use crate::{DialArgs, ListenArgs, autorelay, events, identity, punch};

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

pub(crate) async fn hold(seconds: Option<f64>) {
    match seconds {
        Some(s) if s.is_finite() && s >= 0.0 => {
            tokio::time::sleep(Duration::from_secs_f64(s)).await
        }
        _ => std::future::pending().await,
    }
}

/// The sockets of `--listen` arguments, or the default when none is given.
pub(crate) fn listen_sockets(
    addrs: &[Multiaddr],
    default: bool,
) -> Result<Vec<SocketAddr>, String> {
    if addrs.is_empty() && default {
        return Ok(vec![SocketAddr::from(([0, 0, 0, 0], 4001))]);
    }
    addrs
        .iter()
        .map(|addr| match parse_tcp(addr) {
            Ok((socket, None)) => Ok(socket),
            Ok((_, Some(_))) => Err(format!(
                "--listen {addr}: a listen address has no /p2p/ part"
            )),
            Err(e) => Err(format!("--listen {addr}: {e}")),
        })
        .collect()
}

pub(crate) fn start(
    keypair: relay_proto::identity::Keypair,
    config: Config,
    listen: &[SocketAddr],
) -> Result<Node, String> {
    let mut builder = Node::builder().keypair(keypair).config(config);
    for socket in listen {
        builder = builder.listen(*socket);
    }
    builder
        .start()
        .map_err(|e| format!("cannot start the node: {e}"))
}

pub(crate) fn announce(node: &Node) {
    emit(&json!({
        "event": "listening",
        "peer_id": node.peer_id().to_string(),
        "addrs": node.listen_addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    }));
}

/// Prints events until the node stops or `seconds` pass; subscribed at once, so the
/// events of commands given before the returned future is awaited are printed too.
fn report_until(
    node: &Node,
    seconds: Option<f64>,
) -> Result<impl Future<Output = ()> + use<>, String> {
    let mut events = node.events().map_err(|e| e.to_string())?;
    Ok(async move {
        let report = async {
            while let Some(event) = events.next().await {
                if let Some(line) = events::to_json(&event) {
                    emit(&line);
                }
            }
        };
        tokio::select! {
            _ = report => {}
            _ = hold(seconds) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    })
}

/// Answers echo and perf, as `listen` and `serve` both do.
pub(crate) fn serve_app_protocols(node: &Node) -> Result<(), String> {
    let mut echo = node.accept(ECHO_PROTOCOL).map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Some(stream) = echo.next().await {
            tokio::spawn(async move {
                let mut stream = stream;
                let (mut reader, mut writer) = tokio::io::split(&mut stream);
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut writer).await;
            });
        }
    });
    let mut perf = node
        .accept(relay_runtime::perf::PROTOCOL)
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Some(stream) = perf.next().await {
            tokio::spawn(async move {
                if let Err(error) = relay_runtime::perf::serve(stream.compat()).await {
                    tracing::debug!(%error, "perf stream failed");
                }
            });
        }
    });
    Ok(())
}

pub(crate) async fn listen(args: ListenArgs) -> Result<(), String> {
    let mut settings = autorelay::settings(&args)?;
    punch::adjust(&mut settings.config, &args.relays, args.no_punch);
    if settings.listen.is_empty() && settings.config.hole_punch.enabled {
        settings.listen = punch::default_listen(&args.relays);
    }
    let node = start(settings.keypair, settings.config.clone(), &settings.listen)?;
    serve_app_protocols(&node)?;
    announce(&node);
    let reporting = report_until(&node, args.hold)?;
    // Reservations come from AutoRelay; their outcomes are reported from the events.
    autorelay::start(&node, &settings.config).await?;
    reporting.await;
    node.shutdown().await;
    Ok(())
}

pub(crate) async fn dial(args: DialArgs) -> Result<(), String> {
    let keypair = identity::load(&args.identity)?;
    let target = &args.target;
    let relayed = parse_circuit(target).is_some();
    if !relayed {
        parse_tcp(target).map_err(|e| e.to_string())?;
    }
    let Some(peer) = peer_of(target) else {
        return Err(format!("{target}: the target must end with /p2p/<peer id>"));
    };
    let relays = std::slice::from_ref(target);
    let config = punch::node_config(args.config.as_deref(), relays, args.no_punch)?;
    let punching = relayed && config.hole_punch.enabled;
    let mut listen = listen_sockets(&args.listen, false)?;
    if listen.is_empty() && punching {
        listen = punch::default_listen(relays);
    }
    let node = start(keypair, config, &listen)?;
    let mut events = node.events().map_err(|e| e.to_string())?;
    let connected = node.dial(target.clone()).await.map_err(|e| e.to_string())?;
    if connected != peer {
        return Err(format!("connected to {connected}, expected {peer}"));
    }
    emit(
        &json!({"event": "connected", "peer": peer.to_string(), "relayed": relayed, "addr": target.to_string()}),
    );
    if punching {
        let wait = match args.punch_wait {
            Some(s) if s.is_finite() && s >= 0.0 => Duration::from_secs_f64(s),
            Some(s) => return Err(format!("--punch-wait {s}: expected seconds, at least 0")),
            None => punch::DEFAULT_WAIT,
        };
        match punch::wait_outcome(&mut events, peer, wait).await {
            Some(line) => emit(&line),
            None => return Err("the node stopped".into()),
        }
    }
    for _ in 0..args.ping {
        let relayed = punch::relayed_now(&node, peer).await;
        let rtt = node
            .ping(peer)
            .await
            .map_err(|e| format!("ping failed: {e}"))?;
        emit(&json!({
            "event": "ping",
            "peer": peer.to_string(),
            "relayed": relayed,
            "rtt_ms": rtt.as_secs_f64() * 1000.0,
        }));
    }
    if args.perf_up.is_some() || args.perf_down.is_some() {
        let (up, down) = (args.perf_up.unwrap_or(0), args.perf_down.unwrap_or(0));
        let relayed = punch::relayed_now(&node, peer).await;
        let stream = node
            .open_stream(peer, relay_runtime::perf::PROTOCOL)
            .await
            .map_err(|e| format!("perf: {e}"))?;
        let result = relay_runtime::perf::run(stream.compat(), up, down)
            .await
            .map_err(|e| format!("perf: {e}"))?;
        emit(&json!({
            "event": "perf",
            "peer": peer.to_string(),
            "relayed": relayed,
            "upload_bytes": result.upload_bytes,
            "download_bytes": result.download_bytes,
            "seconds": result.total.as_secs_f64(),
            "upload_seconds": result.upload_time.as_secs_f64(),
            "download_seconds": result.download_time.as_secs_f64(),
        }));
    }
    if args.hold.is_some() {
        let report = async {
            while let Some(event) = events.next().await {
                if let Some(line) = events::to_json(&event) {
                    emit(&line);
                }
            }
        };
        tokio::select! {
            _ = report => {}
            _ = hold(args.hold) => {}
        }
    }
    node.shutdown().await;
    Ok(())
}
