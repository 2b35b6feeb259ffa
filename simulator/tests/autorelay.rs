//! AutoRelay peers in scenarios: Tier 2 failover with a killed relay (reset) and a
//! crashed one (silent), the re-dial through the new relay, the failover time against
//! two detection intervals, byte-identical reports, and typed errors for bad input.

use std::path::Path;
use std::time::Duration;

use simulator::node::SimClock;
use simulator::scenario::{Scenario, ScenarioError, TrialResult};

fn example(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name);
    Scenario::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Ping interval + ping timeout of the example files' nodes.
const DETECTION: Duration = Duration::from_secs(2);

/// Checks one trial of a Tier 2 example: B ends with two reservations, none on the
/// relay that failed; the re-dial succeeded; returns the failover time.
fn check_tier2_trial(r: &TrialResult) -> Duration {
    assert!(r.completed, "{r:?}");
    assert_eq!(r.failed_hosts.len(), 1, "{r:?}");
    let failed = &r.failed_hosts[0];
    let (peer, held) = &r.auto_relays[0];
    assert_eq!(peer, "b");
    assert_eq!(held.len(), 2, "{r:?}");
    assert!(!held.contains(failed), "{failed} still held: {r:?}");
    assert_eq!(r.relay_failures, 1);
    assert_eq!(r.redial, Some(true));
    assert_eq!(r.failovers.len(), 1, "{r:?}");
    r.failovers[0]
}

#[test]
fn a_killed_relay_is_replaced_at_once() {
    let s = example("autorelay-failover.yaml").with_trials(5).unwrap();
    for t in 0..5 {
        let r = s.run_trial(0, t, SimClock::start()).unwrap();
        let took = check_tier2_trial(&r);
        // The reset arrives within a round trip; dialing the third relay and reserving
        // takes a few more. Well under one detection interval.
        assert!(took < DETECTION / 2, "trial {t}: {took:?}");
    }
    let report = s.run(SimClock::start()).unwrap();
    let cell = &report.cells[0];
    assert_eq!(cell.completed, 5);
    assert_eq!(cell.relay_failures, 5);
    assert_eq!(cell.failovers_within_target(), Some(5));
    assert_eq!(cell.failover_target(), Some(2 * DETECTION));
    assert_eq!(cell.redial_success_rate(), Some(1.0));
    let p90 = cell.failover_quantile(0.9).unwrap();
    assert!(p90 < 2 * DETECTION, "{p90:?}");
}

#[test]
fn a_silent_relay_is_noticed_by_the_heartbeat_and_replaced() {
    let s = example("autorelay-hang.yaml").with_trials(5).unwrap();
    for t in 0..5 {
        let r = s.run_trial(0, t, SimClock::start()).unwrap();
        let took = check_tier2_trial(&r);
        // Nobody tells the node: it waits at least one ping timeout (1 s) for an
        // answer that does not come, at most an interval and a timeout, then reserves.
        assert!(took >= Duration::from_secs(1), "trial {t}: {took:?}");
        assert!(took < 2 * DETECTION, "trial {t}: {took:?}");
    }
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    for name in ["autorelay-failover.yaml", "autorelay-hang.yaml"] {
        let s = example(name).with_trials(6).unwrap();
        let clock = SimClock::start();
        let later = SimClock::new(clock.base() + Duration::from_secs(12_345));
        let a = s.run(clock).unwrap();
        let b = s.run(later).unwrap();
        assert_eq!(a.json_lines(), b.json_lines(), "{name}");
        assert_eq!(a.table(), b.table(), "{name}");
        assert!(a.json_lines().contains("\"relay_failover\":{"), "{name}");
        assert!(a.table().contains("relay failover all: 6 of 6"), "{name}");
        let c = s.clone().with_seed(1234).run(clock).unwrap();
        assert_ne!(a.json_lines(), c.json_lines(), "{name}: another seed");
    }
}

#[test]
fn a_killed_relay_restarts_and_serves_again() {
    // Explicit reservations: the reset is seen at once, the restarted relay (a new
    // node, same identity) grants a new reservation.
    let yaml = "
relays: {relay: {}}
peers: {a: {nat: symmetric}, b: {nat: port_restricted_cone}}
steps:
  - reserve: {peer: b, relay: relay}
  - kill: relay
  - await: {host: b, event: reservation_lost, timeout_s: 1}
  - connect: {from: a, to: b, via: relay, timeout_s: 5}
";
    let mut refused = false;
    let r = Scenario::from_yaml(yaml, "t")
        .unwrap()
        .trace_trial(0, 0, SimClock::start(), &mut |e| {
            refused |= format!("{:?}", e.event).contains("connection refused");
        })
        .unwrap();
    let failure = r.failure.unwrap();
    assert!(failure.starts_with("step 4 (connect)"), "{failure}");
    assert!(refused, "the killed relay's port refuses connections");
    let yaml = yaml.replace(
        "  - connect:",
        "  - restart: relay\n  - reserve: {peer: b, relay: relay}\n  - connect:",
    );
    let r = Scenario::from_yaml(&yaml, "t")
        .unwrap()
        .run_trial(0, 0, SimClock::start())
        .unwrap();
    assert!(r.completed, "{r:?}");
    assert_eq!(r.failed_hosts, vec!["relay".to_owned()]);
    // No AutoRelay peer held it: no failover is measured.
    assert_eq!((r.relay_failures, r.redial), (0, None));
}

