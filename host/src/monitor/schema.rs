//! The four inbound request kinds (contract §2), told apart by which schema
//! they satisfy, tried in the contract's order: crawl, action, stats,
//! domain-config. Unknown fields and explicit nulls are rejected; defaults
//! are filled in. A rejection carries the reason that goes to the
//! dead-letter topic.

use crate::request::{check_length as length, CrawlRequest};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// A validated inbound request.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Crawl(Box<CrawlRequest>),
    Action(ActionRequest),
    Stats(StatsRequest),
    DomainConfig(DomainConfigRequest),
}

/// info / stop (contract §2.2), and for a scheduled crawl pause, resume,
/// run-now and unschedule [new].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    pub uuid: String,
    pub appid: String,
    pub spiderid: String,
    pub action: ActionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crawlid: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    Info,
    /// Stops the crawl's current run, and its schedule.
    Stop,
    Pause,
    Resume,
    RunNow,
    Unschedule,
}

impl ActionKind {
    /// Its name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Info => "info",
            ActionKind::Stop => "stop",
            ActionKind::Pause => "pause",
            ActionKind::Resume => "resume",
            ActionKind::RunNow => "run-now",
            ActionKind::Unschedule => "unschedule",
        }
    }
}

/// Stats (contract §2.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsRequest {
    pub uuid: String,
    pub appid: String,
    #[serde(default = "all")]
    pub stats: StatsKind,
}

fn all() -> StatsKind {
    StatsKind::All
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatsKind {
    KafkaMonitor,
    RedisMonitor,
    Crawler,
    Spider,
    Machine,
    Queue,
    Rest,
    All,
}

/// Domain config (contract §2.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainConfigRequest {
    pub uuid: String,
    pub appid: String,
    pub domain: String,
    pub action: DomainConfigKind,
    #[serde(default)]
    pub hits: u32,
    #[serde(default)]
    pub window: u64,
    #[serde(default = "one")]
    pub scale: f64,
}

fn one() -> f64 {
    1.0
}

