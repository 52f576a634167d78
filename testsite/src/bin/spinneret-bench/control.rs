//! Section 5: `info` and `stop` on one crawl with 1,000,000 requests of
//! 100 crawls queued on Redis.

use crate::redis;
use crate::runner::ms;
use anyhow::Result;
use std::time::Instant;

/// info and stop on one crawl while 1,000,000 requests of 100 crawls are queued.
pub(crate) async fn control_at_scale(redis: &redis::Redis) -> Result<Vec<String>> {
    use spinneret::request::CrawlRequest;
    let mut settings = spinneret::config::Settings::default();
    settings.redis.url = redis.url();
    settings.redis.namespace = "scale".into();
    let shared = spinneret::store::Redis::connect(&settings, Default::default()).await?;
    let card = std::sync::Arc::new(spinneret::scheduler::WorkerCard::new(
        false,
        Default::default(),
    ));
    let store = spinneret::scheduler::RedisFrontier::new(shared.clone(), &settings, card, None);
    use spinneret::scheduler::Frontier;
    let mem0 = redis.used_memory()?;
    let started = Instant::now();
    for c in 0..100 {
        let seed = format!(r#"{{"url":"http://d0.bench.test/","appid":"bench","crawlid":"c{c}"}}"#);
        let template = CrawlRequest::parse(&seed, 3)?.into_seed();
        for batch in 0..5 {
            let jobs = (0..2000)
                .map(|i| {
                    let n = batch * 2000 + i;
                    let mut j = template.clone();
                    j.url = format!("http://bench{}.test/p/{n}.html", n % 1000);
                    j.priority = n % 7;
                    j
                })
                .collect();
            store.push(jobs).await?;
        }
    }
    let fill = started.elapsed();
    let mem = redis.used_memory()?.saturating_sub(mem0);
    let t = Instant::now();
    let monitor = spinneret::monitor::store::MonitorStore::new(shared, &settings);
    let info = monitor.crawl_info("bench", "c42", "link").await?;
    let info_ms = ms(t.elapsed());
    let t = Instant::now();
    let purged = monitor.stop("bench", "c42", None).await?;
    let stop_ms = ms(t.elapsed());
    Ok(vec![
        format!(
            "queued:           1,000,000 in {:.1} s ({:.0} bytes of Redis each)",
            fill.as_secs_f64(),
            mem as f64 / 1e6
        ),
        format!(
            "info one crawl:   {info_ms:.1} ms ({} pending over {} domains; target <= 100 ms)",
            info.queued,
            info.domains.len()
        ),
        format!("stop one crawl:   {stop_ms:.1} ms ({purged} purged; target <= 100 ms)"),
    ])
}
