//! Durations written as Go writes them: `"30s"`, `"1m"`, `"1h30m"`, `"500ms"`, `"1.5h"`.
//!
//! The grammar is that of Go's `time.ParseDuration`, which the seed's config follows: one
//! or more `<decimal number><unit>` terms, units `ns`, `us` (or `µs`, `μs`), `ms`, `s`,
//! `m` and `h`, a decimal number being digits with an optional fraction. A bare `0` is
//! zero. Unlike Go, a negative duration is refused: no setting here can use one.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A [`Duration`] read from and written as Go's duration syntax (`"1h30m"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct GoDuration(pub(crate) Duration);

/// Why a string is not a Go-style duration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DurationError {
    /// Nothing was written.
    #[error("empty duration; write e.g. \"30s\", \"1m\", \"1h30m\" or \"500ms\"")]
    Empty,
    /// A leading `-`.
    #[error("duration {0:?} is negative")]
    Negative(String),
    /// A number without a unit (other than a bare `0`).
    #[error("duration {0:?} has no unit; units are ns, us, ms, s, m, h (e.g. \"30s\")")]
    MissingUnit(String),
    /// A unit that is not one of Go's.
    #[error("duration {text:?} has unknown unit {unit:?}; units are ns, us, ms, s, m, h")]
    UnknownUnit {
        /// The whole text.
        text: String,
        /// The unit found.
        unit: String,
    },
    /// Something that is neither a number nor a unit where a number was expected.
    #[error("invalid duration {0:?}; write e.g. \"30s\", \"1m\", \"1h30m\" or \"500ms\"")]
    Invalid(String),
    /// More than `u64::MAX` nanoseconds (about 584 years).
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

impl GoDuration {
    /// The zero duration.
    pub(crate) const ZERO: Self = Self(Duration::ZERO);

    /// A duration of `secs` seconds.
    pub(crate) const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// The duration itself.
    pub(crate) const fn get(self) -> Duration {
        self.0
    }

    /// Whether this is zero.
    pub(crate) const fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<Duration> for GoDuration {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

impl From<GoDuration> for Duration {
    fn from(d: GoDuration) -> Self {
        d.0
    }
}

/// Parses a Go-style duration; see the module documentation for the grammar.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    let owned = || s.to_owned();
    let s_unsigned = match s.as_bytes().first() {
        None => return Err(DurationError::Empty),
        Some(b'-') => {
            // "-0" is zero in Go; still refuse it: a sign has no place here.
            return Err(DurationError::Negative(owned()));
        }
        Some(b'+') => &s[1..],
        Some(_) => s,
    };
    if s_unsigned == "0" {
        return Ok(Duration::ZERO);
    }
    if s_unsigned.is_empty() {
        return Err(DurationError::Invalid(owned()));
    }
    let mut rest = s_unsigned;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        // The number: digits, optionally '.', optionally digits; at least one digit.
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after_int) = rest.split_at(int_len);
        let (frac_part, after_num) = match after_int.strip_prefix('.') {
            Some(after_dot) => {
                let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                after_dot.split_at(frac_len)
            }
            None => ("", after_int),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(DurationError::Invalid(owned()));
        }
        // The unit: everything up to the next digit or '.'.
        let unit_len = after_num
            .char_indices()
            .find(|&(_, c)| c.is_ascii_digit() || c == '.')
            .map_or(after_num.len(), |(i, _)| i);
        let (unit, after_unit) = after_num.split_at(unit_len);
        let scale: u128 = match unit {
            "" if after_num.is_empty() => return Err(DurationError::MissingUnit(owned())),
            "" => return Err(DurationError::Invalid(owned())),
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3600 * 1_000_000_000,
            _ if unit.chars().all(|c| c.is_alphabetic()) => {
                return Err(DurationError::UnknownUnit {
                    text: owned(),
                    unit: unit.to_owned(),
                });
            }
            _ => return Err(DurationError::Invalid(owned())),
        };
        let overflow = || DurationError::Overflow(owned());
        let mut term: u128 = 0;
        for digit in int_part.bytes() {
            term = term
                .checked_mul(10)
                .and_then(|t| t.checked_add(u128::from(digit - b'0')))
                .ok_or_else(overflow)?;
            if term > u128::from(u64::MAX) {
                return Err(overflow());
            }
        }
        term = term.checked_mul(scale).ok_or_else(overflow)?;
        // The fraction, truncated to whole nanoseconds as Go does.
        let mut place = scale;
        for digit in frac_part.bytes() {
            place /= 10;
            if place == 0 {
                break;
            }
            term += u128::from(digit - b'0') * place;
        }
        total = total.checked_add(term).ok_or_else(overflow)?;
        if total > u128::from(u64::MAX) {
            return Err(overflow());
        }
        rest = after_unit;
    }
    let nanos = u64::try_from(total).map_err(|_| DurationError::Overflow(owned()))?;
    Ok(Duration::from_nanos(nanos))
}

impl FromStr for GoDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(Self)
    }
}

