//! Write-ahead log positions.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A string that is not an LSN of the form `16/B374D848`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LSN `{0}` (expected hex `XXXXXXXX/XXXXXXXX`)")]
pub struct InvalidLsn(pub String);

/// A WAL position (log sequence number), written by PostgreSQL as `16/B374D848`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `0/0`, the position before any WAL.
    pub const ZERO: Lsn = Lsn(0);

    /// Bytes from `earlier` to `self`; zero when `earlier` is not earlier.
    pub fn bytes_since(self, earlier: Lsn) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = InvalidLsn;

    fn from_str(s: &str) -> Result<Lsn, InvalidLsn> {
        let bad = || InvalidLsn(s.to_string());
        let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
        let half = |part: &str| {
            if part.is_empty() || part.len() > 8 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            u32::from_str_radix(part, 16).map_err(|_| bad())
        };
        Ok(Lsn((u64::from(half(hi)?) << 32) | u64::from(half(lo)?)))
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Lsn, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        let cases = [
            ("0/0", 0u64, "0/0"),
            ("16/B374D848", 0x16_B374_D848, "16/B374D848"),
            ("16/b374d848", 0x16_B374_D848, "16/B374D848"),
            ("0/1741860", 0x174_1860, "0/1741860"),
            ("00000001/00000000", 1 << 32, "1/0"),
            ("FFFFFFFF/FFFFFFFF", u64::MAX, "FFFFFFFF/FFFFFFFF"),
            (" 0/3E8 ", 0x3E8, "0/3E8"),
        ];
        for (input, value, shown) in cases {
            let lsn: Lsn = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(lsn, Lsn(value), "{input}");
            assert_eq!(lsn.to_string(), shown, "{input}");
            assert_eq!(shown.parse::<Lsn>().unwrap(), lsn, "round trip {input}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for input in [
            "",
            "/",
            "0/",
            "/0",
            "16B374D848",
            "1/2/3",
            "G/0",
            "100000000/0",
            "0/+1",
            "-1/0",
        ] {
            assert!(input.parse::<Lsn>().is_err(), "{input:?} should not parse");
        }
    }

    #[test]
    fn orders_and_subtracts() {
        let mut v: Vec<Lsn> = ["1/0", "0/FFFFFFFF", "0/0", "0/10", "A/0"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        v.sort();
        let shown: Vec<String> = v.iter().map(Lsn::to_string).collect();
        assert_eq!(shown, ["0/0", "0/10", "0/FFFFFFFF", "1/0", "A/0"]);
        let a: Lsn = "1/0".parse().unwrap();
        let b: Lsn = "0/FFFFFFF0".parse().unwrap();
        assert_eq!(a.bytes_since(b), 0x10);
        assert_eq!(b.bytes_since(a), 0);
        assert_eq!(Lsn::ZERO, Lsn::default());
    }

    #[test]
    fn serde_as_string() {
        let lsn: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(serde_json::to_string(&lsn).unwrap(), "\"16/B374D848\"");
        let back: Lsn = serde_json::from_str("\"16/b374d848\"").unwrap();
        assert_eq!(back, lsn);
        assert!(serde_json::from_str::<Lsn>("\"nope\"").is_err());
        assert!(serde_json::from_str::<Lsn>("5").is_err());
    }
}
