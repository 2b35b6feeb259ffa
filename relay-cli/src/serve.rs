//! `relay serve`: a circuit relay v2 server configured by the seed's YAML schema, with
//! flags on top, Prometheus metrics and threshold alerts.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use relay_proto::Event;
use relay_proto::hop::Direction;
use relay_proto::node::CircuitEnd;
use relay_proto::node::addr::parse_tcp;

use crate::config::{self, FileConfig, ServeOverrides};
use crate::metrics::{self, CircuitCloseReason, Metrics, Transport};
use crate::output::emit;
use crate::{ServeArgs, events, hook, identity, run};

/// The settings `relay serve` runs with: the file (or the embedded default) with the
/// flags applied, validated.
pub(crate) fn settings(args: &ServeArgs) -> Result<FileConfig, String> {
    let mut file = match &args.config {
        Some(path) => config::load(path).map_err(|e| e.to_string())?,
        None => FileConfig::serve_default(),
    };
    file.apply(ServeOverrides {
        listen: args.listen.clone(),
        key_file: args.identity.key.clone(),
        max_reservations: args.max_reservations,
        max_reservations_per_peer: args.max_reservations_per_peer,
        max_circuits: args.max_circuits,
        max_circuit_bytes: args.max_circuit_bytes,
        max_circuit_duration: args.max_circuit_duration.map(Duration::from_secs),
        unlimited: args.unlimited,
        metrics: args.metrics.clone(),
    });
    file.validate().map_err(|e| e.to_string())?;
    Ok(file)
}

pub(crate) async fn serve(args: ServeArgs) -> Result<(), String> {
    let file = settings(&args)?;
    let keypair = match (args.identity.seed, &file.node.key_file) {
        (Some(_), _) | (None, None) => identity::load(&args.identity)?,
        (None, Some(path)) => identity::load(&crate::IdentityArgs {
            seed: None,
            key: Some(path.clone()),
        })?,
    };
    let mut node_config = file.node_config();
    if file.node.relay.service.enabled {
        node_config.relay = Some(file.relay_config().map_err(|e| e.to_string())?);
    } else {
        tracing::warn!(
            "node.relay.service.enabled is false (the seed's default): this node refuses \
             hop requests; set it to true to relay"
        );
    }
    let asn = file.asn_table().map_err(|e| e.to_string())?;
    let listen = file
        .node
        .listen
        .iter()
        .map(|a| {
            parse_tcp(a)
                .map(|(socket, _)| socket)
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let node = run::start(keypair, node_config, &listen)?;
    if let Some(table) = asn {
        node.with_node(move |n, _| n.set_relay_asn_table(Some(table)))
            .await
            .map_err(|e| e.to_string())?;
    }
    run::serve_app_protocols(&node)?;

    let metrics = Arc::new(Metrics::from_config(&file.node.relay.monitoring));
    let _metrics_server = match file.metrics_listen() {
        Some(addr) => Some(
            metrics::serve_metrics(addr, metrics.clone())
                .await
                .map_err(|e| format!("--metrics {addr}: {e}"))?,
        ),
        None => None,
    };
    let interval = file
        .node
        .relay
        .monitoring
        .metrics_interval
        .get()
        .max(Duration::from_secs(1));
    tokio::spawn(metrics::run_alerts(
        metrics::Alerts::from_config(&file),
        metrics.clone(),
        interval,
    ));
    let usage_node = node.clone();
    let usage_metrics = metrics.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let Ok(Some(usage)) = usage_node
                .with_node(|n, _| n.relay_policy().map(|p| p.usage()))
                .await
            else {
                return;
            };
            usage_metrics.sync_usage(&usage);
        }
    });

    let hook = (!file.node.relay.service.acl.hook_command.is_empty()).then(|| {
        hook::HookRunner::new(
            file.node.relay.service.acl.hook_command.clone(),
            node.clone(),
        )
    });

    run::announce(&node);
    let mut events = node.events().map_err(|e| e.to_string())?;
    let report = async {
        while let Some(event) = events.next().await {
            if let (Event::RelayAsk { request }, Some(hook)) = (&event, &hook) {
                hook.ask(*request);
            }
            record(&metrics, &event);
            if let Some(line) = events::to_json(&event) {
                emit(&line);
            }
        }
    };
    tokio::select! {
        _ = report => {}
        _ = run::hold(args.hold) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    node.shutdown().await;
    Ok(())
}

/// Updates the metrics from one node event.
fn record(metrics: &Metrics, event: &Event) {
    match event {
        Event::RelayReservationAccepted { renewed: false, .. } => metrics.reservation_accepted(),
        Event::RelayReservationAccepted { renewed: true, .. } => metrics.reservation_refreshed(),
        Event::RelayReservationRefused { refusal, .. } => metrics.reservation_refused(refusal),
        Event::RelayReservationEnded { .. } => metrics.reservation_ended(),
        Event::RelayCircuitOpened { .. } => metrics.circuit_opened(),
        Event::RelayCircuitRefused {
            refusal: Some(refusal),
            ..
        } => metrics.circuit_refused(refusal),
        Event::RelayCircuitClosed {
            bytes_src_to_dst,
            bytes_dst_to_src,
            duration,
            reason,
            ..
        } => {
            metrics.bytes_relayed(Direction::SrcToDst, *bytes_src_to_dst);
            metrics.bytes_relayed(Direction::DstToSrc, *bytes_dst_to_src);
            let reason = match reason {
                CircuitEnd::Closed => CircuitCloseReason::Normal,
                CircuitEnd::Reset => CircuitCloseReason::Reset,
                CircuitEnd::Limit(kind) => (*kind).into(),
            };
            metrics.circuit_closed(reason, *bytes_src_to_dst, *bytes_dst_to_src, *duration);
        }
        Event::RelayAbuse { key, .. } => metrics.abuse_banned(key),
        Event::ConnectionEstablished {
            endpoint, relayed, ..
        } => {
            metrics.connection_established(*endpoint, transport(*relayed));
        }
        Event::ConnectionClosed {
            endpoint, relayed, ..
        } => {
            metrics.connection_closed(*endpoint, transport(*relayed));
        }
        Event::Ping {
            result: Ok(rtt), ..
        } => metrics.ping_rtt(*rtt, false),
        Event::HolePunchStarted { .. } => metrics.hole_punch_started(),
        Event::HolePunchSucceeded { elapsed, .. } => metrics.hole_punch_succeeded(*elapsed),
        Event::HolePunchFailed { reason, .. } => metrics.hole_punch_failed(reason.into()),
        _ => {}
    }
}

fn transport(relayed: bool) -> Transport {
    if relayed {
        Transport::Relayed
    } else {
        Transport::Tcp
    }
}
