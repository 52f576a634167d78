//! Prometheus text for `/metrics`: the process's [`Stats`] (pages by
//! status, fetch and plugin-call latency histograms, rejected requests by
//! reason, hot reloads) plus, in cluster mode, queue depths by spider and
//! leases in flight read from the store at scrape time.

use crate::monitor::store::MonitorStore;
use crate::stats::Stats;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Latency buckets, in seconds.
const BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A fixed-bucket histogram, lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        for (b, bound) in self.buckets.iter().zip(BOUNDS) {
            if seconds <= bound {
                b.fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add((seconds * 1e6) as u64, Relaxed);
    }

    /// The mean of what was observed (0 if nothing was).
    pub fn mean_seconds(&self) -> f64 {
        let n = self.count.load(Relaxed);
        if n == 0 {
            return 0.0;
        }
        self.sum_us.load(Relaxed) as f64 / 1e6 / n as f64
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, bound) in self.buckets.iter().zip(BOUNDS) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {}",
                b.load(Relaxed)
            );
        }
        let n = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {n}");
        let brace = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(
            out,
            "{name}_sum{} {}",
            brace(labels),
            self.sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{} {n}", brace(labels));
    }
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Label values escaped for the text format.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The headless browser's work in this process.
fn render_metrics(out: &mut String, r: &crate::render::RenderStats) {
    head(
        out,
        "spinneret_render_seconds",
        "histogram",
        "Render latency (browser load to DOM, sub-requests included).",
    );
    r.latency.render(out, "spinneret_render_seconds", "");
    head(
        out,
        "spinneret_renders_total",
        "counter",
        "Renders by result.",
    );
    for (result, n) in [("ok", &r.rendered), ("failed", &r.failed)] {
        let _ = writeln!(
            out,
            "spinneret_renders_total{{result=\"{result}\"}} {}",
            n.load(Relaxed)
        );
    }
    head(
        out,
        "spinneret_render_auto_total",
        "counter",
        "Pages of render: auto crawls, by whether they looked script-built.",
    );
    for (decision, n) in [("rendered", &r.auto_rendered), ("plain", &r.auto_plain)] {
        let _ = writeln!(
            out,
            "spinneret_render_auto_total{{decision=\"{decision}\"}} {}",
            n.load(Relaxed)
        );
    }
    for (name, kind, help, v) in [
        (
            "spinneret_browser_restarts_total",
            "counter",
            "Browser restarts (crash, kill or memory bound).",
            &r.restarts,
        ),
        (
            "spinneret_render_refused_total",
            "counter",
            "Requests of rendered pages the address policy refused.",
            &r.refused,
        ),
        (
            "spinneret_renders_in_flight",
            "gauge",
            "Renders running now.",
            &r.in_flight,
        ),
    ] {
        head(out, name, kind, help);
        let _ = writeln!(out, "{name} {}", v.load(Relaxed));
    }
}

