//! `just bench`: figures, never assertions.
//!
//! 1. Host link extraction on the site's 15-25 KB pages (µs per page).
//! 2. An embedded crawl of a 20,000-page site at unlimited depth with the
//!    `link` spider: pages/s, CPU ms per page, peak RSS (the crawler's own
//!    /proc accounting, read from its JSON summary line).
//! 3. The `link` spider in Rust, Python and JavaScript: parse cost per page,
//!    compile time cold and from the cache, and the same crawl.
//! 4. The same crawl in cluster mode on Redis with 1 and 2 workers: also
//!    round trips per page and Redis memory per crawled URL.
//! 5. info and stop on one crawl with 1,000,000 requests queued.
//! 6. Kafka: ingest throughput (crawl requests validated and enqueued per
//!    second) and a Kafka-fed crawl of the whole site, end to end, in
//!    rounds beside the Redis-only crawl (medians of the ratios; so is the
//!    spider-rs comparison of 2).
//! 7. A rendered crawl of script-built pages in headless chromium: pages/s,
//!    the crawler's and the browser's CPU per page and peak RSS.
//! 8. A rate-limited site (a token bucket, as nginx's `limit_req`) crawled
//!    by 1 and 3 workers on Redis: the share of the limiter's rate kept and
//!    of requests answered 429.
//! 9. The WARC archive: the embedded crawl and one worker on Redis with
//!    `warc.dir` beside without (ratios), and the bytes written per page.
//! 10. A recurring crawl with `revisit`: its second run (every page 304)
//!     beside its first, pages/s and bytes fetched per page.
//!
//! With `--against OLD_BINARY` it only sets this build beside another one
//! (`against`).
//!
//! `runner` holds what the sections share; each section has a module of
//! its own (`links`, `embedded`, `languages`, `cluster`, `control`,
//! `kafka`, `render`, `limited`); `peer` runs spider-rs and `redis` the
//! Redis servers.

mod against;
mod archive;
mod cluster;
mod control;
mod embedded;
mod extraction;
mod kafka;
mod languages;
mod limited;
mod links;
mod peer;
mod redis;
mod render;
mod revisit;
mod runner;

use anyhow::Result;
use clap::Parser;
use embedded::{crawl, Crawl, Scope};
use runner::{only, report};
use spinneret_testsite::{Site, SiteSpec};
use std::path::{Path, PathBuf};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 20_000)]
    pages: usize,
    #[arg(long, default_value_t = 8)]
    hosts: usize,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Run only the Kafka benchmarks (they need Redis and the broker).
    #[arg(long)]
    kafka_only: bool,
    /// Run only the embedded crawls, per spider language.
    #[arg(long)]
    languages_only: bool,
    /// Run only the crawls on Redis (1 and 2 workers).
    #[arg(long)]
    cluster_only: bool,
    /// Run only the rendered crawl (headless chromium).
    #[arg(long)]
    render_only: bool,
    /// Run only the WARC archive's section (on beside off).
    #[arg(long)]
    archive_only: bool,
    /// Run only the extraction section (selectors and markdown per page,
    /// beside parsel and markdownify).
    #[arg(long)]
    extract_only: bool,
    /// Run only the recurring crawl's section (run 2 beside run 1).
    #[arg(long)]
    revisit_only: bool,
    /// Rounds of each side-by-side comparison (Spinneret then spider-rs;
    /// the Redis-only crawl then the Kafka-fed one); the medians of their
    /// ratios are the figures.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Only compare this build with another `spinneret` binary (say, one
    /// built from the commit before a change), in pairs of alternating
    /// order: the embedded crawl and one worker on Redis.
    #[arg(long)]
    against: Option<PathBuf>,
}

/// What every section runs against: the site, the binary, the plugins
/// directory holding the Rust `link` spider alone, a scratch directory.
struct Bench {
    args: Args,
    repo: PathBuf,
    spinneret: PathBuf,
    work: PathBuf,
    site: Site,
    plugins: PathBuf,
}

impl Bench {
    async fn start(args: Args) -> Result<Bench> {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let spinneret = std::env::current_exe()?.with_file_name("spinneret");
        let work = std::env::temp_dir().join(format!("spinneret-bench-{}", std::process::id()));
        std::fs::create_dir_all(&work)?;
        let site = Site::start(SiteSpec {
            pages: args.pages,
            hosts: args.hosts,
            seed: 7,
        })
        .await?;
        // Every crawl but the per-language ones loads the Rust `link` spider
        // alone, so no other plugin compiles in the background meanwhile.
        let plugins = only(&repo, &work, "link")?;
        Ok(Bench {
            args,
            repo,
            spinneret,
            work,
            site,
            plugins,
        })
    }

    /// The embedded crawl of the whole site with the Rust `link` spider.
    async fn whole_crawl(&self) -> Result<Crawl> {
        crawl(
            &self.site,
            &self.spinneret,
            &self.plugins,
            &self.work,
            "link",
            (self.args.concurrency, Scope::Whole),
            None,
        )
        .await
    }

