//! Wire codecs: pure functions over bytes. Every decoder rejects bad input with a typed
//! error and never panics.