/// Everything this process knows, as Prometheus text.
pub async fn render(stats: &Stats, store: Option<&MonitorStore>) -> String {
    let mut out = String::new();
    head(
        &mut out,
        "spinneret_pages_total",
        "counter",
        "Crawl results published, by status code (0: fetch failed).",
    );
    for (status, n) in stats.by_status() {
        let _ = writeln!(out, "spinneret_pages_total{{status=\"{status}\"}} {n}");
    }
    head(
        &mut out,
        "spinneret_fetch_seconds",
        "histogram",
        "Fetch latency of published pages.",
    );
    stats
        .fetch_latency
        .render(&mut out, "spinneret_fetch_seconds", "");
    render_metrics(&mut out, &stats.render);
    head(
        &mut out,
        "spinneret_plugin_call_seconds",
        "histogram",
        "Plugin call latency, by plugin.",
    );
    for (plugin, h) in stats.plugin_latencies() {
        h.render(
            &mut out,
            "spinneret_plugin_call_seconds",
            &format!("plugin=\"{}\"", esc(&plugin)),
        );
    }
    head(
        &mut out,
        "spinneret_site_pauses_total",
        "counter",
        "Requests put back because their site answered 429 or 503.",
    );
    let _ = writeln!(
        out,
        "spinneret_site_pauses_total {}",
        stats.paused.load(Relaxed)
    );
    head(
        &mut out,
        "spinneret_rejected_total",
        "counter",
        "Inbound requests rejected (dead-lettered), by reason.",
    );
    for (reason, n) in stats.rejections() {
        let _ = writeln!(
            out,
            "spinneret_rejected_total{{reason=\"{}\"}} {n}",
            esc(&reason)
        );
    }
    head(
        &mut out,
        "spinneret_plugin_reloads_total",
        "counter",
        "Hot reloads of plugins, by result.",
    );
    let _ = writeln!(
        out,
        "spinneret_plugin_reloads_total{{result=\"ok\"}} {}",
        stats.reloads_ok.load(Relaxed)
    );
    let _ = writeln!(
        out,
        "spinneret_plugin_reloads_total{{result=\"failed\"}} {}",
        stats.reloads_failed.load(Relaxed)
    );
    if let Some(store) = store {
        if let Ok(depths) = store.queue_depths().await {
            head(
                &mut out,
                "spinneret_queue_depth",
                "gauge",
                "Requests queued, by spider (whole cluster).",
            );
            let mut by_spider: std::collections::BTreeMap<&str, u64> = Default::default();
            for d in &depths {
                *by_spider.entry(&d.spider).or_default() += d.backlog;
            }
            for (spider, n) in by_spider {
                let _ = writeln!(
                    out,
                    "spinneret_queue_depth{{spider=\"{}\"}} {n}",
                    esc(spider)
                );
            }
        }
        if let Ok(sites) = store.site_paces().await {
            head(
                &mut out,
                "spinneret_sites_paused",
                "gauge",
                "Domains paused now because they answered 429 or 503 (whole cluster).",
            );
            let _ = writeln!(out, "spinneret_sites_paused {}", sites.paused);
            let per_domain = |out: &mut String, name: &str, help: &str, rows: Vec<(&str, f64)>| {
                head(out, name, "gauge", help);
                for (domain, v) in rows {
                    let _ = writeln!(out, "{name}{{domain=\"{}\"}} {v:.3}", esc(domain));
                }
            };
            per_domain(
                &mut out,
                "spinneret_site_paused_seconds",
                "Seconds the longest-paused domains wait still.",
                sites
                    .paused_for
                    .iter()
                    .map(|(d, left)| (d.as_str(), left.as_secs_f64()))
                    .collect(),
            );
            per_domain(
                &mut out,
                "spinneret_site_adaptive_rate",
                "Fetches per second the adaptive throttle allows the slowest domains.",
                sites
                    .adaptive
                    .iter()
                    .map(|(d, gap)| (d.as_str(), 1.0 / gap.as_secs_f64().max(0.001)))
                    .collect(),
            );
        }
        if let Ok(c) = store.counts().await {
            head(
                &mut out,
                "spinneret_leases_in_flight",
                "gauge",
                "Requests leased by workers and not yet acked (whole cluster).",
            );
            let _ = writeln!(out, "spinneret_leases_in_flight {}", c.in_flight);
        }
    }
    out
}

/// Serve `/metrics` on `port` (`stats.metrics_port`) until the process ends.
pub async fn serve(
    port: u16,
    stats: Arc<Stats>,
    store: Option<MonitorStore>,
) -> anyhow::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let (stats, store) = (stats.clone(), store.clone());
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    render(&stats, store.as_ref()).await,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on port {port} (stats.metrics_port): {e}"))?;
    tracing::info!(port, "metrics on /metrics");
    axum::serve(listener, app).await?;
    Ok(())
}
