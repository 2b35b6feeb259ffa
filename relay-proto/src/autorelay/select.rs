//! Choosing relays among eligible candidates by the configured [`SelectionPolicy`].
//!
//! A candidate is eligible when it is idle, not backing off and, unless it is a static
//! relay, scores at least `quality_threshold`: static relays are the operator's trusted
//! choice, so the score orders them but does not exclude them (backoff still applies). Candidates that were in use when AutoRelay last stopped or
//! deactivated ("sticky") are chosen before all others, so the node's advertised relay
//! addresses come back unchanged; within each group the policy decides:
//! - `quality`: by `score + quality_jitter · offset`, highest first, where `offset` in
//!   `[0, 1)` is drawn once per candidate from the seeded RNG; equal keys go to the
//!   candidate known longest.
//! - `random`: uniformly among the group, one draw of the seeded RNG per choice.
//! - `round_robin`: in the order candidates became known, starting after the candidate
//!   chosen last, wrapping around.

use std::cmp::Ordering;
use std::time::Instant;

use super::candidate::{Entry, Source};
use super::config::{AutoRelayConfig, SelectionPolicy};
use crate::rng::Rng;

/// The selection state that outlives one choice: where round robin stands.
#[derive(Clone, Debug, Default)]
pub(crate) struct Selector {
    /// The `seq` of the candidate round robin chose last.
    cursor: Option<u64>,
}

/// A uniformly random number in `[0, 1)`.
pub(crate) fn unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether `entry` may be chosen at `now`; `static_only` during the boot delay.
pub(crate) fn eligible(
    entry: &Entry,
    now: Instant,
    config: &AutoRelayConfig,
    static_only: bool,
) -> bool {
    entry.is_idle()
        && !entry.backoff.active(now)
        && (!static_only || entry.source == Source::Static)
        && (entry.source == Source::Static
            || entry.quality.score(now, &config.score) >= config.quality_threshold)
}

impl Selector {
    /// Chooses up to `n` of `candidates` (indices into `entries`, in `seq` order), best
    /// first.
    pub(crate) fn choose(
        &mut self,
        entries: &[Entry],
        candidates: &[usize],
        n: usize,
        now: Instant,
        config: &AutoRelayConfig,
        rng: &mut Rng,
    ) -> Vec<usize> {
        let (sticky, rest): (Vec<usize>, Vec<usize>) =
            candidates.iter().partition(|&&i| entries[i].sticky);
        let mut chosen = self.choose_in(entries, sticky, n, now, config, rng);
        let left = n - chosen.len();
        chosen.extend(self.choose_in(entries, rest, left, now, config, rng));
        chosen
    }