#[test]
fn auto_relay_keeps_what_it_is_told_to() {
    // Three relays, keep one, round robin: the first listed is taken; killing it
    // moves the peer to the next.
    let yaml = "
relays: {r1: {}, r2: {}, r3: {}}
peers:
  b: {nat: full_cone, auto_relay: {static_relays: [r1, r2, r3], max_relay_peers: 1,
      selection_policy: round_robin, activation: always}}
steps:
  - await_relays: {peer: b}
  - kill: {relay_of: b, pick: newest}
  - await_relays: {peer: b, count: 1, timeout_s: 5}
";
    let r = Scenario::from_yaml(yaml, "t")
        .unwrap()
        .run_trial(0, 0, SimClock::start())
        .unwrap();
    assert!(r.completed, "{r:?}");
    assert_eq!(r.failed_hosts, vec!["r1".to_owned()]);
    assert_eq!(r.auto_relays, vec![("b".to_owned(), vec!["r2".to_owned()])]);
    // Naming a relay of a peer that holds none fails the step, not the run.
    let yaml = "
relays: {r1: {}}
peers: {b: {nat: full_cone, auto_relay: {static_relays: [r1]}}}
steps:
  - crash: {relay_of: b}
";
    let r = Scenario::from_yaml(yaml, "t")
        .unwrap()
        .run_trial(0, 0, SimClock::start())
        .unwrap();
    let failure = r.failure.unwrap();
    assert!(failure.contains("holds no reservation"), "{failure}");
}

#[test]
fn bad_auto_relay_input_is_a_typed_error() {
    let invalid = |yaml: &str| match Scenario::from_yaml(yaml, "t") {
        Err(ScenarioError::Invalid(msg)) => msg,
        other => panic!("{yaml}: {other:?}"),
    };
    let with = |auto: &str, steps: &str| {
        format!(
            "relays: {{r1: {{}}, r2: {{}}}}\npeers:\n  a: {{}}\n  b: {{auto_relay: {auto}}}\n\
             steps: {steps}\n"
        )
    };
    let cases = [
        (
            with("{static_relays: [r9]}", "[]"),
            "no relay or peer named `r9`",
        ),
        (with("{static_relays: [a]}", "[]"), "`a` is a peer"),
        (with("{static_relays: [r1, r1]}", "[]"), "listed twice"),
        (with("{}", "[]"), "no static relays"),
        (
            with(
                "{static_relays: [r1], min_relay_peers: 3, max_relay_peers: 2}",
                "[]",
            ),
            "min_relay_peers 3 exceeds max_relay_peers 2",
        ),
        (
            with("{static_relays: [r1], max_relay_peers: 0}", "[]"),
            "max_relay_peers must be at least 1",
        ),
        (
            with("{static_relays: [r1], backoff_s: -1}", "[]"),
            "backoff_s",
        ),
        (
            with("{static_relays: [r1]}", "[{await_relays: {peer: a}}]"),
            "`a` runs no auto_relay",
        ),
        (
            with(
                "{static_relays: [r1], max_relay_peers: 2}",
                "[{await_relays: {peer: b, count: 3}}]",
            ),
            "count must be 1 to b's max_relay_peers (2)",
        ),
        (
            with("{static_relays: [r1]}", "[{kill: {relay_of: a}}]"),
            "`a` runs no auto_relay",
        ),
        (
            with("{static_relays: [r1]}", "[{kill: {relay_of: r1}}]"),
            "`r1` is a relay",
        ),
        (
            with(
                "{static_relays: [r1]}",
                "[{connect: {from: a, to: b, via: {relay_of: z}}}]",
            ),
            "no relay or peer named `z`",
        ),
        (with("{static_relays: [r1]}", "[{kill: q}]"), "`q`"),
        (
            with(
                "{static_relays: [r1]}",
                "[{connect: {from: a, to: b, via: a}}]",
            ),
            "`a` is a peer",
        ),
    ];
    for (yaml, expected) in cases {
        let msg = invalid(&yaml);
        assert!(msg.contains(expected), "{yaml}\n=> {msg}");
    }
    let msg = invalid("relays: {}\npeers: {a: {}}\nsteps: []\noptions: {ping_timeout_s: 0}");
    assert!(msg.contains("ping_timeout_s"), "{msg}");
    for yaml in [
        with("{static_relays: [r1], selection_policy: best}", "[]"),
        with("{static_relays: [r1], activation: sometimes}", "[]"),
        with("{static_relays: [r1], colour: blue}", "[]"),
        with(
            "{static_relays: [r1]}",
            "[{kill: {relay_of: b, pick: middle}}]",
        ),
        with("{static_relays: [r1]}", "[{kill: {peer: b}}]"),
        with("{static_relays: [r1]}", "[{crash: [r1]}]"),
    ] {
        assert!(
            matches!(Scenario::from_yaml(&yaml, "t"), Err(ScenarioError::Yaml(_))),
            "{yaml}"
        );
    }
}