    /// The end of a run: its scratch directory removed.
    fn done(&self) -> Result<()> {
        let _ = std::fs::remove_dir_all(&self.work);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let b = Bench::start(Args::parse()).await?;
    if let Some(old) = &b.args.against {
        against::sections(&b, old).await?;
        return b.done();
    }
    if b.args.render_only {
        rendered(&b).await?;
        return b.done();
    }
    if b.args.extract_only {
        extracted(&b).await?;
        return b.done();
    }
    if b.args.revisit_only {
        revisited(&b).await?;
        return b.done();
    }
    if b.args.archive_only {
        let r = redis::Redis::start(&b.work)?;
        archived(&b, r.as_ref()).await?;
        return b.done();
    }
    if !b.args.kafka_only && !b.args.cluster_only {
        embedded_sections(&b).await?;
    }
    if b.args.languages_only {
        return b.done();
    }
    match redis::Redis::start(&b.work)? {
        None => report(
            "cluster mode",
            &["skipped: redis-server is not installed (run scripts/setup --test)".into()],
        )?,
        Some(r) => return redis_sections(&b, &r).await,
    }
    b.done()
}

/// Selectors and the markdown format per page, beside parsel and
/// markdownify.
async fn extracted(b: &Bench) -> Result<()> {
    let lines = extraction::extraction(&b.site, &b.repo, &b.work).await?;
    report(
        "extraction (selectors, markdown) beside parsel, markdownify",
        &lines,
    )
}

/// Sections 1-3 and 7: link extraction, the embedded crawl beside
/// spider-rs, the spiders by language, the rendered crawl.
async fn embedded_sections(b: &Bench) -> Result<()> {
    let args = &b.args;
    if !args.languages_only {
        report("link extraction", &links::link_extraction(&b.site))?;
        extracted(b).await?;
    }
    let rust = b.whole_crawl().await?;
    if !args.languages_only {
        report("embedded crawl", &rust.lines(&b.site, args.concurrency))?;
        beside_spider_rs(b, &rust).await?;
    }
    report(
        "spiders by language (link in Rust, Python, JavaScript)",
        &languages::languages(
            &b.site,
            &b.spinneret,
            &b.repo,
            &b.work,
            args.concurrency,
            rust,
        )
        .await?,
    )?;
    if !args.languages_only {
        rendered(b).await?;
        revisited(b).await?;
    }
    Ok(())
}

/// The embedded crawl and spider-rs in turns, `args.rounds` times (`first`
/// is our first round); the medians of their ratios.
async fn beside_spider_rs(b: &Bench, first: &Crawl) -> Result<()> {
    let mut rounds = Vec::new();
    for round in 0..b.args.rounds {
        let ours = match round {
            0 => first.clone(),
            _ => b.whole_crawl().await?,
        };
        match peer::run(&b.site, b.args.concurrency).await? {
            Some(peer) => rounds.push((ours, peer)),
            None => break,
        }
    }
    report(
        "peer: spider-rs on the same site, same concurrency",
        &peer::compare(&b.site, b.args.concurrency, &rounds),
    )
}

/// Section 9: the WARC archive on beside off.
async fn archived(b: &Bench, r: Option<&redis::Redis>) -> Result<()> {
    report(
        "WARC archive (warc.dir) on beside off",
        &archive::section(
            &b.site,
            &b.spinneret,
            &b.plugins,
            &b.work,
            (b.args.concurrency, b.args.rounds),
            r,
        )
        .await?,
    )
}

/// Section 10: a recurring crawl's second run beside its first.
async fn revisited(b: &Bench) -> Result<()> {
    report(
        "recurring crawl with revisit: run 2 beside run 1",
        &revisit::section(
            &b.site,
            &b.spinneret,
            &b.plugins,
            &b.work,
            (b.args.concurrency, b.args.rounds),
        )
        .await?,
    )
}

/// Section 7: the rendered crawl.
async fn rendered(b: &Bench) -> Result<()> {
    report(
        "rendered crawl (headless chromium)",
        &render::section(&b.site, &b.spinneret, &b.plugins, &b.work).await?,
    )
}

/// Sections 4-6 on the redis-server `r`: the crawls on Redis, idle
/// workers, control at scale, then Kafka (`--kafka-only`: Kafka alone,
/// `--cluster-only`: no control or Kafka).
async fn redis_sections(b: &Bench, r: &redis::Redis) -> Result<()> {
    let args = &b.args;
    let (site, spinneret, plugins, work) = (&b.site, &b.spinneret, &b.plugins, &b.work);
    let mut two_workers = 0.0;
    // `--kafka-only` runs its own Redis-only crawls, in its rounds.
    for workers in [1, 2].into_iter().filter(|_| !args.kafka_only) {
        let title = format!("cluster crawl on Redis, {workers} worker(s)");
        let (lines, per_second) = cluster::cluster_crawl(
            site,
            spinneret,
            plugins,
            work,
            (&[r], &r.url()),
            workers,
            args.concurrency,
        )
        .await?;
        report(&title, &lines)?;
        r.flush()?;
        two_workers = per_second;
    }
    if args.kafka_only {
        return kafka::sections(site, spinneret, plugins, work, r, args).await;
    }
    report(
        "rate-limited site (20/s, burst 5, 429 without Retry-After), throttle lifted",
        &limited::section(spinneret, plugins, work, r, args.concurrency).await?,
    )?;
    report(
        "sharded crawl on a Redis Cluster (3 masters + 3 replicas, 16 shards by domain), 2 workers",
        &cluster::sharded_crawl(site, spinneret, plugins, work, args, two_workers).await?,
    )?;
    archived(b, Some(r)).await?;
    r.flush()?;
    report(
        "idle workers on Redis (run --serve, nothing queued)",
        &cluster::idle_workers(spinneret, plugins, work, r).await?,
    )?;
    r.flush()?;
    if args.cluster_only {
        return b.done();
    }
    report(
        "control operations, 1,000,000 queued in 100 crawls",
        &control::control_at_scale(r).await?,
    )?;
    r.flush()?;
    kafka::sections(site, spinneret, plugins, work, r, args).await
}