/// Writes the shortest exact Go-style form: `0s`, `500ms`, `1h30m`, `1.5s`, `90us`.
impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.is_zero() {
            return f.write_str("0s");
        }
        let secs = d.as_secs();
        let nanos = d.subsec_nanos();
        if secs == 0 {
            return match nanos {
                n if n % 1_000_000 == 0 => write!(f, "{}ms", n / 1_000_000),
                n if n % 1_000 == 0 => write!(f, "{}us", n / 1_000),
                n => write!(f, "{n}ns"),
            };
        }
        let (hours, minutes, seconds) = (secs / 3600, secs / 60 % 60, secs % 60);
        if hours > 0 {
            write!(f, "{hours}h")?;
        }
        if minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        if seconds > 0 || nanos > 0 {
            write!(f, "{seconds}")?;
            if nanos > 0 {
                let fraction = format!("{nanos:09}");
                write!(f, ".{}", fraction.trim_end_matches('0'))?;
            }
            f.write_str("s")?;
        }
        Ok(())
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

/// Reads a duration from a string, or from the number 0.
struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = GoDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"30s\", \"1m\", \"1h30m\" or \"500ms\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        match v {
            0 => Ok(GoDuration::ZERO),
            _ => Err(E::custom(DurationError::MissingUnit(v.to_string()))),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(DurationError::Negative(v.to_string()))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        if v < 0.0 {
            return Err(E::custom(DurationError::Negative(v.to_string())));
        }
        if v == 0.0 {
            return Ok(GoDuration::ZERO);
        }
        Err(E::custom(DurationError::MissingUnit(v.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Duration {
        parse_duration(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn the_seeds_durations() {
        assert_eq!(ok("30s"), Duration::from_secs(30));
        assert_eq!(ok("60s"), Duration::from_secs(60));
        assert_eq!(ok("1m"), Duration::from_secs(60));
        assert_eq!(ok("2m"), Duration::from_secs(120));
        assert_eq!(ok("10s"), Duration::from_secs(10));
        assert_eq!(ok("30m"), Duration::from_secs(1800));
        assert_eq!(ok("5s"), Duration::from_secs(5));
        assert_eq!(ok("15s"), Duration::from_secs(15));
    }

    #[test]
    fn go_syntax_edge_cases() {
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("+0"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("0h0m0s"), Duration::ZERO);
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("1h30m15s"), Duration::from_secs(5415));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("5.s"), Duration::from_secs(5));
        assert_eq!(ok("250us"), Duration::from_micros(250));
        assert_eq!(ok("250µs"), Duration::from_micros(250));
        assert_eq!(ok("250μs"), Duration::from_micros(250));
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
        assert_eq!(ok("1s500ms"), Duration::from_millis(1500));
        assert_eq!(ok("  2m  "), Duration::from_secs(120));
        // Go truncates fractions below a nanosecond.
        assert_eq!(ok("1.9999999999ns"), Duration::from_nanos(1));
        assert_eq!(ok("0.0000000019s"), Duration::from_nanos(1));
        assert_eq!(ok("2562047h"), Duration::from_secs(2_562_047 * 3600));
    }

    #[test]
    fn bad_durations_say_why() {
        use DurationError::*;
        let err = |s: &str| parse_duration(s).unwrap_err();
        assert_eq!(err(""), Empty);
        assert_eq!(err("   "), Empty);
        assert_eq!(err("-1s"), Negative("-1s".into()));
        assert_eq!(err("-0"), Negative("-0".into()));
        assert_eq!(err("30"), MissingUnit("30".into()));
        assert_eq!(err("1h30"), MissingUnit("1h30".into()));
        assert_eq!(
            err("3d"),
            UnknownUnit {
                text: "3d".into(),
                unit: "d".into()
            }
        );
        assert_eq!(err("10 s"), Invalid("10 s".into()));
        assert_eq!(err("s"), Invalid("s".into()));
        assert_eq!(err("."), Invalid(".".into()));
        assert_eq!(err(".s"), Invalid(".s".into()));
        assert_eq!(err("+"), Invalid("+".into()));
        assert_eq!(err("1..5s"), Invalid("1..5s".into()));
        assert_eq!(
            err("99999999999999999999999s"),
            Overflow("99999999999999999999999s".into())
        );
        assert_eq!(err("18446744074s"), Overflow("18446744074s".into()));
        assert_eq!(err("5124096h5124096h"), Overflow("5124096h5124096h".into()));
        assert!(err("30").to_string().contains("\"30s\""));
    }

    #[test]
    fn display_is_exact_and_short() {
        let show = |d: Duration| GoDuration(d).to_string();
        assert_eq!(show(Duration::ZERO), "0s");
        assert_eq!(show(Duration::from_millis(500)), "500ms");
        assert_eq!(show(Duration::from_micros(250)), "250us");
        assert_eq!(show(Duration::from_nanos(7)), "7ns");
        assert_eq!(show(Duration::from_secs(30)), "30s");
        assert_eq!(show(Duration::from_secs(60)), "1m");
        assert_eq!(show(Duration::from_secs(5400)), "1h30m");
        assert_eq!(show(Duration::from_secs(3601)), "1h1s");
        assert_eq!(show(Duration::from_millis(1500)), "1.5s");
        assert_eq!(show(Duration::from_nanos(60_000_000_001)), "1m0.000000001s");
    }

    proptest::proptest! {
        #[test]
        fn display_parses_back(nanos in 0u64..=u64::MAX) {
            let d = Duration::from_nanos(nanos);
            let text = GoDuration(d).to_string();
            proptest::prop_assert_eq!(parse_duration(&text), Ok(d), "{}", text);
        }

        #[test]
        fn parsing_never_panics(text in "[-+0-9.a-zµμ ]{0,24}") {
            let _ = parse_duration(&text);
        }
    }
}
