//! The request's `revisit` field, validated: `{"conditional": true,
//! "change": "exact"|"fuzzy", "emit": "all"|"changed"}`. A field a client
//! got wrong is an error that says what to change.

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

/// How a crawl compares each run's pages with the last's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
}

fn yes() -> bool {
    true
}

impl Revisit {
    /// The `revisit` field of a request, checked.
    pub fn parse(field: &serde_json::Value) -> Result<Revisit, String> {
        Revisit::deserialize(field).map_err(|e| format!("revisit: {e}"))
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
    }
}
