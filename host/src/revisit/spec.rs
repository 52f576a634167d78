//! The request's `revisit` field, validated: `{"conditional": true,
//! "change": "exact"|"fuzzy", "emit": "all"|"changed", "adaptive":
//! {"max_interval": 16, "inc": 0.4, "dec": 0.3}}`. A field a client got
//! wrong is an error that says what to change.

use super::ChangeMode;
use serde::{Deserialize, Serialize};

/// Which results of a revisited crawl go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Emit {
    /// Every page's result, each marked with its `change`.
    #[default]
    All,
    /// Only pages `new`, `changed` or `removed`: an unchanged page is
    /// counted in the run's stats, not sent.
    Changed,
}

/// Pages read as often as they change (Nutch's adaptive fetch schedule,
/// counted in runs): each page has an interval, 1 run at first; a fetch
/// that finds it changed (or new) shrinks it by `dec`, one that finds it
/// the same grows it by `inc`, within 1 and `max_interval` runs. A run
/// queues the pages whose interval has passed since they were last read;
/// the seed is read every run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adaptive {
    /// A page is read at least once in this many runs (1 to 1000).
    #[serde(default = "max_interval")]
    pub max_interval: u32,
    /// The interval grows by this part when a page is the same (0 to 10).
    #[serde(default = "inc")]
    pub inc: f32,
    /// The interval shrinks by this part when a page changed (0 to 0.9).
    #[serde(default = "dec")]
    pub dec: f32,
}

fn max_interval() -> u32 {
    16
}
fn inc() -> f32 {
    0.4
}
fn dec() -> f32 {
    0.3
}

impl Adaptive {
    /// A page's next interval (runs) after a fetch that found it
    /// `changed` or not, from its last one.
    pub fn next(&self, interval: f32, changed: bool) -> f32 {
        let i = match changed {
            true => interval * (1.0 - self.dec),
            false => interval * (1.0 + self.inc),
        };
        i.clamp(1.0, self.max_interval as f32)
    }

    fn check(&self) -> Result<(), String> {
        if !(1..=1000).contains(&self.max_interval) {
            return Err("revisit.adaptive.max_interval must be 1 to 1000 runs".into());
        }
        if !(0.0..=10.0).contains(&self.inc) {
            return Err("revisit.adaptive.inc must be 0 to 10".into());
        }
        if !(0.0..=0.9).contains(&self.dec) {
            return Err("revisit.adaptive.dec must be 0 to 0.9".into());
        }
        Ok(())
    }
}

/// How a crawl compares each run's pages with the last's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revisit {
    /// Send the last `ETag` (`If-None-Match`) and `Last-Modified`
    /// (`If-Modified-Since`): an unchanged page answers 304, no body.
    #[serde(default = "yes")]
    pub conditional: bool,
    #[serde(default)]
    pub change: ChangeMode,
    #[serde(default)]
    pub emit: Emit,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<Adaptive>,
}

fn yes() -> bool {
    true
}

impl Revisit {
    /// The `revisit` field of a request, checked.
    pub fn parse(field: &serde_json::Value) -> Result<Revisit, String> {
        let r = Revisit::deserialize(field).map_err(|e| format!("revisit: {e}"))?;
        if let Some(a) = &r.adaptive {
            a.check()?;
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_mistakes() {
        let r = Revisit::parse(&json!({})).expect("valid");
        assert_eq!(
            (r.conditional, r.change, r.emit),
            (true, ChangeMode::Exact, Emit::All)
        );
        let r =
            Revisit::parse(&json!({"conditional": false, "change": "fuzzy", "emit": "changed"}))
                .expect("valid");
        assert_eq!(
            (r.conditional, r.change, r.emit),
            (false, ChangeMode::Fuzzy, Emit::Changed)
        );
        let e = Revisit::parse(&json!({"emit": "some"})).expect_err("invalid");
        assert!(e.contains("unknown variant"), "{e}");
        let e = Revisit::parse(&json!({"every": 3})).expect_err("invalid");
        assert!(e.contains("unknown field"), "{e}");
        let a = Revisit::parse(&json!({"adaptive": {}})).expect("valid");
        assert_eq!(
            a.adaptive,
            Some(Adaptive {
                max_interval: 16,
                inc: 0.4,
                dec: 0.3
            })
        );
        for bad in [
            json!({"max_interval": 0}),
            json!({"inc": -1}),
            json!({"dec": 1}),
            json!({"every": 2}),
        ] {
            assert!(
                Revisit::parse(&json!({ "adaptive": bad })).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_interval_grows_while_a_page_is_the_same_and_shrinks_when_it_changes() {
        let a = Adaptive {
            max_interval: 8,
            inc: 1.0,
            dec: 0.5,
        };
        let mut i = 1.0;
        let mut seen = Vec::new();
        for _ in 0..5 {
            i = a.next(i, false);
            seen.push(i);
        }
        assert_eq!(seen, [2.0, 4.0, 8.0, 8.0, 8.0]);
        assert_eq!(a.next(8.0, true), 4.0);
        assert_eq!(a.next(1.5, true), 1.0, "never below a run");
    }
}
