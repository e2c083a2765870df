//! Durations in the config are strings with a unit (`250ms`, `5s`, `2m`, `1h`, `1d`):
//! a bare number is ambiguous (nginx means seconds, others milliseconds), so we refuse it.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// A `Duration` that deserializes from a string such as `250ms` or `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConfigDuration(pub Duration);

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let hint = "expected a number with a unit, e.g. 250ms, 5s, 2m, 1h, 1d";
    if digits.is_empty() {
        return Err(format!("invalid duration `{text}`: {hint}"));
    }
    let n: u64 = digits.parse().map_err(|_| format!("invalid duration `{text}`: number too large"))?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "" => return Err(format!("invalid duration `{text}`: missing unit; {hint}")),
        _ => return Err(format!("invalid duration `{text}`: unknown unit `{unit}`; {hint}")),
    };
    n.checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("invalid duration `{text}`: too large"))
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Accept YAML numbers too, only to give a better message than "invalid type".
        let value = serde_yaml::Value::deserialize(deserializer)?;
        let text = match &value {
            serde_yaml::Value::String(s) => s.clone(),
            serde_yaml::Value::Number(n) => n.to_string(),
            _ => return Err(serde::de::Error::custom("expected a duration string such as `5s`")),
        };
        parse_duration(&text).map(ConfigDuration).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_ambiguous_or_malformed() {
        for bad in ["", "5", "s", "5 sec", "1.5s", "-1s", "5x", "99999999999999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad} should be refused");
        }
        assert!(parse_duration("5").unwrap_err().contains("missing unit"));
    }

    #[test]
    fn deserializes_from_yaml_numbers_with_a_clear_error() {
        let err = serde_yaml::from_str::<ConfigDuration>("5").unwrap_err();
        assert!(err.to_string().contains("missing unit"), "{err}");
        let ok: ConfigDuration = serde_yaml::from_str("\"1h\"").unwrap();
        assert_eq!(ok.0, Duration::from_secs(3600));
    }
}
