//! Token buckets, alone and keyed, with bounded memory.
//!
//! A bucket holds up to `burst` tokens and gains one every `refill`; a request takes one.
//! All arithmetic is on integers and `Instant`s passed in, so the outcome depends only on
//! the inputs. A `now` earlier than a previous one counts as no time passing.

use std::collections::BTreeSet;
use std::hash::Hash;
use std::time::{Duration, Instant};

use super::Map;

/// A token-bucket rate: up to `burst` requests at once, then one per `refill`.
///
/// A `burst` of 0 or a `refill` of zero turns the limit off (every request passes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// Most tokens a bucket holds, i.e. the most requests admitted at one instant.
    pub burst: u32,
    /// Time to regain one token.
    pub refill: Duration,
}

impl RateLimit {
    /// No limit.
    pub const OFF: Self = Self {
        burst: 0,
        refill: Duration::ZERO,
    };

    /// A rate of `burst` requests at once and one more every `refill`.
    pub const fn new(burst: u32, refill: Duration) -> Self {
        Self { burst, refill }
    }

    /// Whether this limit lets every request pass.
    pub fn is_off(&self) -> bool {
        self.burst == 0 || self.refill.is_zero()
    }

    /// Time for an empty bucket to fill up, `None` when that overflows a `Duration`.
    pub fn fill_time(&self) -> Option<Duration> {
        self.refill.checked_mul(self.burst)
    }
}

/// One token bucket: its tokens as of an instant. The [`RateLimit`] is passed to each call
/// so that many buckets sharing one limit do not each store it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    tokens: u32,
    /// The instant `tokens` was counted at; refill progress since then is kept by
    /// advancing it by whole `refill` periods only.
    stamp: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn full(limit: RateLimit, now: Instant) -> Self {
        Self {
            tokens: limit.burst,
            stamp: now,
        }
    }

    /// The tokens available at `now`.
    pub fn tokens(&self, limit: RateLimit, now: Instant) -> u32 {
        let mut copy = *self;
        copy.refill(limit, now);
        copy.tokens
    }

    /// Takes one token if there is one at `now`; an off limit always succeeds.
    pub fn try_take(&mut self, limit: RateLimit, now: Instant) -> bool {
        if limit.is_off() {
            return true;
        }
        self.refill(limit, now);
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// The instant the bucket will be full again if nothing is taken, `None` if never
    /// representable (an absurdly slow rate).
    pub fn full_at(&self, limit: RateLimit) -> Option<Instant> {
        if self.tokens >= limit.burst || limit.is_off() {
            return Some(self.stamp);
        }
        let missing = limit.burst - self.tokens;
        self.stamp.checked_add(limit.refill.checked_mul(missing)?)
    }

    fn refill(&mut self, limit: RateLimit, now: Instant) {
        if limit.is_off() || self.tokens >= limit.burst {
            self.tokens = self.tokens.min(limit.burst);
            self.stamp = self.stamp.max(now);
            return;
        }
        let elapsed = now.saturating_duration_since(self.stamp);
        let periods = elapsed.as_nanos() / limit.refill.as_nanos();
        let missing = limit.burst - self.tokens;
        if periods >= u128::from(missing) {
            self.tokens = limit.burst;
            self.stamp = now;
            return;
        }
        // periods < missing <= u32::MAX, so the casts are exact.
        let periods = periods as u32;
        self.tokens += periods;
        self.stamp = limit
            .refill
            .checked_mul(periods)
            .and_then(|d| self.stamp.checked_add(d))
            .unwrap_or(now);
    }
}

