//! Durations in the settings: written as seconds (`lease_ttl = 60`,
//! `idle = 0.5`) in the file, the environment and flags alike, held as
//! [`Duration`] once loaded, so no use site converts or can panic on a
//! negative number.

use serde::{de::Error, Deserialize, Deserializer};
use std::time::Duration;

/// The longest duration any setting may hold before its own range check:
/// a year, far past every table's limit, and safe to add to an `Instant`.
const MOST: f64 = 365.0 * 86_400.0;

/// `#[serde(deserialize_with = "seconds::read")]`: a number of seconds,
/// integer or fractional, from 0 up to a year.
pub fn read<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let v = f64::deserialize(d)?;
    if !(v.is_finite() && (0.0..=MOST).contains(&v)) {
        return Err(D::Error::custom(format!(
            "a number of seconds from 0 to {MOST}, got {v}"
        )));
    }
    Ok(Duration::from_secs_f64(v))
}

/// `#[serde(deserialize_with = "seconds::read_list")]`: a list of
/// [`read`]'s numbers.
pub fn read_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    #[derive(Deserialize)]
    struct Seconds(#[serde(deserialize_with = "read")] Duration);
    Ok(Vec::<Seconds>::deserialize(d)?
        .into_iter()
        .map(|s| s.0)
        .collect())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use std::time::Duration;

    #[derive(Deserialize)]
    struct T {
        #[serde(deserialize_with = "super::read")]
        t: Duration,
    }

    #[derive(Deserialize)]
    struct L {
        #[serde(deserialize_with = "super::read_list")]
        l: Vec<Duration>,
    }

    #[test]
    fn a_list_of_seconds_reads_each_and_refuses_a_bad_one() {
        let l = toml::from_str::<L>("l = [3, 0.5]").expect("two waits").l;
        assert_eq!(l, [Duration::from_secs(3), Duration::from_millis(500)]);
        let e = toml::from_str::<L>("l = [1, -2]")
            .err()
            .expect("a negative wait");
        assert!(e.to_string().contains("seconds"), "{e}");
    }

    fn parse(text: &str) -> Result<Duration, String> {
        toml::from_str::<T>(text)
            .map(|t| t.t)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn seconds_read_whole_or_fractional_and_refuse_the_rest() {
        assert_eq!(parse("t = 60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("t = 0.25"), Ok(Duration::from_millis(250)));
        for bad in ["t = -1", "t = nan", "t = inf", "t = 1e12", "t = \"5s\""] {
            let e = parse(bad).expect_err(bad);
            assert!(e.contains("seconds") || e.contains("f64"), "{bad}: {e}");
        }
    }
}
