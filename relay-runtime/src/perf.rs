//! The perf protocol (`/perf/1.0.0`, libp2p/specs `perf/perf.md`) over any
//! `futures::io` stream: [`run`] is the client, [`serve`] the server.
//!
//! The client writes how many bytes it wants back as a big-endian u64, uploads its
//! bytes and closes its write side; the server reads the count, drains the upload until
//! end of file, and only then writes the requested bytes and closes.
//!
//! The functions know nothing of nodes or runtimes, so they run over our streams and
//! over any other libp2p implementation's alike. Each call allocates one buffer of
//! [`BUFFER`] bytes and moves every chunk through it.
//!
//! The spec warns that a perf server does work on a client's say-so: serve it only to
//! trusted peers, and never by default.

use std::io;
use std::time::{Duration, Instant};

use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The protocol id.
pub const PROTOCOL: &str = "/perf/1.0.0";

/// The size of the one buffer each call reads and writes through.
pub const BUFFER: usize = 64 * 1024;

/// Length of the header: the number of bytes the client wants back.
const HEADER_LEN: usize = 8;

/// What a server did for one perf stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerfServed {
    /// Bytes the client uploaded, the header not counted.
    pub uploaded: u64,
    /// Bytes sent back, as the client asked.
    pub downloaded: u64,
}

/// What a client measured on one perf stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerfResult {
    /// Bytes uploaded, the header not counted.
    pub upload_bytes: u64,
    /// Bytes received back.
    pub download_bytes: u64,
    /// From the first byte written until our write side was closed.
    pub upload_time: Duration,
    /// From closing our write side until the server's end of file.
    pub download_time: Duration,
    /// The whole exchange: `upload_time + download_time`.
    pub total: Duration,
}

/// Serves one perf stream: reads the header, drains the upload until end of file, then
/// writes the requested number of bytes and closes the stream.
///
/// Fails with [`io::ErrorKind::UnexpectedEof`] if the stream ends inside the header, and
/// with whatever error the stream reports otherwise (a client that stops reading a
/// large download resets the stream).
pub async fn serve<S>(mut stream: S) -> io::Result<PerfServed>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut header = [0u8; HEADER_LEN];
    stream.read_exact(&mut header).await?;
    let requested = u64::from_be_bytes(header);
    let mut buf = vec![0u8; BUFFER];
    let uploaded = drain(&mut stream, &mut buf).await?;
    buf.fill(0);
    fill(&mut stream, &buf, requested).await?;
    stream.close().await?;
    Ok(PerfServed {
        uploaded,
        downloaded: requested,
    })
}

/// Runs one perf exchange as the client: asks for `download` bytes, uploads `upload`
/// bytes, closes the write side and reads the answer until end of file.
///
/// Fails with [`io::ErrorKind::InvalidData`] if the server sends a different number of
/// bytes than asked for.
pub async fn run<S>(mut stream: S, upload: u64, download: u64) -> io::Result<PerfResult>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let buf = vec![0u8; BUFFER];
    let start = Instant::now();
    stream.write_all(&download.to_be_bytes()).await?;
    fill(&mut stream, &buf, upload).await?;
    stream.close().await?;
    let uploaded = Instant::now();
    let mut buf = buf;
    let download_bytes = drain(&mut stream, &mut buf).await?;
    let done = Instant::now();
    if download_bytes != download {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("perf server sent {download_bytes} bytes, {download} were asked for"),
        ));
    }
    Ok(PerfResult {
        upload_bytes: upload,
        download_bytes,
        upload_time: uploaded - start,
        download_time: done - uploaded,
        total: done - start,
    })
}

/// Reads until end of file; returns how many bytes there were.
async fn drain<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut [u8]) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        match stream.read(buf).await? {
            0 => return Ok(total),
            n => total += n as u64,
        }
    }
}

/// Writes `len` bytes, repeating the contents of `buf`.
async fn fill<S: AsyncWrite + Unpin>(stream: &mut S, buf: &[u8], len: u64) -> io::Result<()> {
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
        stream.write_all(&buf[..n]).await?;
        left -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::io::Cursor;

    /// A stream whose reads come from `input` and whose writes land in `output`.
    struct Script {
        input: Cursor<Vec<u8>>,
        output: Vec<u8>,
        closed: bool,
    }

    impl Script {
        fn new(input: Vec<u8>) -> Self {
            Self {
                input: Cursor::new(input),
                output: Vec::new(),
                closed: false,
            }
        }
    }

    impl AsyncRead for Script {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<io::Result<usize>> {
            std::pin::Pin::new(&mut self.input).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Script {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            assert!(!self.closed, "write after close");
            self.output.extend_from_slice(buf);
            std::task::Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_close(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            self.closed = true;
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn server_counts_the_upload_and_sends_what_was_asked() {
        let mut input = 100_000u64.to_be_bytes().to_vec();
        input.extend(std::iter::repeat_n(7u8, 200_001));
        let mut stream = Script::new(input);
        let served = block_on(serve(&mut stream)).unwrap();
        assert_eq!(
            served,
            PerfServed {
                uploaded: 200_001,
                downloaded: 100_000
            }
        );
        assert_eq!(stream.output.len(), 100_000);
        assert!(stream.closed);
    }

    #[test]
    fn server_rejects_a_short_header() {
        let mut stream = Script::new(vec![0, 0, 1]);
        let error = block_on(serve(&mut stream)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert!(stream.output.is_empty());
    }

    #[test]
    fn client_writes_header_and_upload_then_reads_the_answer() {
        let mut stream = Script::new(vec![1; 70_000]);
        let result = block_on(run(&mut stream, 150_000, 70_000)).unwrap();
        assert_eq!(result.upload_bytes, 150_000);
        assert_eq!(result.download_bytes, 70_000);
        assert_eq!(result.total, result.upload_time + result.download_time);
        assert_eq!(stream.output[..8], 70_000u64.to_be_bytes());
        assert_eq!(stream.output.len(), 8 + 150_000);
        assert!(stream.closed);
    }

    #[test]
    fn client_rejects_a_wrong_answer_length() {
        let mut stream = Script::new(vec![1; 10]);
        let error = block_on(run(&mut stream, 0, 11)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }
}
