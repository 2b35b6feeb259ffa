//! A minimal HTTP/1.1 server for `/metrics`: enough for Prometheus and curl, and safe to
//! expose to garbage.
//!
//! `GET /metrics` (or `HEAD`) answers 200 with the text exposition; any other well-formed
//! request answers 404; a request that is not HTTP answers 400; a request head over
//! [`MAX_REQUEST_HEAD`] bytes answers 431. Every response closes the connection. A
//! connection has [`REQUEST_TIMEOUT`] to send its request head, and at most
//! [`MAX_CONNECTIONS`] are served at once (more are closed at once), so slow or
//! malicious clients cost bounded memory and time.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::Metrics;

/// Largest request head (request line and headers) read.
pub(crate) const MAX_REQUEST_HEAD: usize = 8192;

/// Most connections served at once.
pub(crate) const MAX_CONNECTIONS: usize = 64;

/// Time a client has to send its request head, and then to read the answer.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Content type of the Prometheus text format.
pub(crate) const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Content type of the OpenMetrics text format, sent when the client's `Accept` asks
/// for it.
pub(crate) const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A running metrics server. Dropping it leaves the server running until the runtime
/// shuts down; [`shutdown`](Self::shutdown) stops it.
#[derive(Debug)]
#[allow(dead_code)] // local_addr and shutdown serve the tests
pub(crate) struct MetricsServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// The address the server listens on (useful with port 0).
    #[allow(dead_code)] // used by the tests
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections. Connections being answered finish on their own.
    #[allow(dead_code)] // used by the tests
    pub(crate) fn shutdown(self) {
        self.task.abort();
    }
}

/// Binds `addr` and serves `metrics` at `/metrics` on a spawned task.
///
/// Returns once listening, so a bind error (address in use, bad host) is returned here.
/// Must be called within a tokio runtime.
pub(crate) async fn serve_metrics<A: ToSocketAddrs>(
    addr: A,
    metrics: Arc<Metrics>,
) -> io::Result<MetricsServer> {
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    tracing::info!(%local_addr, "serving metrics at /metrics");
    let task = tokio::spawn(accept_loop(listener, metrics));
    Ok(MetricsServer { local_addr, task })
}

/// Accepts connections and answers each on its own task, at most [`MAX_CONNECTIONS`]
/// at once.
async fn accept_loop(listener: TcpListener, metrics: Arc<Metrics>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(%error, "metrics server cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::debug!(%peer, "metrics server busy; closing connection");
            continue;
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let outcome = tokio::time::timeout(REQUEST_TIMEOUT * 2, serve(stream, &metrics)).await;
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::debug!(%peer, %error, "metrics request failed"),
                Err(_) => tracing::debug!(%peer, "metrics request timed out"),
            }
            drop(permit);
        });
    }
}

/// Answers one request on `stream` and closes it.
async fn serve(mut stream: TcpStream, metrics: &Metrics) -> io::Result<()> {
    let head = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => Head::Incomplete,
    };
    let response = match head {
        Head::Complete(bytes) => respond(&bytes, metrics),
        Head::TooLarge => Response::status(431, "Request Header Fields Too Large"),
        // The client went away or stalled before finishing its request: nobody to answer.
        Head::Incomplete => return Ok(()),
    };
    stream.write_all(&response.to_bytes()).await?;
    stream.shutdown().await
}

/// How reading a request head ended.
enum Head {
    /// The head, up to and including its blank line.
    Complete(Vec<u8>),
    /// More than [`MAX_REQUEST_HEAD`] bytes without a blank line.
    TooLarge,
    /// The client closed or stalled first.
    Incomplete,
}

/// Reads until the blank line that ends a request head.
async fn read_head(stream: &mut TcpStream) -> io::Result<Head> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Head::Incomplete);
        }
        let scan_from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&head, scan_from) {
            if end > MAX_REQUEST_HEAD {
                return Ok(Head::TooLarge);
            }
            head.truncate(end);
            return Ok(Head::Complete(head));
        }
        if head.len() > MAX_REQUEST_HEAD {
            return Ok(Head::TooLarge);
        }
    }
}

/// The length of the head up to and including its ending blank line (`\r\n\r\n`, or
/// `\n\n` from lenient clients), searching from `from`.
fn head_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"\r\n\r\n") {
            return Some(i + 4);
        }
        if bytes[i..].starts_with(b"\n\n") {
            return Some(i + 2);
        }
        i += 1;
    }
    None
}

/// An HTTP response, fully in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Response {
    /// The status code.
    pub(super) code: u16,
    /// The reason phrase.
    pub(super) reason: &'static str,
    /// The `Content-Type`.
    pub(super) content_type: &'static str,
    /// The body, already empty for `HEAD`.
    pub(super) body: Vec<u8>,
    /// The `Content-Length`: the body's, or for `HEAD` the one a `GET` would get.
    pub(super) content_length: usize,
}

impl Response {
    /// A short plain-text response with only a status.
    fn status(code: u16, reason: &'static str) -> Self {
        let body = format!("{code} {reason}\n").into_bytes();
        Self {
            code,
            reason,
            content_type: "text/plain; charset=utf-8",
            content_length: body.len(),
            body,
        }
    }

    /// The response on the wire.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.code, self.reason, self.content_type, self.content_length
        )
        .into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// The response to a complete request head. Never panics, whatever the bytes.
pub(super) fn respond(head: &[u8], metrics: &Metrics) -> Response {
    let Ok(head) = std::str::from_utf8(head) else {
        return Response::status(400, "Bad Request");
    };
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Response::status(400, "Bad Request");
    };
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphabetic());
    if !token(method) || !target.starts_with('/') || !version.starts_with("HTTP/1.") {
        return Response::status(400, "Bad Request");
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    let head_only = method == "HEAD";
    if path != "/metrics" || !(method == "GET" || head_only) {
        return Response::status(404, "Not Found");
    }
    let openmetrics = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("accept")
                && value.contains("application/openmetrics-text")
        })
    });
    let Ok(text) = metrics.encode(openmetrics) else {
        return Response::status(500, "Internal Server Error");
    };
    let content_length = text.len();
    Response {
        code: 200,
        reason: "OK",
        content_type: if openmetrics {
            OPENMETRICS_CONTENT_TYPE
        } else {
            TEXT_CONTENT_TYPE
        },
        body: if head_only {
            Vec::new()
        } else {
            text.into_bytes()
        },
        content_length,
    }
}
