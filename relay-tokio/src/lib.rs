//! Drives [`relay_proto`] with tokio sockets and timers.
