//! Scenario files: parsing and its errors, the example files, relay limits, crashes,
//! churn, and byte-identical reports for the same seed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use simulator::node::SimClock;
use simulator::scenario::{Scenario, ScenarioError};

fn scenario(yaml: &str) -> Result<Scenario, ScenarioError> {
    Scenario::from_yaml(yaml, "test")
}

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("scenarios/ exists")
        .map(|e| e.expect("readable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

const BASIC: &str = "
relays: {relay: {}}
peers:
  a: {nat: port_restricted_cone}
  b: {nat: linux_default}
steps:
  - reserve: {peer: b, relay: relay}
  - connect: {from: a, to: b, via: relay}
  - ping: {from: a, to: b, count: 2}
";

#[test]
fn every_example_parses_and_runs_two_trials() {
    let files = examples();
    assert!(files.len() >= 3, "{files:?}");
    for file in files {
        let s = Scenario::load(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .with_trials(1)
            .unwrap();
        // One trial of at most the first three cells keeps the test short.
        for cell in 0..s.cells().len().min(3) {
            let r = s.run_trial(cell, 0, SimClock::start()).unwrap();
            assert!(r.violation.is_none(), "{}: {r:?}", file.display());
        }
    }
}

#[test]
fn reports_are_byte_identical_for_a_seed_and_differ_across_seeds() {
    let s = scenario(BASIC).unwrap().with_trials(4).unwrap();
    let clock = SimClock::start();
    let later = SimClock::new(clock.base() + Duration::from_secs(98_765));
    let a = s.run(clock).unwrap();
    let b = s.run(later).unwrap();
    assert_eq!(a.json_lines(), b.json_lines());
    assert_eq!(a.table(), b.table());
    assert_eq!(a.completed(), 4, "{}", a.table());
    let c = s.clone().with_seed(99).run(clock).unwrap();
    assert_ne!(
        a.json_lines(),
        c.json_lines(),
        "another seed, other latencies"
    );
}

#[test]
fn relayed_transfer_hits_the_relays_data_limit() {
    let yaml = "
relays: {relay: {limits: {max_circuit_bytes: 50000}}}
peers: {a: {nat: full_cone}, b: {}}
steps:
  - reserve: {peer: b, relay: relay}
  - connect: {from: a, to: b, via: relay}
  - transfer: {from: a, to: b, bytes: 20000}
  - transfer: {from: a, to: b, bytes: 100000}
";
    let r = scenario(yaml)
        .unwrap()
        .run_trial(0, 0, SimClock::start())
        .unwrap();
    assert!(!r.completed);
    let failure = r.failure.unwrap();
    assert!(failure.starts_with("step 4 (transfer)"), "{failure}");
    assert_eq!(r.transfers.len(), 1);
    // What crossed the relay stays under the limit per direction (plus one frame).
    assert!(r.relayed_bytes < 2 * 50_000 + 20_000, "{}", r.relayed_bytes);
}

#[test]
fn relay_crash_loses_the_reservation_and_restart_renews_it() {
    let yaml = "
relays: {relay: {}}
peers: {a: {nat: symmetric}, b: {nat: [full_cone, port_restricted_cone]}}
steps:
  - reserve: {peer: b, relay: relay}
  - connect: {from: a, to: b, via: relay}
  - crash: relay
  - ping: {from: a, to: b, timeout_s: 5}
";
    let r = scenario(yaml)
        .unwrap()
        .run_trial(0, 0, SimClock::start())
        .unwrap();
    assert!(
        r.failure.as_deref().unwrap().starts_with("step 4 (ping)"),
        "{r:?}"
    );
    let yaml = "
relays: {relay: {}}
peers: {a: {nat: symmetric}, b: {nat: [full_cone, port_restricted_cone]}}
steps:
  - reserve: {peer: b, relay: relay}
  - crash: relay
  - restart: relay
  - await: {host: b, event: reservation_lost, timeout_s: 120}
  - reserve: {peer: b, relay: relay}
  - connect: {from: a, to: b, via: relay}
  - ping: {from: a, to: b}
";
    let r = scenario(yaml)
        .unwrap()
        .run_trial(0, 0, SimClock::start())
        .unwrap();
    assert!(r.completed, "{r:?}");
}

#[test]
fn peers_come_and_go() {
    let yaml = "
relays: {relay: {}}
peers:
  a: {nat: full_cone}
  b: {nat: restricted_cone}
  c: {present: false}
steps:
  - reserve: {peer: b, relay: relay}
  - join: c
  - connect: {from: c, to: b, via: relay}
  - leave: c
  - await: {host: b, event: connection_closed}
  - connect: {from: a, to: b, via: relay}
  - join: c
  - connect: {from: c, to: b, via: relay}
  - ping: {from: c, to: b}
";
    let r = scenario(yaml)
        .unwrap()
        .run_trial(0, 0, SimClock::start())
        .unwrap();
    assert!(r.completed, "{r:?}");
    // An absent peer cannot be dialed.
    let yaml = "
relays: {relay: {}}
peers: {a: {}, b: {present: false}}
steps:
  - connect: {from: a, to: b, timeout_s: 5}
";
    let r = scenario(yaml)
        .unwrap()
        .run_trial(0, 0, SimClock::start())
        .unwrap();
    assert!(!r.completed);
}

#[test]
fn direct_dial_to_a_public_peer_and_the_paths() {
    let yaml = "
relays: {relay: {}}
peers: {a: {nat: symmetric}, b: {}}
steps:
  - connect: {from: a, to: b}
  - ping: {from: a, to: b, path: direct}
  - transfer: {from: b, to: a, bytes: 300000, path: direct}
  - ping: {from: a, to: b, path: relayed, timeout_s: 1}
";
    let r = scenario(yaml)
        .unwrap()
        .run_trial(0, 0, SimClock::start())
        .unwrap();
    let failure = r.failure.clone().unwrap();
    assert!(
        failure.contains("step 4") && failure.contains("no relayed connection"),
        "{r:?}"
    );
    assert_eq!(r.transfers.len(), 1);
    assert_eq!(r.relayed_bytes, 0);
}

#[test]
fn matrices_and_field_mixes_make_cells() {
    let yaml = format!(
        "{BASIC}
matrix:
  nat: {{a: [public, full_cone, [full_cone, symmetric]], b: [symmetric, linux_default]}}
  trials: 2
"
    );
    let s = scenario(&yaml).unwrap();
    assert_eq!(
        s.cells(),
        vec![
            "a=public b=symmetric",
            "a=public b=linux_default",
            "a=full_cone b=symmetric",
            "a=full_cone b=linux_default",
            "a=full_cone+symmetric b=symmetric",
            "a=full_cone+symmetric b=linux_default",
        ]
    );
    assert_eq!(s.trials(), 12);
    let yaml = format!(
        "{BASIC}
field_mix:
  peers: [a, b]
  prevalence: {{public: 1, full_cone: 1, symmetric: 2, port_restricted_cone: 0}}
"
    );
    let report = scenario(&yaml).unwrap().run(SimClock::start()).unwrap();
    assert_eq!(report.cells.len(), 9);
    let total: f64 = report.cells.iter().map(|c| c.weight.unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-9);
    let mix = report.mix.clone().expect("a projection");
    assert_eq!(mix.field_rate, 0.70);
    assert!(report.json_lines().contains("\"event\":\"field_mix\""));
}

#[test]
fn mistakes_are_typed_errors() {
    let invalid = |yaml: &str| match scenario(yaml) {
        Err(ScenarioError::Invalid(msg)) => msg,
        other => panic!("{yaml}: {other:?}"),
    };
    let msg = invalid("relays: {r: {}}\npeers: {a: {}}\nsteps: [{reserve: {peer: a, relay: x}}]");
    assert!(msg.contains("step 1") && msg.contains("`x`"), "{msg}");
    let msg = invalid("relays: {r: {}}\npeers: {a: {}}\nsteps: [{reserve: {peer: r, relay: a}}]");
    assert!(msg.contains("is a relay"), "{msg}");
    let msg = invalid("relays: {r: {}}\npeers: {r: {}}\nsteps: []");
    assert!(msg.contains("both"), "{msg}");
    let msg = invalid("relays: {}\npeers: {a: {nat: fool_cone}}\nsteps: []");
    assert!(msg.contains("fool_cone"), "{msg}");
    let msg = invalid("trials: 0\nrelays: {}\npeers: {a: {}}\nsteps: []");
    assert!(msg.contains("trials"), "{msg}");
    let msg = invalid("relays: {}\npeers: {a: {link: {loss_percent: 120}}}\nsteps: []");
    assert!(msg.contains("loss_percent"), "{msg}");
    assert!(matches!(
        scenario("transport: quic\nrelays: {}\npeers: {a: {}}\nsteps: []"),
        Err(ScenarioError::Unsupported(_))
    ));
    for yaml in [
        "relays: {}\npeers: {a: {colour: blue}}\nsteps: []",
        "relays: {}\npeers: {a: {}}\nsteps: [{fly: a}]",
        "not: [valid",
        "",
    ] {
        assert!(
            matches!(scenario(yaml), Err(ScenarioError::Yaml(_))),
            "{yaml}"
        );
    }
    assert!(matches!(
        Scenario::load(Path::new("/nonexistent/x.yaml")),
        Err(ScenarioError::Io { .. })
    ));
}
