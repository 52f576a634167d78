//! A worker's or monitor's `/metrics`: the counter families of
//! [`telemetry::prometheus`](crate::telemetry::prometheus) (pages by
//! status, fetch and plugin-call latency histograms, renders, rejected
//! requests by reason, hot reloads) plus, in cluster mode, queue depths by
//! spider, site pauses and leases in flight read from the store at scrape
//! time.

use crate::monitor::store::MonitorStore;
use crate::telemetry::prometheus::{counters, gauge, gauges, Scope};
use crate::telemetry::Stats;
use std::sync::Arc;

/// Everything this process knows, as Prometheus text.
pub async fn render(stats: &Stats, store: Option<&MonitorStore>) -> String {
    let mut out = counters(stats, Scope::Crawler);
    let Some(store) = store else {
        return out;
    };
    if let Ok(depths) = store.queue_depths().await {
        let mut by_spider: std::collections::BTreeMap<&str, u64> = Default::default();
        for d in &depths {
            *by_spider.entry(&d.spider).or_default() += d.backlog;
        }
        gauges(
            &mut out,
            "spinneret_queue_depth",
            "Requests queued, by spider (whole cluster).",
            "spider",
            by_spider,
        );
    }
    if let Ok(sites) = store.site_paces().await {
        gauge(
            &mut out,
            "spinneret_sites_paused",
            "Origins paused now because they answered 429 or 503 (whole cluster).",
            sites.paused,
        );
        gauges(
            &mut out,
            "spinneret_site_paused_seconds",
            "Seconds the longest-paused origins wait still.",
            "origin",
            sites
                .paused_for
                .iter()
                .map(|(d, left)| (d.as_str(), format!("{:.3}", left.as_secs_f64()))),
        );
        gauges(
            &mut out,
            "spinneret_site_adaptive_rate",
            "Fetches per second the adaptive throttle allows the slowest origins.",
            "origin",
            sites.adaptive.iter().map(|(d, gap)| {
                let rate = 1.0 / gap.as_secs_f64().max(0.001);
                (d.as_str(), format!("{rate:.3}"))
            }),
        );
        gauges(
            &mut out,
            "spinneret_site_learned_rate",
            "Fetches per second the slowest origins allow, learned from their 429 and 503 answers.",
            "origin",
            sites
                .learned
                .iter()
                .map(|(o, rate, _)| (o.as_str(), format!("{rate:.3}"))),
        );
        gauges(
            &mut out,
            "spinneret_site_slow_downs",
            "429 and 503 answers that cut the learned rate of those origins.",
            "origin",
            sites.learned.iter().map(|(o, _, n)| (o.as_str(), *n)),
        );
    }
    if let Ok(c) = store.counts().await {
        gauge(
            &mut out,
            "spinneret_leases_in_flight",
            "Requests leased by workers and not yet acked (whole cluster).",
            c.in_flight,
        );
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
