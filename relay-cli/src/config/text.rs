//! Lists of values written as strings in YAML and parsed with `FromStr`: multiaddrs,
//! peer ids, CIDR blocks. Each element is parsed where it stands, so a bad one is
//! reported at its own line and column.

use std::fmt::{self, Display};
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serializer};

/// `#[serde(with = "text::list")]` for a `Vec<T>` of text-parsed values.
pub(crate) mod list {
    use super::*;

    /// Writes each element with its `Display` form.
    pub(crate) fn serialize<T: Display, S: Serializer>(
        items: &[T],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(items.iter().map(ToString::to_string))
    }

    /// Reads a sequence of strings, parsing each with `FromStr`.
    pub(crate) fn deserialize<'de, T, D>(deserializer: D) -> Result<Vec<T>, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        deserializer.deserialize_seq(ListVisitor(PhantomData))
    }
}

/// Reads a sequence of text-parsed values; a null reads as an empty list.
struct ListVisitor<T>(PhantomData<T>);

impl<'de, T> Visitor<'de> for ListVisitor<T>
where
    T: FromStr,
    T::Err: Display,
{
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of strings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // The hint comes from the input: do not let it reserve memory unbounded.
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(Text(item)) = seq.next_element::<Text<T>>()? {
            items.push(item);
        }
        Ok(items)
    }
}

/// One element, parsed from a string.
struct Text<T>(T);

impl<'de, T> Deserialize<'de> for Text<T>
where
    T: FromStr,
    T::Err: Display,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.trim()
            .parse()
            .map(Text)
            .map_err(|e| de::Error::custom(format_args!("{text:?}: {e}")))
    }
}
