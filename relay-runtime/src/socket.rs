//! Splitting a socket into the halves its reader and writer tasks use at once.
//!
//! The driver reads each socket on one task and writes it on another, both busy with
//! cipher work ([`crate::offload`]). `futures::io::split` shares the socket behind a
//! lock, so a long write holds up the read of the same socket; runtimes whose sockets
//! split without a lock (tokio's owned halves, a cloned async-net stream) do so in
//! [`Runtime::split`](crate::Runtime::split), finding their own socket type with
//! [`downcast_socket`].

use std::any::Any;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::{BoxSocket, Socket};

/// The reading half of a socket.
pub type BoxReader = Box<dyn AsyncRead + Send + Unpin>;

/// The writing half of a socket.
pub type BoxWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// Splits any socket, sharing it between the halves behind a lock.
pub fn lock_split(socket: BoxSocket) -> (BoxReader, BoxWriter) {
    let (reader, writer) = socket.split();
    (Box::new(reader), Box::new(writer))
}

/// Takes a runtime's own socket type back out of a [`BoxSocket`], or gives the socket
/// back if it is of another type.
pub fn downcast_socket<T: Socket>(socket: BoxSocket) -> Result<Box<T>, BoxSocket> {
    if !Socket::as_any(&*socket).is::<T>() {
        return Err(socket);
    }
    // Of type `T`, as just checked: the downcast cannot fail, and if it did the caller
    // would see a socket that is closed.
    socket
        .into_any()
        .downcast::<T>()
        .map_err(|_| Box::new(Detached) as BoxSocket)
}

/// The object-safe `Any` view every [`Socket`] has.
pub(crate) fn as_any<T: Any>(socket: &T) -> &dyn Any {
    socket
}

/// A socket that is no longer there: reads end, writes fail.
#[derive(Debug)]
struct Detached;

impl AsyncRead for Detached {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(0))
    }
}

impl AsyncWrite for Detached {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::NotConnected.into()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
