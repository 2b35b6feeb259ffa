//! IP-to-ASN table in the common ip2asn TSV format, for per-ASN reservation limits.
//!
//! The format is that of iptoasn.com: one range per line,
//! `range_start \t range_end \t AS_number \t country_code \t AS_description`. The IPv4,
//! IPv6 and combined files all parse; IPv4 bounds may also be written as integers (the
//! `ip2asn-v4-u32` file). Ranges with AS number 0 are "not routed" and map to no ASN.
//! Empty lines and lines starting with `#` are skipped; any other malformed line is an
//! error that names its line number, because it means the operator's file is wrong.
//!
//! Lookups are binary searches over sorted, non-overlapping ranges kept per family.

use std::net::IpAddr;
use std::str::FromStr;

use super::ip::to_bits;

/// An IP-to-ASN table: sorted address ranges, each with its autonomous system number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AsnTable {
    v4: Ranges<u32>,
    v6: Ranges<u128>,
}

/// A line of an ip2asn file that could not be used, with its 1-based line number.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("ip2asn line {line}: {kind}")]
pub struct AsnParseError {
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub kind: AsnLineError,
}

/// What is wrong with one line of an ip2asn file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AsnLineError {
    /// Fewer than three tab-separated fields.
    #[error("expected at least 3 tab-separated fields (start, end, AS number)")]
    MissingFields,
    /// A range bound is not an IP address.
    #[error("invalid IP address {0:?}")]
    BadAddress(String),
    /// The AS number is not a 32-bit unsigned integer.
    #[error("invalid AS number {0:?}")]
    BadAsn(String),
    /// One bound is IPv4 and the other IPv6.
    #[error("range mixes IPv4 and IPv6")]
    MixedFamilies,
    /// The range starts after it ends.
    #[error("range start is after its end")]
    StartAfterEnd,
    /// The range overlaps the range on an earlier line.
    #[error("range overlaps the range on line {previous}")]
    Overlap {
        /// The line of the range it overlaps.
        previous: usize,
    },
}

impl AsnTable {
    /// Parses a whole ip2asn TSV file (IPv4, IPv6 or combined).
    pub fn parse(text: &str) -> Result<Self, AsnParseError> {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let err = |kind| AsnParseError { line, kind };
            let entry = parse_line(trimmed).map_err(err)?;
            match entry {
                Entry::V4(start, end, asn) => v4.push((start, end, asn, line)),
                Entry::V6(start, end, asn) => v6.push((start, end, asn, line)),
            }
        }
        Ok(Self {
            v4: Ranges::build(v4)?,
            v6: Ranges::build(v6)?,
        })
    }

    /// The ASN announcing `ip`, or `None` when it is in no range or in a not-routed one.
    ///
    /// IPv4-mapped IPv6 addresses are looked up as IPv4.
    pub fn lookup(&self, ip: IpAddr) -> Option<u32> {
        match ip.to_canonical() {
            IpAddr::V4(v4) => self.v4.lookup(v4.to_bits()),
            v6 @ IpAddr::V6(_) => self.v6.lookup(to_bits(v6)),
        }
    }

    /// Number of routed ranges held (adjacent ranges of one ASN are merged).
    pub fn len(&self) -> usize {
        self.v4.asns.len() + self.v6.asns.len()
    }

    /// Whether the table holds no routed range.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl FromStr for AsnTable {
    type Err = AsnParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

enum Entry {
    V4(u32, u32, u32),
    V6(u128, u128, u32),
}

fn parse_line(line: &str) -> Result<Entry, AsnLineError> {
    let mut fields = line.split('\t').map(str::trim);
    let (Some(start), Some(end), Some(asn)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(AsnLineError::MissingFields);
    };
    let start = parse_bound(start)?;
    let end = parse_bound(end)?;
    let digits = asn
        .strip_prefix("AS")
        .or_else(|| asn.strip_prefix("as"))
        .unwrap_or(asn);
    let asn = digits
        .parse::<u32>()
        .map_err(|_| AsnLineError::BadAsn(asn.to_owned()))?;
    let entry = match (start, end) {
        (IpAddr::V4(s), IpAddr::V4(e)) => Entry::V4(s.to_bits(), e.to_bits(), asn),
        (IpAddr::V6(s), IpAddr::V6(e)) => Entry::V6(s.to_bits(), e.to_bits(), asn),
        _ => return Err(AsnLineError::MixedFamilies),
    };
    let ordered = match entry {
        Entry::V4(s, e, _) => s <= e,
        Entry::V6(s, e, _) => s <= e,
    };
    if !ordered {
        return Err(AsnLineError::StartAfterEnd);
    }
    Ok(entry)
}

