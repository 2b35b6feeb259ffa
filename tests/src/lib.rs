//! The integration suite every runtime adapter passes, and helpers shared by the
//! cross-crate tests.
//!
//! Each `suite::*` function takes a [`relay_runtime::Runtime`] and runs one scenario on
//! loopback; `relay-tokio` and `relay-async-std` call every one of them from their own
//! test files, so both runtimes are held to the same behaviour. [`natlab`] is the NAT
//! lab: Linux network namespaces with real kernel NAT, for tests that run real binaries
//! behind NATs. [`bench`] holds what the relay benchmarks in `benches/` share: relay
//! servers in child processes and `/proc` readings.

pub mod bench;
pub mod natlab;
pub mod suite;

use futures::io::{AsyncReadExt, AsyncWriteExt};
use sha2::{Digest, Sha256};

/// Deterministic pseudo-random bytes (xorshift), cheap enough for 16 MiB payloads.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Writes `data` and finishes the stream while reading everything the peer sends back;
/// returns what was read. Reading concurrently avoids a flow-control deadlock with an
/// echoing peer.
pub async fn exchange<S>(stream: S, data: &[u8]) -> std::io::Result<Vec<u8>>
where
    S: futures::io::AsyncRead + futures::io::AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = stream.split();
    let write = async {
        writer.write_all(data).await?;
        writer.close().await
    };
    let read = async {
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let (w, r) = futures::join!(write, read);
    w?;
    r
}

/// Echoes a stream back to its sender until the sender finishes, then finishes too.
pub async fn echo<S>(stream: S) -> std::io::Result<u64>
where
    S: futures::io::AsyncRead + futures::io::AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = stream.split();
    let n = futures::io::copy(&mut reader, &mut writer).await?;
    writer.close().await?;
    Ok(n)
}
