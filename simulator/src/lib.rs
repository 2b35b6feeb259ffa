//! Deterministic network and NAT simulator driving unmodified relay-proto nodes.
