//! Sequence-number arithmetic modulo 2^32 (RFC 1982 style comparisons).

/// `a < b` in sequence space.
pub(crate) fn lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a <= b` in sequence space.
pub(crate) fn le(a: u32, b: u32) -> bool {
    a == b || lt(a, b)
}

/// `a > b` in sequence space.
pub(crate) fn gt(a: u32, b: u32) -> bool {
    lt(b, a)
}

/// Whether `x` lies in `[lo, lo + len)`.
pub(crate) fn in_window(x: u32, lo: u32, len: u32) -> bool {
    x.wrapping_sub(lo) < len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps() {
        assert!(lt(u32::MAX, 0));
        assert!(gt(5, u32::MAX - 5));
        assert!(le(7, 7));
        assert!(in_window(2, u32::MAX, 4));
        assert!(!in_window(3, u32::MAX, 4));
    }
}
