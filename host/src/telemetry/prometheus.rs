//! Prometheus text (format 0.0.4), written in one place: the families
//! made from the counters, for the `/metrics` of a worker or monitor
//! (`crate::metrics`) and of the REST gateway alike, and the helpers with
//! which each endpoint then appends the gauges it reads at scrape time
//! (queue depths from the store, the gateway's connections).
//!
//! Names, labels and help texts are what users scrape: the expected text
//! is pinned in `testdata/`.

use super::events::Stats;
use super::histogram::Histogram;
use std::fmt::{Display, Write};

/// Which counter families an endpoint shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A worker's, a monitor's, or `run`'s: pages, fetches, renders,
    /// plugins, rejections.
    Crawler,
    /// The REST gateway's: requests answered, replies read.
    Gateway,
}

/// The counter families of `scope`, as Prometheus text.
pub fn counters(stats: &Stats, scope: Scope) -> String {
    let families = match scope {
        Scope::Crawler => CRAWLER,
        Scope::Gateway => GATEWAY,
    };
    let mut out = String::new();
    for f in families {
        head(&mut out, f.name, f.kind, f.help);
        (f.samples)(stats, &mut out, f.name);
    }
    out
}

/// One metric family: its name, type, help and how its samples are read
/// from the counters.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: fn(&Stats, &mut String, &str),
}

const COUNTER: &str = "counter";
const GAUGE: &str = "gauge";
const HISTOGRAM: &str = "histogram";

const CRAWLER: &[Family] = &[
    Family {
        name: "spinneret_pages_total",
        kind: COUNTER,
        help: "Crawl results published, by status code (0: fetch failed).",
        samples: |s, out, name| {
            for (status, n) in s.by_status() {
                sample(out, name, &[("status", &status.to_string())], n);
            }
        },
    },
    Family {
        name: "spinneret_fetch_seconds",
        kind: HISTOGRAM,
        help: "Fetch latency of published pages.",
        samples: |s, out, name| histogram(out, name, &[], &s.crawl.fetch_latency),
    },
    Family {
        name: "spinneret_render_seconds",
        kind: HISTOGRAM,
        help: "Render latency (browser load to DOM, sub-requests included).",
        samples: |s, out, name| histogram(out, name, &[], &s.render.latency),
    },
    Family {
        name: "spinneret_renders_total",
        kind: COUNTER,
        help: "Renders by result.",
        samples: |s, out, name| {
            sample(out, name, &[("result", "ok")], s.render.rendered.get());
            sample(out, name, &[("result", "failed")], s.render.failed.get());
        },
    },
    Family {
        name: "spinneret_render_auto_total",
        kind: COUNTER,
        help: "Pages of render: auto crawls, by whether they looked script-built.",
        samples: |s, out, name| {
            let r = &s.render;
            sample(
                out,
                name,
                &[("decision", "rendered")],
                r.auto_rendered.get(),
            );
            sample(out, name, &[("decision", "plain")], r.auto_plain.get());
        },
    },
    Family {
        name: "spinneret_browser_restarts_total",
        kind: COUNTER,
        help: "Browser restarts (crash, kill or memory bound).",
        samples: |s, out, name| sample(out, name, &[], s.render.restarts.get()),
    },
    Family {
        name: "spinneret_render_refused_total",
        kind: COUNTER,
        help: "Requests of rendered pages the address policy refused.",
        samples: |s, out, name| sample(out, name, &[], s.render.refused.get()),
    },
    Family {
        name: "spinneret_renders_in_flight",
        kind: GAUGE,
        help: "Renders running now.",
        samples: |s, out, name| sample(out, name, &[], s.render.in_flight.get()),
    },
    Family {
        name: "spinneret_plugin_call_seconds",
        kind: HISTOGRAM,
        help: "Plugin call latency, by plugin.",
        samples: |s, out, name| {
            for (plugin, h) in s.plugin_latencies() {
                histogram(out, name, &[("plugin", &plugin)], &h);
            }
        },
    },
    Family {
        name: "spinneret_records_total",
        kind: COUNTER,
        help: "Data records spiders sent, published on <prefix>.items.",
        samples: |s, out, name| sample(out, name, &[], s.crawl.records.get()),
    },
    Family {
        name: "spinneret_site_pauses_total",
        kind: COUNTER,
        help: "Requests put back because their site answered 429 or 503.",
        samples: |s, out, name| sample(out, name, &[], s.crawl.paused.get()),
    },
    Family {
        name: "spinneret_rate_limited_total",
        kind: COUNTER,
        help: "Of them, answered 429 (Too Many Requests).",
        samples: |s, out, name| sample(out, name, &[], s.crawl.rate_limited.get()),
    },
    Family {
        name: "spinneret_rejected_total",
        kind: COUNTER,
        help: "Inbound requests rejected (dead-lettered), by reason.",
        samples: |s, out, name| {
            for (reason, n) in s.rejections() {
                sample(out, name, &[("reason", &reason)], n);
            }
        },
    },
    Family {
        name: "spinneret_plugin_reloads_total",
        kind: COUNTER,
        help: "Hot reloads of plugins, by result.",
        samples: |s, out, name| {
            sample(out, name, &[("result", "ok")], s.plugins.reloads_ok.get());
            sample(
                out,
                name,
                &[("result", "failed")],
                s.plugins.reloads_failed.get(),
            );
        },
    },
];

