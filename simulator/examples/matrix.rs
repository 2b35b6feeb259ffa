//! Prints the punch matrix: oracle verdict and simulated outcome per preset pair.

use simulator::nat::{NatConfig, NatPreset};
use simulator::oracle::{Transport, predict};
use simulator::punch::{PunchSetup, run};

fn main() {
    let mut sides: Vec<(&str, Vec<NatConfig>)> = vec![("public", vec![])];
    sides.extend(NatPreset::ALL.iter().map(|p| (p.name(), vec![p.config()])));
    for transport in [Transport::Tcp, Transport::Quic] {
        eprintln!("{transport:?}");
        for (na, a) in &sides {
            for (nb, b) in &sides {
                let v = predict(a, b, transport);
                let o = run(&PunchSetup::new(a.clone(), b.clone(), transport, 1)).expect("runs");
                eprintln!(
                    "  {na:>22} x {nb:<22} oracle {v:?} sim {:?} t={:?} events={} obs {} {}",
                    o.direct, o.time_to_direct, o.events, o.observed_a, o.observed_b
                );
            }
        }
    }
}
