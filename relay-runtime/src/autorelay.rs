//! AutoRelay for applications: the seed's service (start, stop, add a static relay,
//! current relays) on [`Handle`], and the [`PeerSource`] an application implements to
//! offer relay candidates.
//!
//! The node asks for candidates with [`Event::AutoRelayPeerSourceQuery`]; the task
//! started by [`Builder::peer_source`](crate::Builder::peer_source) answers each query
//! by calling the source, giving up after `peer_source_timeout` (the node reports the
//! timeout itself, as the seed's "peer source timeout" error), and hands what it got to
//! [`Node::auto_relay_peer_source_result`](relay_proto::Node::auto_relay_peer_source_result).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::{FutureExt, StreamExt};
use relay_proto::Multiaddr;
use relay_proto::autorelay::{self, Candidate, Reachability};
use relay_proto::identity::PeerId;
use relay_proto::node::Event;
use relay_proto::node::addr::peer_of;

use crate::{BoxFuture, Error, Handle, Runtime};

/// Where AutoRelay finds relay candidates beyond the static ones: a DHT, a rendezvous
/// point, a list fetched from somewhere. The application implements it.
pub trait PeerSource: Send + Sync + 'static {
    /// At most `limit` relay candidates, each with addresses to reach it. An answer
    /// later than `peer_source_timeout` is dropped.
    fn candidates(&self, limit: usize) -> BoxFuture<Vec<Candidate>>;
}

impl Handle {
    /// Starts AutoRelay (the seed's `Start`); it needs `Config::auto_relay` with
    /// `enabled`. Its choices arrive as [`Event::AutoRelay`] and reservation events.
    pub async fn auto_relay_start(&self) -> Result<(), Error> {
        self.with_node(|node, now| node.auto_relay_start(now))
            .await?
            .map_err(auto_relay_error)
    }

    /// Stops AutoRelay (the seed's `Stop`): its reservations are cancelled.
    pub async fn auto_relay_stop(&self) -> Result<(), Error> {
        self.with_node(|node, now| node.auto_relay_stop(now)).await
    }

    /// Adds a trusted relay (the seed's `AddStaticRelay`): `addr` ends in `/p2p/RELAY`.
    pub async fn auto_relay_add_static_relay(&self, addr: Multiaddr) -> Result<PeerId, Error> {
        let Some(relay) = peer_of(&addr) else {
            return Err(Error::AutoRelay(format!(
                "{addr}: a relay address ends with /p2p/<relay id>"
            )));
        };
        self.with_node(move |node, now| node.auto_relay_add_static_relay(now, relay, vec![addr]))
            .await?
            .map_err(auto_relay_error)?;
        Ok(relay)
    }

    /// The relays AutoRelay holds reservations on, in the order they were granted (the
    /// seed's `GetRelayPeers`).
    pub async fn auto_relay_relays(&self) -> Result<Vec<PeerId>, Error> {
        self.with_node(|node, _| node.auto_relay_current_relays())
            .await
    }

    /// Tells the node whether it is reachable (from AutoNAT, or because the application
    /// knows); AutoRelay holds reservations only while it is not, unless configured to
    /// always.
    pub async fn set_reachability(&self, reachability: Reachability) -> Result<(), Error> {
        self.with_node(move |node, now| node.set_reachability(now, reachability))
            .await
    }
}

fn auto_relay_error(error: autorelay::Error) -> Error {
    Error::AutoRelay(error.to_string())
}

/// Answers the node's peer source queries from `events` with `source`, each within
/// `timeout`, until the node stops.
pub(crate) async fn answer_queries<R: Runtime>(
    runtime: R,
    handle: Handle,
    mut events: mpsc::UnboundedReceiver<Event>,
    source: Arc<dyn PeerSource>,
    timeout: Duration,
) {
    while let Some(event) = events.next().await {
        let Event::AutoRelayPeerSourceQuery { limit } = event else {
            continue;
        };
        let ask = source.candidates(limit).fuse();
        let deadline = runtime.sleep_until(Instant::now() + timeout).fuse();
        futures::pin_mut!(ask, deadline);
        let candidates = futures::select_biased! {
            candidates = ask => candidates,
            () = deadline => {
                tracing::warn!(?timeout, "auto relay: the peer source did not answer in time");
                continue;
            }
        };
        let mut candidates = candidates;
        candidates.truncate(limit);
        tracing::debug!(n = candidates.len(), "auto relay: peer source answered");
        let answer = handle
            .with_node(move |node, now| node.auto_relay_peer_source_result(now, candidates))
            .await;
        if answer.is_err() {
            return;
        }
    }
}
