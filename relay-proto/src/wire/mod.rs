//! Wire codecs: pure functions over bytes. Every decoder rejects bad input with a typed
//! error and never panics.

pub mod frame;
pub mod multistream;
pub mod proto;
pub mod varint;
