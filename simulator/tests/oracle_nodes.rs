//! Hole punching by real relay-proto nodes, held to the oracle: every pair of NAT
//! presets (and public hosts) over many seeds, plus chains; the nodes reserve, connect
//! through the relay and run DCUtR themselves. The world's invariants are checked after
//! every event and the node layer's after every step.

use simulator::nat::NatPreset;
use simulator::node::SimClock;
use simulator::oracle::Verdict;
use simulator::scenario::Scenario;

/// Seeds per pair (`ORACLE_SEEDS` to change).
fn seeds() -> u32 {
    std::env::var("ORACLE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8)
}

fn sides() -> Vec<String> {
    let mut sides = vec!["public".to_owned()];
    sides.extend(NatPreset::ALL.iter().map(|p| p.name().to_owned()));
    sides
}

fn matrix(a: &[String], b: &[String]) -> Scenario {
    let list = |v: &[String]| v.join(", ");
    let yaml = format!(
        "
relays: {{relay: {{link: {{latency_ms: [5, 20], jitter_ms: 1}}}}}}
peers:
  a: {{link: {{latency_ms: [10, 40], jitter_ms: 1}}}}
  b: {{link: {{latency_ms: [10, 40], jitter_ms: 1}}}}
steps:
  - reserve: {{peer: b, relay: relay}}
  - connect: {{from: a, to: b, via: relay}}
  - hole_punch: {{from: a, to: b}}
matrix:
  nat: {{a: [{}], b: [{}]}}
",
        list(a),
        list(b)
    );
    Scenario::from_yaml(&yaml, "oracle")
        .unwrap()
        .with_trials(seeds())
        .unwrap()
}

/// Runs every cell and holds each trial to the oracle.
fn check(s: &Scenario) {
    let report = s.run(SimClock::start()).unwrap();
    let mut mismatches = Vec::new();
    for cell in &report.cells {
        assert_eq!(cell.violations, 0, "{}: {:?}", cell.label, cell.failures);
        // Reservation and relayed connection must work whatever the NATs.
        for reason in cell.failures.keys() {
            assert!(reason.starts_with("step 3"), "{}: {reason}", cell.label);
        }
        match cell.oracle.expect("the scenario punches") {
            Verdict::Direct(_) if cell.direct != cell.trials => mismatches.push(format!(
                "{}: oracle direct, {}/{} direct",
                cell.label, cell.direct, cell.trials
            )),
            Verdict::NoDirect if cell.direct != 0 => mismatches.push(format!(
                "{}: oracle none, {}/{} direct",
                cell.label, cell.direct, cell.trials
            )),
            _ => {}
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn every_preset_pair_matches_the_oracle() {
    let sides = sides();
    check(&matrix(&sides, &sides));
}

#[test]
fn chains_match_the_oracle() {
    let chains = [
        "[full_cone, symmetric]".to_owned(),
        "[port_restricted_cone, full_cone]".to_owned(),
        "[restricted_cone, linux_default]".to_owned(),
    ];
    let singles = ["full_cone".to_owned(), "port_restricted_cone".to_owned()];
    check(&matrix(&chains, &singles));
    check(&matrix(&singles, &chains));
}

#[test]
fn reruns_give_identical_bytes() {
    let s = matrix(&sides()[..3], &sides()[3..]).with_trials(2).unwrap();
    let a = s.run(SimClock::start()).unwrap();
    let b = s.run(SimClock::start()).unwrap();
    assert_eq!(a.json_lines(), b.json_lines());
    assert_eq!(a.table(), b.table());
}
