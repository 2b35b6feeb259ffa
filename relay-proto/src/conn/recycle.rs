//! Reuse of the large buffers the data path cuts into chunks.
//!
//! A connection's ciphertext and a socket's input are cut from a `BytesMut` into
//! [`bytes::Bytes`] chunks that live a little while elsewhere (in a socket writer's
//! queue, in the node) and are then dropped. Allocating a fresh block whenever the
//! buffer runs out costs more than the bytes themselves: the allocator hands large
//! blocks back to the OS, and every page of the next one is faulted in anew. A
//! [`Recycler`] keeps the last few used-up blocks and hands one back once every chunk
//! cut from it is gone.

use bytes::BytesMut;
use smallvec::SmallVec;

/// How many used-up blocks a [`Recycler`] remembers.
const KEEP: usize = 4;

/// The used-up blocks of one buffer, waiting for their chunks to be dropped.
#[derive(Debug, Default)]
pub struct Recycler {
    retired: SmallVec<[BytesMut; KEEP]>,
}

impl Recycler {
    /// Makes room for `additional` more bytes in `buf`, in blocks of at least `block`
    /// bytes: a used-up block whose chunks are all gone is reused before a new one is
    /// allocated.
    pub fn reserve(&mut self, buf: &mut BytesMut, additional: usize, block: usize) {
        if buf.capacity() - buf.len() >= additional {
            return;
        }
        let size = additional.max(block);
        if !buf.is_empty() {
            // Bytes not cut off yet stay in one piece: `BytesMut` moves them over.
            buf.reserve(size);
            return;
        }
        let used_up = std::mem::take(buf);
        match self.retired.iter_mut().position(|b| b.try_reclaim(size)) {
            Some(i) => *buf = self.retired.remove(i),
            None => buf.reserve(size),
        }
        if self.retired.len() == KEEP {
            self.retired.remove(0);
        }
        self.retired.push(used_up);
    }

    /// Forgets the used-up blocks; each is freed once its last chunk is dropped.
    pub fn clear(&mut self) {
        self.retired.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_comes_back_once_its_chunks_are_dropped() {
        let mut recycler = Recycler::default();
        let mut buf = BytesMut::new();
        recycler.reserve(&mut buf, 10, 100);
        let first_block = buf.as_ptr();
        buf.extend_from_slice(&[1; 100]);
        let chunk = buf.split().freeze();
        // The block is used up while its chunk lives: a second one is allocated.
        recycler.reserve(&mut buf, 10, 100);
        assert_ne!(buf.as_ptr(), first_block);
        buf.extend_from_slice(&[2; 100]);
        let second = buf.split().freeze();
        drop(chunk);
        // Now the first block is free again and is reused, not allocated.
        recycler.reserve(&mut buf, 10, 100);
        assert_eq!(buf.as_ptr(), first_block);
        assert_eq!(&second[..], &[2; 100]);
    }

    #[test]
    fn bytes_not_cut_off_are_kept() {
        let mut recycler = Recycler::default();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"pending");
        recycler.reserve(&mut buf, 1000, 100);
        assert_eq!(&buf[..], b"pending");
        assert!(buf.capacity() >= 1007);
    }
}
