//! A tokio TCP stream as the `futures::io` socket the driver reads and writes.
//!
//! `tokio_util::compat` would do, but its writer turns a vectored write into a write of
//! the first buffer alone; the driver writes frames as several buffers (a length
//! prefix, the encrypted body, the tag) and needs them in one system call.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A tokio byte stream (a TCP stream or one of its halves) as a `futures::io` one.
#[derive(Debug)]
pub(crate) struct FuturesIo<T>(pub(crate) T);

/// A connected TCP stream.
pub(crate) type TokioSocket = FuturesIo<tokio::net::TcpStream>;

/// The reading half of a [`TokioSocket`], apart from its writing half.
pub(crate) type TokioReader = FuturesIo<tokio::net::tcp::OwnedReadHalf>;

/// The writing half of a [`TokioSocket`].
pub(crate) type TokioWriter = FuturesIo<tokio::net::tcp::OwnedWriteHalf>;

impl TokioSocket {
    /// Splits the stream into halves that need no lock between them.
    pub(crate) fn into_halves(self) -> (TokioReader, TokioWriter) {
        let (reader, writer) = self.0.into_split();
        (FuturesIo(reader), FuturesIo(writer))
    }
}

impl<T: AsyncRead + Unpin> futures_io::AsyncRead for FuturesIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(buf);
        match Pin::new(&mut self.0).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> futures_io::AsyncWrite for FuturesIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