/// Token buckets per key (peer or IP) sharing one [`RateLimit`], with bounded memory.
///
/// A key without a bucket behaves as a full bucket, so a bucket that has refilled
/// completely carries no information and is dropped ("idle"). Buckets are indexed by the
/// instant they will be full again, which makes dropping idle buckets cost O(log n) each.
///
/// At most `max_keys` buckets are kept. When a new key arrives and the table is full, the
/// bucket closest to full (the least debt) is evicted. The trade-off: under a flood of
/// distinct keys (cheap with IPv6) memory stays bounded, and the price is leniency, never
/// strictness: an evicted key starts again with a full bucket. Refusing new keys instead
/// would let the flood lock out every newcomer.
#[derive(Debug, Clone)]
pub struct KeyedLimiter<K> {
    limit: RateLimit,
    max_keys: usize,
    buckets: Map<K, Slot>,
    /// `(full_at, seq)` of every bucket; `seq` makes entries unique.
    by_full_at: BTreeSet<(Instant, u64)>,
    keys_by_seq: Map<u64, K>,
    next_seq: u64,
    evictions: u64,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    bucket: TokenBucket,
    full_at: Instant,
    seq: u64,
}

impl<K: Clone + Eq + Hash> KeyedLimiter<K> {
    /// A limiter with `limit` per key, tracking at most `max_keys` keys (at least 1).
    pub fn new(limit: RateLimit, max_keys: usize) -> Self {
        Self {
            limit,
            max_keys: max_keys.max(1),
            buckets: Map::default(),
            by_full_at: BTreeSet::new(),
            keys_by_seq: Map::default(),
            next_seq: 0,
            evictions: 0,
        }
    }

    /// The limit each key gets.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Whether `key` has a token at `now`, without taking it.
    pub fn check(&self, now: Instant, key: &K) -> bool {
        if self.limit.is_off() {
            return true;
        }
        match self.buckets.get(key) {
            Some(slot) => slot.bucket.tokens(self.limit, now) > 0,
            None => true,
        }
    }

    /// Takes a token for `key` at `now`; `false` when its bucket is empty.
    pub fn try_take(&mut self, now: Instant, key: &K) -> bool {
        if self.limit.is_off() {
            return true;
        }
        self.purge_idle(now);
        let mut slot = match self.buckets.get(key) {
            Some(slot) => *slot,
            None => {
                if self.buckets.len() >= self.max_keys {
                    self.evict_fullest();
                }
                let seq = self.next_seq;
                self.next_seq += 1;
                self.keys_by_seq.insert(seq, key.clone());
                Slot {
                    bucket: TokenBucket::full(self.limit, now),
                    full_at: now,
                    seq,
                }
            }
        };
        let taken = slot.bucket.try_take(self.limit, now);
        self.by_full_at.remove(&(slot.full_at, slot.seq));
        // An unrepresentable refill time (only from absurd rates) counts as idle at once:
        // lenient, never stricter.
        slot.full_at = slot
            .bucket
            .full_at(self.limit)
            .unwrap_or_else(|| now.max(slot.bucket.stamp));
        self.by_full_at.insert((slot.full_at, slot.seq));
        self.buckets.insert(key.clone(), slot);
        taken
    }

    /// Drops every bucket that is full at `now`; they carry no information.
    pub fn purge_idle(&mut self, now: Instant) {
        while let Some(&(full_at, seq)) = self.by_full_at.first() {
            if full_at > now {
                break;
            }
            self.remove_seq(full_at, seq);
        }
    }

