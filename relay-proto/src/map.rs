//! Hash tables with a fixed hasher, so that nothing depends on a per-process seed.

/// A `hashbrown` map with a fixed, unseeded hasher.
pub(crate) type Map<K, V> = hashbrown::HashMap<K, V, foldhash::fast::FixedState>;

/// A `hashbrown` set with a fixed, unseeded hasher.
pub(crate) type Set<K> = hashbrown::HashSet<K, foldhash::fast::FixedState>;