/// An address, or an IPv4 address written as an integer.
fn parse_bound(field: &str) -> Result<IpAddr, AsnLineError> {
    if let Ok(ip) = field.parse::<IpAddr>() {
        return Ok(ip);
    }
    field
        .parse::<u32>()
        .map(|n| IpAddr::V4(n.into()))
        .map_err(|_| AsnLineError::BadAddress(field.to_owned()))
}

/// Sorted, non-overlapping ranges of one family, as three parallel arrays.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Ranges<K> {
    starts: Vec<K>,
    ends: Vec<K>,
    asns: Vec<u32>,
}

impl<K: Copy + Ord + Step> Ranges<K> {
    /// Sorts `(start, end, asn, line)` entries, rejects overlaps, drops not-routed ranges
    /// and merges adjacent ranges of the same ASN.
    fn build(mut entries: Vec<(K, K, u32, usize)>) -> Result<Self, AsnParseError> {
        entries.sort_unstable_by_key(|&(start, _, _, line)| (start, line));
        let mut ranges = Self {
            starts: Vec::new(),
            ends: Vec::new(),
            asns: Vec::new(),
        };
        let mut previous: Option<(K, usize)> = None;
        for (start, end, asn, line) in entries {
            if let Some((prev_end, prev_line)) = previous
                && start <= prev_end
            {
                return Err(AsnParseError {
                    line: line.max(prev_line),
                    kind: AsnLineError::Overlap {
                        previous: line.min(prev_line),
                    },
                });
            }
            previous = Some((end, line));
            if asn == 0 {
                continue;
            }
            let adjacent = ranges.ends.last().is_some_and(|&e| e.next() == Some(start))
                && ranges.asns.last() == Some(&asn);
            match ranges.ends.last_mut() {
                Some(last) if adjacent => *last = end,
                _ => {
                    ranges.starts.push(start);
                    ranges.ends.push(end);
                    ranges.asns.push(asn);
                }
            }
        }
        ranges.starts.shrink_to_fit();
        ranges.ends.shrink_to_fit();
        ranges.asns.shrink_to_fit();
        Ok(ranges)
    }

    fn lookup(&self, key: K) -> Option<u32> {
        let after = self.starts.partition_point(|&s| s <= key);
        let i = after.checked_sub(1)?;
        if key <= *self.ends.get(i)? {
            self.asns.get(i).copied()
        } else {
            None
        }
    }
}

/// The next integer, for merging adjacent ranges.
trait Step: Sized {
    fn next(self) -> Option<Self>;
}

impl Step for u32 {
    fn next(self) -> Option<Self> {
        self.checked_add(1)
    }
}