    /// Number of keys with a bucket.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key has a bucket.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// How many buckets were evicted because the table was full.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    fn evict_fullest(&mut self) {
        if let Some(&(full_at, seq)) = self.by_full_at.first() {
            self.remove_seq(full_at, seq);
            self.evictions += 1;
        }
    }

    fn remove_seq(&mut self, full_at: Instant, seq: u64) {
        self.by_full_at.remove(&(full_at, seq));
        if let Some(key) = self.keys_by_seq.remove(&seq) {
            self.buckets.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn bucket_admits_burst_then_refills() {
        let t0 = crate::hop::test_base();
        let limit = RateLimit::new(3, S);
        let mut b = TokenBucket::full(limit, t0);
        assert!(b.try_take(limit, t0));
        assert!(b.try_take(limit, t0));
        assert!(b.try_take(limit, t0));
        assert!(!b.try_take(limit, t0));
        // One token after exactly one refill period, not before.
        assert!(!b.try_take(limit, t0 + S - Duration::from_nanos(1)));
        assert!(b.try_take(limit, t0 + S));
        assert!(!b.try_take(limit, t0 + S));
        // Partial progress is kept: 1.5 periods later, then 0.5 more gives a second token.
        assert_eq!(b.tokens(limit, t0 + S * 2 + S / 2), 1);
        assert!(b.try_take(limit, t0 + S * 2 + S / 2));
        assert!(b.try_take(limit, t0 + S * 3));
        assert!(!b.try_take(limit, t0 + S * 3));
        // Never more than the burst.
        assert_eq!(b.tokens(limit, t0 + S * 1000), 3);
        assert_eq!(b.full_at(limit), Some(t0 + S * 6));
    }

    #[test]
    fn off_limits_and_time_going_backwards() {
        let t0 = crate::hop::test_base() + S * 10;
        let mut b = TokenBucket::full(RateLimit::OFF, t0);
        for _ in 0..10 {
            assert!(b.try_take(RateLimit::OFF, t0));
        }
        let limit = RateLimit::new(1, S);
        let mut b = TokenBucket::full(limit, t0);
        assert!(b.try_take(limit, t0));
        assert!(!b.try_take(limit, t0 - S * 5));
        assert!(b.try_take(limit, t0 + S));
        let huge = RateLimit::new(u32::MAX, Duration::MAX);
        let mut b = TokenBucket::full(huge, t0);
        assert!(b.try_take(huge, t0));
        assert_eq!(b.full_at(huge), None);
        assert!(b.try_take(huge, t0 + S));
    }

    #[test]
    fn keyed_limiter_is_per_key() {
        let t0 = crate::hop::test_base();
        let mut l = KeyedLimiter::new(RateLimit::new(2, S), 100);
        assert!(l.try_take(t0, &1));
        assert!(l.try_take(t0, &1));
        assert!(!l.check(t0, &1));
        assert!(!l.try_take(t0, &1));
        assert!(l.check(t0, &2));
        assert!(l.try_take(t0, &2));
        assert!(l.try_take(t0 + S, &1));
        // Key 2 is full again at t0 + S and so no longer tracked.
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn keyed_limiter_drops_idle_buckets() {
        let t0 = crate::hop::test_base();
        let mut l = KeyedLimiter::new(RateLimit::new(2, S), 100);
        for k in 0..50 {
            assert!(l.try_take(t0, &k));
        }
        assert_eq!(l.len(), 50);
        // Each bucket is one token short, full again one period later.
        l.purge_idle(t0 + S - Duration::from_nanos(1));
        assert_eq!(l.len(), 50);
        l.purge_idle(t0 + S);
        assert!(l.is_empty());
    }

    #[test]
    fn keyed_limiter_memory_is_bounded_and_evicts_the_fullest() {
        let t0 = crate::hop::test_base();
        let mut l = KeyedLimiter::new(RateLimit::new(3, S * 60), 4);
        // Key 0 is drained; keys 1..=3 have taken one token each.
        for _ in 0..3 {
            assert!(l.try_take(t0, &0));
        }
        for k in 1..=3 {
            assert!(l.try_take(t0, &k));
        }
        // A flood of new keys keeps the table at 4 and never evicts the drained key 0.
        for k in 100..10_000 {
            assert!(l.try_take(t0 + Duration::from_millis(1), &k));
            assert!(l.len() <= 4);
        }
        assert!(!l.try_take(t0 + Duration::from_millis(1), &0));
        assert!(l.evictions() > 9_000);
        let zero = KeyedLimiter::<u8>::new(RateLimit::new(1, S), 0);
        assert_eq!(zero.max_keys, 1);
    }
}
