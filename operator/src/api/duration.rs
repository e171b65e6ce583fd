//! Durations as PostgreSQL writes them (`3s`, `500ms`, `1min`), for `applyDelay`.

use thiserror::Error;

/// Largest delay PostgreSQL accepts for `recovery_min_apply_delay` (an int of milliseconds).
pub const MAX_DELAY_MS: u64 = i32::MAX as u64;

/// The regular expression both the Rust validator and the CRD's CEL rule use.
pub const DURATION_PATTERN: &str = "^[0-9]+(ms|s|min|h|d)$";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("`{0}` is not a duration: write a whole number with a unit (ms, s, min, h or d), such as 3s, 500ms or 1min")]
    Syntax(String),
    #[error("`{0}` is longer than PostgreSQL allows for an apply delay (about 24 days)")]
    TooLong(String),
}

/// Parse `3s`, `500ms`, `1min`, `2h`, `1d` into milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, DurationError> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| DurationError::Syntax(text.to_string()))?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(DurationError::Syntax(text.to_string()));
    }
    let factor: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(DurationError::Syntax(text.to_string())),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| DurationError::TooLong(text.to_string()))?;
    let ms = value
        .checked_mul(factor)
        .ok_or_else(|| DurationError::TooLong(text.to_string()))?;
    if ms > MAX_DELAY_MS {
        return Err(DurationError::TooLong(text.to_string()));
    }
    Ok(ms)
}

/// Render milliseconds the way PostgreSQL's configuration accepts them.
pub fn format_ms(ms: u64) -> String {
    if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}min", ms / 60_000)
    } else if ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        let table = [
            ("0s", 0),
            ("3s", 3_000),
            ("500ms", 500),
            ("1min", 60_000),
            ("2h", 7_200_000),
            ("1d", 86_400_000),
        ];
        for (text, want) in table {
            assert_eq!(parse_duration_ms(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn refuses_bad_input() {
        for text in ["", "3", "-3s", "3 s", "1.5s", "s", "3sec", "1m", "3S"] {
            assert!(
                matches!(parse_duration_ms(text), Err(DurationError::Syntax(_))),
                "{text}"
            );
        }
        assert!(matches!(
            parse_duration_ms("25d"),
            Err(DurationError::TooLong(_))
        ));
        assert!(matches!(
            parse_duration_ms("99999999999999999999999s"),
            Err(DurationError::TooLong(_))
        ));
    }

    #[test]
    fn pattern_agrees_with_parser() {
        let re = regex::Regex::new(DURATION_PATTERN).expect("pattern compiles");
        for text in [
            "3s", "500ms", "1min", "-3s", "3", "1.5s", "3sec", "2h", "1d",
        ] {
            assert_eq!(re.is_match(text), parse_duration_ms(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for ms in [0, 500, 3_000, 60_000, 90_000] {
            assert_eq!(parse_duration_ms(&format_ms(ms)), Ok(ms));
        }
    }
}
