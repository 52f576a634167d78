//! `just bench --against OLD_BINARY`: this build beside another build of
//! `spinneret` (a commit before a change), to tell whether the change
//! costs speed. The embedded crawl and the one-worker crawl on Redis run
//! in pairs whose order alternates (ours first, then theirs first), so a
//! machine that slows down during the run weighs on both alike; the
//! figures are the medians of the pairs' ratios.

use crate::cluster::cluster_crawl;
use crate::embedded::{crawl, Crawl, Scope};
use crate::redis::Redis;
use crate::runner::{median, report};
use crate::Bench;
use anyhow::Result;
use std::path::Path;

/// Both comparisons, `rounds` pairs each.
pub(crate) async fn sections(b: &Bench, old: &Path) -> Result<()> {
    let rounds = b.args.rounds.max(2);
    let mut pairs: Vec<(Crawl, Crawl)> = Vec::new();
    for round in 0..rounds {
        let run = |bin: &Path| {
            let bin = bin.to_path_buf();
            async move {
                crawl(
                    &b.site,
                    &bin,
                    &b.plugins,
                    &b.work,
                    "link",
                    (b.args.concurrency, Scope::Whole),
                    None,
                )
                .await
            }
        };
        let (ours, theirs) = in_turn(round, || run(&b.spinneret), || run(old)).await?;
        pairs.push((ours, theirs));
    }
    let title = |what: &str| {
        format!(
            "this build against {} ({what}, {rounds} pairs)",
            old.display()
        )
    };
    let ratios = |f: fn(&Crawl) -> f64| pairs.iter().map(|(a, o)| f(a) / f(o)).collect();
    report(
        &title("embedded crawl"),
        &[
            line("pages/s:     ", ratios(Crawl::per_second)),
            line("CPU per page:", ratios(|c| c.cpu_ms_per_page)),
            line("peak RSS:    ", ratios(|c| c.peak_rss_mb as f64)),
        ],
    )?;
    let Some(r) = Redis::start(&b.work)? else {
        return report("against, on Redis", &["skipped: no redis-server".into()]);
    };
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let run = |bin: &Path| {
            let (bin, r) = (bin.to_path_buf(), &r);
            async move {
                let redis = (&[r][..], r.url());
                let (_, per_second) = cluster_crawl(
                    &b.site,
                    &bin,
                    &b.plugins,
                    &b.work,
                    (redis.0, &redis.1),
                    1,
                    b.args.concurrency,
                )
                .await?;
                r.flush()?;
                Ok::<_, anyhow::Error>(per_second)
            }
        };
        let (ours, theirs) = in_turn(round, || run(&b.spinneret), || run(old)).await?;
        ratios.push(ours / theirs);
    }
    report(
        &title("one worker on Redis"),
        &[line("pages/s:     ", ratios)],
    )
}

/// A figure's median ratio, then each pair's.
fn line(name: &str, ratios: Vec<f64>) -> String {
    let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    format!("{name} {:.3}x (pairs: {})", median(ratios), each.join(" "))
}

/// Run both, ours first in even rounds and theirs first in odd ones.
async fn in_turn<T, A, B, FA, FB>(round: usize, ours: FA, theirs: FB) -> Result<(T, T)>
where
    A: std::future::Future<Output = Result<T>>,
    B: std::future::Future<Output = Result<T>>,
    FA: FnOnce() -> A,
    FB: FnOnce() -> B,
{
    if round.is_multiple_of(2) {
        let a = ours().await?;
        Ok((a, theirs().await?))
    } else {
        let o = theirs().await?;
        Ok((ours().await?, o))
    }
}