const GATEWAY: &[Family] = &[
    Family {
        name: "spinneret_rest_requests_total",
        kind: COUNTER,
        help: "Requests answered by route and status.",
        samples: |s, out, name| {
            for ((route, code), n) in s.answered() {
                sample(
                    out,
                    name,
                    &[("route", route), ("code", &code.to_string())],
                    n,
                );
            }
        },
    },
    Family {
        name: "spinneret_rest_replies_read_total",
        kind: COUNTER,
        help: "Replies read from outbound_firehose.",
        samples: |s, out, name| sample(out, name, &[], s.rest.replies_read.get()),
    },
];

/// A family's `# HELP` and `# TYPE` lines.
fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One sample line: `name{labels} value` (label values escaped).
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl Display) {
    let _ = writeln!(out, "{name}{} {value}", braced(labels));
}

/// A family of one unlabelled gauge.
pub fn gauge(out: &mut String, name: &str, help: &str, value: impl Display) {
    head(out, name, GAUGE, help);
    sample(out, name, &[], value);
}

/// A family of gauges, one per value of `label`.
pub fn gauges<'a, V: Display>(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    rows: impl IntoIterator<Item = (&'a str, V)>,
) {
    head(out, name, GAUGE, help);
    for (key, v) in rows {
        sample(out, name, &[(label, key)], v);
    }
}

/// A histogram's bucket, sum and count lines.
fn histogram(out: &mut String, name: &str, labels: &[(&str, &str)], h: &Histogram) {
    let bucket = format!("{name}_bucket");
    let count = h.count();
    let bounds = h.buckets().map(|(bound, n)| (bound.to_string(), n));
    for (le, n) in bounds.chain([("+Inf".to_string(), count)]) {
        let mut with_le = labels.to_vec();
        with_le.push(("le", &le));
        sample(out, &bucket, &with_le, n);
    }
    sample(out, &format!("{name}_sum"), labels, h.sum_seconds());
    sample(out, &format!("{name}_count"), labels, count);
}

/// `{k="v",...}`, or nothing without labels.
fn braced(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", esc(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// Label values escaped for the text format.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::{counters, Scope};
    use crate::telemetry::{Event, Restart, Stats};
    use std::time::Duration;

    /// One of each kind of event; the text is what `/metrics` showed
    /// before the counters became events (names, labels, order).
    #[test]
    fn the_crawler_families_are_unchanged() {
        let s = Stats::default();
        let ms = Duration::from_millis;
        let us = Duration::from_micros;
        for (status, failed, fetch) in [
            (200, false, ms(3)),
            (200, false, ms(200)),
            (404, false, ms(7000)),
            (0, true, us(400)),
        ] {
            s.emit(Event::PageCrawled {
                status,
                failed,
                fetch: Some(fetch),
                crawlid: "c",
                url: "http://example.com/",
                spiderid: "link",
            });
        }
        for _ in 0..3 {
            s.emit(Event::RenderStarted);
        }
        s.emit(Event::Rendered { elapsed: ms(700) });
        s.emit(Event::RenderFailed { elapsed: ms(7000) });
        s.emit(Event::Rendered { elapsed: us(100) });
        s.emit(Event::RenderStarted);
        s.emit(Event::RenderAuto { rendered: true });
        for _ in 0..3 {
            s.emit(Event::RenderAuto { rendered: false });
        }
        s.emit(Event::BrowserRestarted(Restart::Gone));
        s.emit(Event::RenderRefused { requests: 4 });
        for (plugin, elapsed, failed) in [
            ("link", ms(2), false),
            ("a\"b\\c", us(100), true),
            ("link", ms(30), false),
        ] {
            s.emit(Event::PluginCall {
                plugin,
                elapsed,
                failed,
            });
        }
        s.emit(Event::RecordSent);
        s.emit(Event::RecordSent);
        s.emit(Event::Paused { status: 429 });
        s.emit(Event::Paused { status: 503 });
        for reason in ["not_json", "not_json", "invalid"] {
            s.emit(Event::Rejected { reason });
        }
        for ok in [true, false, false] {
            s.emit(Event::PluginReloaded { ok });
        }
        // Not in /metrics.
        s.emit(Event::Retried);
        s.emit(Event::RestAnswered {
            route: "/",
            status: 200,
        });
        assert_eq!(
            counters(&s, Scope::Crawler),
            include_str!("testdata/crawler.prom")
        );
        assert_eq!(
            counters(&Stats::default(), Scope::Crawler),
            include_str!("testdata/crawler-empty.prom")
        );
    }
}
