//! Human-written durations (`500ms`, `2s`, `1m30s`) as they appear in the resource and the
//! sidecar config.
//!
//! Pure. The grammar is deliberately small so the CRD schema can enforce it with one regex
//! ([`Duration::PATTERN`]) and the API server refuses `10 seconds` or `-1s` at `kubectl apply`.

use std::{fmt, str::FromStr};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration written as one or more `<integer><unit>` parts, units `h`, `m`, `s`,
/// `ms`: `500ms`, `2s`, `1m`, `1h30m`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

/// Why a duration string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseDurationError {
    #[error("empty duration: write it like `500ms`, `2s` or `1m`")]
    Empty,
    #[error(
        "invalid duration {0:?}: write it like `500ms`, `2s`, `1m` or `1h30m` (units h, m, s, ms)"
    )]
    Invalid(String),
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

impl Duration {
    /// The regex the CRD schema uses; must accept exactly what [`FromStr`] accepts.
    pub const PATTERN: &'static str = "^([0-9]+(ms|s|m|h))+$";

    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    pub const fn from_secs(s: u64) -> Self {
        Self(std::time::Duration::from_secs(s))
    }

    pub const fn as_std(self) -> std::time::Duration {
        self.0
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Self(d)
    }
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ParseDurationError::Empty);
        }
        let invalid = || ParseDurationError::Invalid(s.to_owned());
        let overflow = || ParseDurationError::Overflow(s.to_owned());
        let bytes = s.as_bytes();
        let mut total_ms: u64 = 0;
        let mut i = 0;
        while i < bytes.len() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if start == i {
                return Err(invalid());
            }
            let n: u64 = s[start..i].parse().map_err(|_| overflow())?;
            let unit_ms: u64 = if s[i..].starts_with("ms") {
                i += 2;
                1
            } else {
                let unit = bytes.get(i).ok_or_else(invalid)?;
                i += 1;
                match unit {
                    b'h' => 3_600_000,
                    b'm' => 60_000,
                    b's' => 1_000,
                    _ => return Err(invalid()),
                }
            };
            let part = n.checked_mul(unit_ms).ok_or_else(overflow)?;
            total_ms = total_ms.checked_add(part).ok_or_else(overflow)?;
        }
        Ok(Self::from_millis(total_ms))
    }
}

impl fmt::Display for Duration {
    /// The shortest exact form: `1h30m`, `2s`, `1500ms`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        if !ms.is_multiple_of(1000) {
            return write!(f, "{ms}ms");
        }
        let mut secs = ms / 1000;
        for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
            if secs >= size {
                write!(f, "{}{unit}", secs / size)?;
                secs %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": Self::PATTERN,
            "maxLength": 32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_documented_forms() {
        let cases = [
            ("500ms", 500),
            ("2s", 2_000),
            ("1m", 60_000),
            ("1h30m", 5_400_000),
            ("0s", 0),
            ("1m500ms", 60_500),
        ];
        for (text, ms) in cases {
            assert_eq!(
                text.parse::<Duration>(),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_what_a_person_might_write_by_mistake() {
        for bad in [
            "",
            "10 seconds",
            "-1s",
            "1.5s",
            "10",
            "s",
            "1d",
            "1ms2",
            " 1s",
            "1S",
        ] {
            assert!(
                bad.parse::<Duration>().is_err(),
                "{bad:?} should be refused"
            );
        }
        assert!(matches!(
            "99999999999999999999h".parse::<Duration>(),
            Err(ParseDurationError::Overflow(_))
        ));
    }

    proptest! {
        #[test]
        fn display_round_trips(ms in 0u64..10_000_000_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(d.to_string().parse::<Duration>(), Ok(d));
        }

        /// The schema regex and the parser agree on every short string over the relevant alphabet.
        #[test]
        fn pattern_agrees_with_parser(s in "[0-9hms -]{0,8}") {
            let re_ok = pattern_matches(&s);
            let parse_ok = s.parse::<Duration>().is_ok();
            prop_assert_eq!(re_ok, parse_ok, "{:?}", s);
        }
    }

    /// A hand-written matcher for `^([0-9]+(ms|s|m|h))+$`, so the test does not trust the parser.
    fn pattern_matches(s: &str) -> bool {
        fn rest(b: &[u8]) -> bool {
            // one or more groups
            let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return false;
            }
            let b = &b[digits..];
            let after: Vec<&[u8]> = [&b"ms"[..], b"s", b"m", b"h"]
                .iter()
                .filter(|u| b.starts_with(u))
                .map(|u| &b[u.len()..])
                .collect();
            after.iter().any(|r| r.is_empty() || rest(r))
        }
        rest(s.as_bytes())
    }
}