impl DomainConfigRequest {
    /// The operator's limits on what a client may change (`throttle.max_hits`,
    /// `throttle.domain_config_apps`): a domain config is global, so one
    /// client must not lift a domain's limit for everyone.
    pub fn permitted(&self, t: &crate::config::Throttle) -> Result<(), Rejection> {
        if !t.domain_config_apps.is_empty() && !t.domain_config_apps.contains(&self.appid) {
            return Err(Rejection(format!(
                "invalid domain-config request: app `{}` may not change domain config (throttle.domain_config_apps)",
                self.appid
            )));
        }
        let rate = f64::from(self.hits) / self.window.max(1) as f64;
        let max = f64::from(t.max_hits) / t.window.as_secs_f64();
        if self.action == DomainConfigKind::DomainUpdate && rate > max {
            return Err(Rejection(format!(
                "invalid domain-config request: {} hits per {} s is faster than the {} per {} s allowed (throttle.max_hits)",
                self.hits, self.window, t.max_hits, t.window.as_secs_f64()
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DomainConfigKind {
    DomainUpdate,
    DomainRemove,
    BlacklistUpdate,
    BlacklistRemove,
}

/// Why a message was refused: the `error` of its dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection(pub String);

impl Rejection {
    /// A short, bounded name for the reason (a metrics label).
    pub fn class(&self) -> &'static str {
        let r = self.0.as_str();
        let starts = |p: &str| r.starts_with(p);
        if starts("not JSON") {
            "not_json"
        } else if starts("not UTF-8") {
            "not_utf8"
        } else if starts("a request must be a JSON object") {
            "not_object"
        } else if r.contains("` is null") {
            "explicit_null"
        } else if starts("matches no request kind") {
            "no_kind"
        } else if starts("invalid crawl request") {
            "invalid_crawl"
        } else if starts("invalid action request") {
            "invalid_action"
        } else if starts("invalid stats request") {
            "invalid_stats"
        } else if starts("invalid domain-config request") {
            "invalid_domain_config"
        } else {
            "plugin"
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Tell a message's kind and validate it. `maxdepth_limit` is the setting
/// `crawl.maxdepth_limit`.
pub fn classify(text: &str, maxdepth_limit: u32) -> Result<Inbound, Rejection> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| Rejection(format!("not JSON: {e}")))?;
    let Value::Object(obj) = &value else {
        return Err(Rejection("a request must be a JSON object".into()));
    };
    if let Some((k, _)) = obj.iter().find(|(_, v)| v.is_null()) {
        return Err(Rejection(format!(
            "`{k}` is null: leave an optional field out instead"
        )));
    }
    // A `url` field fits no other kind (they deny unknown fields), so a
    // request with one is a crawl request or nothing: no copy needed.
    if obj.contains_key("url") {
        return CrawlRequest::from_value(value, maxdepth_limit)
            .map(|c| Inbound::Crawl(Box::new(c)))
            .map_err(|e| Rejection(format!("invalid crawl request: {e}")));
    }
    // Tried in the contract's order; the first kind that fits wins.
    let crawl = match CrawlRequest::from_value(value.clone(), maxdepth_limit) {
        Ok(c) => return Ok(Inbound::Crawl(Box::new(c))),
        Err(e) => e.to_string(),
    };
    let action = match action(&value) {
        Ok(a) => return Ok(Inbound::Action(a)),
        Err(e) => e,
    };
    let stats = match stats(&value) {
        Ok(s) => return Ok(Inbound::Stats(s)),
        Err(e) => e,
    };
    let domain = match domain_config(&value) {
        Ok(d) => return Ok(Inbound::DomainConfig(d)),
        Err(e) => e,
    };
    // Report the schema the message most looks like.
    let (kind, reason) = if obj.contains_key("url") {
        ("crawl", crawl)
    } else if obj.contains_key("domain") {
        ("domain-config", domain)
    } else if obj.contains_key("stats") {
        ("stats", stats)
    } else if obj.contains_key("action") {
        ("action", action)
    } else {
        return Err(Rejection(
            "matches no request kind (crawl, action, stats, domain-config)".into(),
        ));
    };
    Err(Rejection(format!("invalid {kind} request: {reason}")))
}

fn typed<T: for<'de> Deserialize<'de>>(value: &Value) -> Result<T, String> {
    serde_json::from_value(value.clone()).map_err(|e| e.to_string())
}

fn action(value: &Value) -> Result<ActionRequest, String> {
    let r: ActionRequest = typed(value)?;
    length("uuid", &r.uuid, 1, 40)?;
    length("appid", &r.appid, 3, 40)?;
    crate::request::check_spiderid(&r.spiderid)?;
    if let Some(c) = &r.crawlid {
        length("crawlid", c, 1, 40)?;
    }
    Ok(r)
}

fn stats(value: &Value) -> Result<StatsRequest, String> {
    let r: StatsRequest = typed(value)?;
    length("uuid", &r.uuid, 1, 40)?;
    length("appid", &r.appid, 3, 40)?;
    Ok(r)
}

fn domain_config(value: &Value) -> Result<DomainConfigRequest, String> {
    let r: DomainConfigRequest = typed(value)?;
    length("uuid", &r.uuid, 1, 40)?;
    length("appid", &r.appid, 3, 40)?;
    length("domain", &r.domain, 1, 253)?;
    if !(0.0..=1.0).contains(&r.scale) {
        return Err(format!("`scale` {} is outside 0.0-1.0", r.scale));
    }
    if r.action == DomainConfigKind::DomainUpdate && (r.hits == 0 || r.window == 0) {
        return Err("a domain-update needs `hits` and `window` above 0".into());
    }
    Ok(r)
}

/// Where a rejected message came from.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// The dead letter for a rejected message (contract §2.5), keys sorted.
pub fn dead_letter(
    rejection: &Rejection,
    payload: &str,
    origin: &Origin<'_>,
    server_time: i64,
) -> Value {
    let mut m = Map::new();
    m.insert("error".into(), rejection.0.clone().into());
    m.insert("payload".into(), payload.into());
    m.insert("topic".into(), origin.topic.into());
    m.insert("partition".into(), origin.partition.into());
    m.insert("offset".into(), origin.offset.into());
    m.insert("server_time".into(), server_time.into());
    json!(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_config_stays_within_the_operators_limits() {
        let d = |appid: &str, hits: u32, window: u64| DomainConfigRequest {
            uuid: "u".into(),
            appid: appid.into(),
            domain: "a.com".into(),
            action: DomainConfigKind::DomainUpdate,
            hits,
            window,
            scale: 1.0,
        };
        let mut t = crate::config::Throttle::default();
        assert!(d("app", 100, 60).permitted(&t).is_ok());
        let fast = d("app", 101, 60).permitted(&t).expect_err("too fast");
        assert!(fast.0.contains("throttle.max_hits"), "{}", fast.0);
        t.domain_config_apps = vec!["ops".into()];
        assert!(d("ops", 1, 60).permitted(&t).is_ok());
        let other = d("app", 1, 60).permitted(&t).expect_err("not listed");
        assert!(other.0.contains("domain_config_apps"), "{}", other.0);
    }

    fn ok(s: &str) -> Inbound {
        classify(s, 3).expect(s)
    }

    fn reason(s: &str) -> String {
        classify(s, 3).expect_err(s).0
    }

    #[test]
    fn each_kind_is_recognized_with_defaults() {
        assert!(matches!(
            ok(r#"{"url":"a.com","appid":"app","crawlid":"c"}"#),
            Inbound::Crawl(_)
        ));
        let Inbound::Action(a) =
            ok(r#"{"uuid":"u1","appid":"app","spiderid":"link","action":"info","crawlid":"c"}"#)
        else {
            panic!("not an action")
        };
        assert_eq!(a.action, ActionKind::Info);
        let Inbound::Stats(s) = ok(r#"{"uuid":"u1","appid":"app"}"#) else {
            panic!("not stats")
        };
        assert_eq!(s.stats, StatsKind::All);
        let Inbound::Stats(s) = ok(r#"{"uuid":"u1","appid":"app","stats":"kafka-monitor"}"#) else {
            panic!("not stats")
        };
        assert_eq!(s.stats, StatsKind::KafkaMonitor);
        let Inbound::DomainConfig(d) = ok(
            r#"{"uuid":"u1","appid":"app","domain":"a.com","action":"domain-update","hits":5,"window":60}"#,
        ) else {
            panic!("not domain config")
        };
        assert_eq!((d.hits, d.window, d.scale), (5, 60, 1.0));
        assert!(matches!(
            ok(r#"{"uuid":"u1","appid":"app","domain":"a.com","action":"blacklist-update"}"#),
            Inbound::DomainConfig(_)
        ));
    }

    #[test]
    fn every_kind_of_invalid_input_has_a_reason() {
        let cases = [
            ("{not json", "not JSON"),
            (r#"[1,2]"#, "JSON object"),
            (
                r#"{"url":"a.com","appid":"app","crawlid":"c","bogus":1}"#,
                "bogus",
            ),
            (
                r#"{"uuid":"u1","appid":"app","spiderid":"link","action":"explode"}"#,
                "invalid action request",
            ),
            (
                r#"{"url":"a.com","appid":"app","crawlid":"c","priority":500}"#,
                "priority",
            ),
            (
                r#"{"url":"a.com","appid":"app","crawlid":"c","cookie":null}"#,
                "null",
            ),
            (
                r#"{"url":"a.com","appid":"app","crawlid":"c","allowed_domains":["a","a"]}"#,
                "twice",
            ),
            (
                r#"{"uuid":"u1","appid":"app","stats":"everything"}"#,
                "invalid stats request",
            ),
            (
                r#"{"uuid":"u1","appid":"app","domain":"a.com","action":"domain-update","hits":0,"window":60}"#,
                "above 0",
            ),
            (
                r#"{"uuid":"u1","appid":"app","domain":"a.com","action":"domain-remove","scale":1.5}"#,
                "scale",
            ),
            (r#"{"hello":"world"}"#, "matches no request kind"),
        ];
        for (input, needle) in cases {
            let r = reason(input);
            assert!(r.contains(needle), "{input}: {r}");
        }
    }

    #[test]
    fn dead_letters_carry_the_contract_fields() {
        let origin = Origin {
            topic: "demo.incoming",
            partition: 2,
            offset: 41,
        };
        let d = dead_letter(&Rejection("bad".into()), "{x", &origin, 1_700_000_000);
        assert_eq!(
            d,
            json!({"error": "bad", "payload": "{x", "topic": "demo.incoming", "partition": 2, "offset": 41, "server_time": 1_700_000_000})
        );
        let text = serde_json::to_string(&d).expect("serializes");
        assert!(text.starts_with(r#"{"error""#), "keys are sorted: {text}");
    }
}
