//! Drives [`relay_proto`] on the async-io reactor, so it runs under async-std and smol.
