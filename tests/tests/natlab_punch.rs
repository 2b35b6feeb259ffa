//! DCUtR through real Linux NATs: in the NAT lab (`relay_tests::natlab`), a peer behind
//! each router, a relay in between, and every pair of stacks (ours, rust-libp2p 0.57,
//! and both mixed directions). Cone NATs (port-restricted, full cone) must punch and
//! ping over the direct connection; symmetric NATs must fall back and keep pinging over
//! the relay. The lab's delays are the issue's: 100 ms per router, 25 ms at the relay.
//!
//! Needs root; where network namespaces are unavailable each test prints
//! `natlab: skipped: <reason>` and passes. `PUNCH_PAIRS=ours,rust,mixed` (any subset)
//! limits the pairs, for working on one stack.

#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Duration;

use relay_tests::natlab::{
    Binaries, Host, Lab, LabError, Nat, Outcome, Pair, PunchLab, Trial, TrialOptions, relay_binary,
};

/// Builds a lab with `nat` on both routers, or prints the skip line and returns `None`
/// where namespaces are unavailable. Any other error fails the test.
fn lab(nat: Nat) -> Option<Lab> {
    match Lab::new(nat, nat) {
        Ok(lab) => Some(lab),
        Err(LabError::Unavailable(reason)) => {
            println!("natlab: skipped: {reason}");
            None
        }
        Err(e) => panic!("natlab: {e}"),
    }
}

fn binaries() -> Binaries {
    Binaries {
        ours: relay_binary().unwrap_or_else(|e| panic!("the relay binary: {e}")),
        rust: PathBuf::from(env!("CARGO_BIN_EXE_rust-peer")),
    }
}

/// The pairs to run: all, or those `PUNCH_PAIRS` names.
fn pairs() -> Vec<Pair> {
    let Ok(wanted) = std::env::var("PUNCH_PAIRS") else {
        return Pair::ALL.to_vec();
    };
    Pair::ALL
        .into_iter()
        .filter(|pair| wanted.split(',').any(|w| w.trim() == pair.kind()))
        .collect()
}

/// Runs one trial of every pair in a lab with `nat` on both routers, checks each with
/// `check`, and fails with every pair's problem at once.
fn every_pair(
    nat: Nat,
    options: &TrialOptions,
    check: impl Fn(&PunchLab<'_>, &Trial) -> Result<(), String>,
) {
    let Some(lab) = lab(nat) else {
        return;
    };
    let punch = PunchLab::start(&lab, binaries()).expect("the relay starts");
    let mut problems = Vec::new();
    for (slot, pair) in (0..).zip(pairs()) {
        match punch.trial(slot, pair, options) {
            Ok(mut trial) => {
                println!(
                    "natlab: {nat}: {pair}: {:?}; pings {:?}",
                    trial.outcome, trial.pings
                );
                if let Err(problem) = check(&punch, &trial) {
                    problems.push(format!(
                        "{pair}: {problem}\n  events:\n{}  dialer stderr:\n{}\n  listener stderr:\n{}",
                        trial.timeline(),
                        tail(&trial.dialer.stderr()),
                        tail(&trial.listener.stderr())
                    ));
                }
            }
            Err(e) => problems.push(format!("{pair}: {e}")),
        }
    }
    assert!(
        problems.is_empty(),
        "{nat}:\n{}\nrelay stderr:\n{}",
        problems.join("\n"),
        tail(&punch.relay_stderr())
    );
}

fn tail(text: &str) -> &str {
    let mut start = text.len().saturating_sub(3000);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// A direct connection to router B's public address, and every ping over it, none
/// faster than the delays of the direct path allow.
fn punched(punch: &PunchLab<'_>, trial: &Trial) -> Result<(), String> {
    let Outcome::Direct { addr, .. } = &trial.outcome else {
        return Err(format!("no direct connection: {:?}", trial.outcome));
    };
    let expected = format!("/ip4/{}/tcp/", punch.lab().public_addr(Host::B));
    if !addr.starts_with(&expected) {
        return Err(format!(
            "the direct connection is to {addr}, not {expected}..."
        ));
    }
    if trial.pings.is_empty() || trial.pings.iter().any(|p| p.relayed) {
        return Err(format!("pings not all direct: {:?}", trial.pings));
    }
    let floor = punch.direct_rtt().as_secs_f64() * 1000.0 - 1.0;
    if let Some(p) = trial.pings.iter().find(|p| p.rtt_ms < floor) {
        return Err(format!(
            "a ping took {} ms, under the path's {floor} ms",
            p.rtt_ms
        ));
    }
    Ok(())
}

#[test]
fn port_restricted_cones_punch_and_ping_directly() {
    every_pair(Nat::PortRestricted, &TrialOptions::default(), punched);
}

#[test]
fn full_cones_punch_and_ping_directly() {
    every_pair(Nat::FullCone, &TrialOptions::default(), punched);
}

#[test]
fn symmetric_nats_fall_back_and_keep_pinging_over_the_relay() {
    // Shorter rust-libp2p timeouts keep the test short: its dials to the dropped SYNs'
    // addresses end after 3 s instead of 10 s, and its dialer, which is never told that
    // the listener gave up, stops waiting after its listener's three attempts.
    let options = TrialOptions {
        rust_dial_timeout: Some(Duration::from_secs(3)),
        rust_punch_timeout: Some(Duration::from_secs(15)),
        ..TrialOptions::default()
    };
    every_pair(Nat::Symmetric, &options, |punch, trial| {
        if trial.outcome.is_direct() {
            return Err(format!(
                "a direct connection through symmetric NATs: {:?}",
                trial.outcome
            ));
        }
        if trial.pings.is_empty() || trial.pings.iter().any(|p| !p.relayed) {
            return Err(format!("pings not all relayed: {:?}", trial.pings));
        }
        let floor = punch.relayed_rtt().as_secs_f64() * 1000.0 - 1.0;
        if let Some(p) = trial.pings.iter().find(|p| p.rtt_ms < floor) {
            return Err(format!(
                "a relayed ping took {} ms, under the path's {floor} ms",
                p.rtt_ms
            ));
        }
        Ok(())
    });
}