    fn choose_in(
        &mut self,
        entries: &[Entry],
        mut group: Vec<usize>,
        n: usize,
        now: Instant,
        config: &AutoRelayConfig,
        rng: &mut Rng,
    ) -> Vec<usize> {
        let n = n.min(group.len());
        if n == 0 {
            return Vec::new();
        }
        match config.selection_policy {
            SelectionPolicy::Quality => {
                let key = |i: usize| {
                    let e = &entries[i];
                    e.quality.score(now, &config.score) + config.quality_jitter * e.jitter
                };
                group.sort_by(|&a, &b| {
                    key(b)
                        .partial_cmp(&key(a))
                        .unwrap_or(Ordering::Equal)
                        .then(entries[a].seq.cmp(&entries[b].seq))
                });
                group.truncate(n);
                group
            }
            SelectionPolicy::Random => (0..n)
                .map(|_| {
                    let pick = rng.below(group.len() as u64) as usize;
                    group.remove(pick)
                })
                .collect(),
            SelectionPolicy::RoundRobin => {
                let start = self
                    .cursor
                    .and_then(|c| group.iter().position(|&i| entries[i].seq > c))
                    .unwrap_or(0);
                let chosen: Vec<usize> = (0..n).map(|k| group[(start + k) % group.len()]).collect();
                self.cursor = chosen.last().map(|&i| entries[i].seq);
                chosen
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::identity::keypair_from_seed;

    fn entries(now: Instant, n: u8, rng: &mut Rng) -> Vec<Entry> {
        (0..n)
            .map(|i| {
                let peer = keypair_from_seed(i + 1).public().to_peer_id();
                Entry::new(now, peer, Source::PeerSource, u64::from(i), unit(rng))
            })
            .collect()
    }

    fn config(policy: SelectionPolicy) -> AutoRelayConfig {
        AutoRelayConfig {
            selection_policy: policy,
            ..AutoRelayConfig::default()
        }
    }

    #[test]
    fn quality_picks_the_best_score() {
        let now = crate::test_now();
        let mut rng = Rng::from_u64(1);
        let mut es = entries(now, 4, &mut rng);
        for (e, ms) in es.iter_mut().zip([300, 20, 150, 80]) {
            e.quality.record_rtt(Duration::from_millis(ms));
        }
        let cfg = config(SelectionPolicy::Quality);
        let all: Vec<usize> = (0..4).collect();
        let chosen = Selector::default().choose(&es, &all, 4, now, &cfg, &mut rng);
        assert_eq!(chosen, [1, 3, 2, 0]);
    }

    #[test]
    fn quality_breaks_ties_by_seeded_jitter() {
        let now = crate::test_now();
        let cfg = config(SelectionPolicy::Quality);
        let all: Vec<usize> = (0..5).collect();
        let mut firsts = [0u32; 5];
        for seed in 0..200 {
            let mut rng = Rng::from_u64(seed);
            let es = entries(now, 5, &mut rng);
            let pick = Selector::default().choose(&es, &all, 1, now, &cfg, &mut rng);
            // The same seed makes the same choice.
            let mut again = Rng::from_u64(seed);
            let es2 = entries(now, 5, &mut again);
            assert_eq!(
                pick,
                Selector::default().choose(&es2, &all, 1, now, &cfg, &mut again)
            );
            firsts[pick[0]] += 1;
        }
        assert!(firsts.iter().all(|&c| c >= 20), "{firsts:?}");
    }

    #[test]
    fn jitter_does_not_override_a_clear_difference() {
        let now = crate::test_now();
        let cfg = config(SelectionPolicy::Quality);
        for seed in 0..50 {
            let mut rng = Rng::from_u64(seed);
            let mut es = entries(now, 3, &mut rng);
            es[2].quality.record_rtt(Duration::from_millis(1));
            es[0].quality.record_rtt(Duration::from_millis(400));
            es[1].quality.record_rtt(Duration::from_millis(400));
            let all = [0, 1, 2];
            let pick = Selector::default().choose(&es, &all, 1, now, &cfg, &mut rng);
            assert_eq!(pick, [2]);
        }
    }

    #[test]
    fn random_is_uniform_and_reproducible() {
        let now = crate::test_now();
        let cfg = config(SelectionPolicy::Random);
        let mut rng = Rng::from_u64(9);
        let es = entries(now, 4, &mut rng);
        let all: Vec<usize> = (0..4).collect();
        let mut counts = [0u32; 4];
        let mut sel = Selector::default();
        for _ in 0..4000 {
            let pick = sel.choose(&es, &all, 2, now, &cfg, &mut rng);
            assert_eq!(pick.len(), 2);
            assert_ne!(pick[0], pick[1]);
            for i in pick {
                counts[i] += 1;
            }
        }
        // Each is picked in about half the rounds.
        assert!(
            counts.iter().all(|&c| (1800..2200).contains(&c)),
            "{counts:?}"
        );
        let run = |seed| {
            let mut r = Rng::from_u64(seed);
            (0..10)
                .map(|_| Selector::default().choose(&es, &all, 1, now, &cfg, &mut r)[0])
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn round_robin_rotates() {
        let now = crate::test_now();
        let cfg = config(SelectionPolicy::RoundRobin);
        let mut rng = Rng::from_u64(1);
        let es = entries(now, 3, &mut rng);
        let mut sel = Selector::default();
        let picks: Vec<usize> = (0..7)
            .map(|_| sel.choose(&es, &[0, 1, 2], 1, now, &cfg, &mut rng)[0])
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
        // A candidate in use is skipped; the rotation continues after the last choice.
        assert_eq!(sel.choose(&es, &[0, 2], 1, now, &cfg, &mut rng), [2]);
        assert_eq!(sel.choose(&es, &[0, 1, 2], 2, now, &cfg, &mut rng), [0, 1]);
    }

    #[test]
    fn sticky_candidates_come_first() {
        let now = crate::test_now();
        for policy in [
            SelectionPolicy::Quality,
            SelectionPolicy::Random,
            SelectionPolicy::RoundRobin,
        ] {
            let cfg = config(policy);
            let mut rng = Rng::from_u64(5);
            let mut es = entries(now, 4, &mut rng);
            es[2].sticky = true;
            es[2].quality.record_rtt(Duration::from_millis(200));
            let pick = Selector::default().choose(&es, &[0, 1, 2, 3], 2, now, &cfg, &mut rng);
            assert_eq!(pick[0], 2, "{policy:?}");
            assert_ne!(pick[1], 2);
        }
    }

    #[test]
    fn eligibility() {
        let now = crate::test_now();
        let cfg = config(SelectionPolicy::Quality);
        let mut rng = Rng::from_u64(1);
        let mut es = entries(now, 1, &mut rng);
        assert!(eligible(&es[0], now, &cfg, false));
        assert!(!eligible(&es[0], now, &cfg, true), "dynamic during boot");
        es[0].source = Source::Static;
        assert!(eligible(&es[0], now, &cfg, true));
        es[0].backoff.fail(now, &cfg.backoff);
        assert!(!eligible(&es[0], now, &cfg, false));
        assert!(eligible(&es[0], now + cfg.backoff.initial, &cfg, false));
        es[0].quality.record_rtt(Duration::from_secs(2));
        let later = now + cfg.backoff.initial;
        assert!(
            eligible(&es[0], later, &cfg, false),
            "static ignores the threshold"
        );
        es[0].source = Source::Hop;
        assert!(!eligible(&es[0], later, &cfg, false));
    }
}