impl Step for u128 {
    fn next(self) -> Option<Self> {
        self.checked_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# iptoasn combined sample
1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET
1.0.1.0\t1.0.3.255\t0\tNone\tNot routed
1.0.4.0\t1.0.7.255\t38803\tAU\tWPL-AS-AP Wirefreebroadband Pty Ltd

16843008\t16843263\t15169\tUS\tGOOGLE (as integers)
2001:200::\t2001:200:5ff:ffff:ffff:ffff:ffff:ffff\t2500\tJP\tWIDE-BB WIDE Project
2001:200:600::\t2001:200:6ff:ffff:ffff:ffff:ffff:ffff\t7667\tJP\tAS7667
2001:200:700::\t2001:200:7ff:ffff:ffff:ffff:ffff:ffff\t7667\tJP\tAS7667
\r
2001:4860::\t2001:4860:ffff:ffff:ffff:ffff:ffff:ffff\tAS15169\tUS\tGOOGLE\r
";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_v4_and_v6_and_looks_up_at_range_edges() {
        let t = AsnTable::parse(SAMPLE).unwrap();
        assert_eq!(t.lookup(ip("0.255.255.255")), None);
        assert_eq!(t.lookup(ip("1.0.0.0")), Some(13335));
        assert_eq!(t.lookup(ip("1.0.0.255")), Some(13335));
        assert_eq!(t.lookup(ip("1.0.1.0")), None, "AS 0 is not routed");
        assert_eq!(t.lookup(ip("1.0.3.255")), None);
        assert_eq!(t.lookup(ip("1.0.4.0")), Some(38803));
        assert_eq!(t.lookup(ip("1.0.7.255")), Some(38803));
        assert_eq!(t.lookup(ip("1.0.8.0")), None);
        assert_eq!(t.lookup(ip("1.1.1.0")), Some(15169));
        assert_eq!(t.lookup(ip("1.1.1.255")), Some(15169));
        assert_eq!(t.lookup(ip("::ffff:1.0.0.7")), Some(13335));
        assert_eq!(t.lookup(ip("2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff")), None);
        assert_eq!(t.lookup(ip("2001:200::")), Some(2500));
        assert_eq!(
            t.lookup(ip("2001:200:5ff:ffff:ffff:ffff:ffff:ffff")),
            Some(2500)
        );
        assert_eq!(t.lookup(ip("2001:200:600::")), Some(7667));
        assert_eq!(
            t.lookup(ip("2001:200:7ff:ffff:ffff:ffff:ffff:ffff")),
            Some(7667)
        );
        assert_eq!(t.lookup(ip("2001:200:800::")), None);
        assert_eq!(t.lookup(ip("2001:4860::8888")), Some(15169));
        assert_eq!(t.lookup(ip("ffff::")), None);
        // Two adjacent AS7667 ranges merge; AS 0 is dropped.
        assert_eq!(t.len(), 6);
        assert_eq!("".parse::<AsnTable>().unwrap(), AsnTable::default());
        assert!(AsnTable::default().is_empty());
    }

    #[test]
    fn extreme_ranges() {
        let t = AsnTable::parse(
            "0.0.0.0\t255.255.255.255\t1\n::\tffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff\t2",
        )
        .unwrap();
        assert_eq!(t.lookup(ip("0.0.0.0")), Some(1));
        assert_eq!(t.lookup(ip("255.255.255.255")), Some(1));
        assert_eq!(t.lookup(ip("::")), Some(2));
        assert_eq!(
            t.lookup(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
            Some(2)
        );
    }

    #[test]
    fn bad_lines_report_their_line_number() {
        let cases: &[(&str, usize, AsnLineError)] = &[
            ("1.0.0.0\t1.0.0.255", 1, AsnLineError::MissingFields),
            (
                "# c\n\n1.0.0.x\t1.0.0.255\t1",
                3,
                AsnLineError::BadAddress("1.0.0.x".into()),
            ),
            (
                "1.0.0.0\t1.0.0.255\tAS-1",
                1,
                AsnLineError::BadAsn("AS-1".into()),
            ),
            (
                "1.0.0.0\t1.0.0.255\t4294967296",
                1,
                AsnLineError::BadAsn("4294967296".into()),
            ),
            ("1.0.0.0\t::1\t1", 1, AsnLineError::MixedFamilies),
            ("1.0.0.9\t1.0.0.1\t1", 1, AsnLineError::StartAfterEnd),
            ("1.0.0.0 1.0.0.255 1", 1, AsnLineError::MissingFields),
            (
                "1.0.0.0\t1.0.0.255\t1\n2.0.0.0\t2.0.0.1\t2\n1.0.0.255\t1.0.1.0\t3",
                3,
                AsnLineError::Overlap { previous: 1 },
            ),
            (
                "::5\t::9\t1\n::1\t::5\t1",
                2,
                AsnLineError::Overlap { previous: 1 },
            ),
        ];
        for (text, line, kind) in cases {
            let err = AsnTable::parse(text).unwrap_err();
            assert_eq!((err.line, &err.kind), (*line, kind), "{text:?}");
        }
        let msg = AsnTable::parse("x\tx\t1").unwrap_err().to_string();
        assert!(msg.starts_with("ip2asn line 1:"), "{msg}");
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(text in "[0-9a-fA-F:.\t\n#AS -]{0,200}") {
            if let Ok(t) = AsnTable::parse(&text) {
                let _ = t.lookup(IpAddr::from([1, 2, 3, 4]));
            }
        }
    }
}
