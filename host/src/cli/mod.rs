//! The command line. This is the edge, so errors are `anyhow` with
//! context, and stdout carries only data. `run` lives in `run.rs`, the
//! Kafka roles and tools in `cluster.rs`, the arguments in `args.rs`.

mod args;
mod cluster;
mod plugins;
mod run;
mod shell;
mod wiring;

pub use args::*;
pub use run::INTERRUPTED;

use crate::config::Settings;
use crate::fetch::Fetcher;
use crate::monitor::store::DomainAction;
use crate::monitor::store::MonitorStore;
use crate::request::CrawlRequest;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::io::Write;
use std::sync::Arc;

pub async fn main(cli: Cli) -> Result<i32> {
    let mut settings = Settings::load(cli.global.config.as_deref())?;
    cli.global.apply(&mut settings);
    cli.command.apply(&mut settings);
    // Once, for every command: what follows takes the settings as valid.
    settings.validate()?;
    crate::telemetry::init(&settings.log);
    match cli.command {
        Command::Run(args) => run::run(settings, args).await,
        Command::Plugins(args) => plugins::plugins(settings, args),
        Command::Parse(args) => plugins::parse(settings, args).await,
        Command::Shell(args) => shell::shell(settings, args).await,
        Command::Submit(args) => submit(settings, args).await,
        Command::Info(args) => control(settings, |s| info(s, args)).await,
        Command::Stop(args) => control(settings, |s| stop(s, args)).await,
        Command::Schedule(args) => control(settings, |s| schedule(s, args)).await,
        Command::Domain(args) => control(settings, |s| domain(s, args)).await,
        Command::Stats(args) => {
            control(settings, |s| async move {
                Ok(crate::monitor::stats::crawler(&s, &args.kind).await?)
            })
            .await
        }
        Command::KafkaMonitor => cluster::kafka_monitor(settings).await,
        Command::RedisMonitor => cluster::redis_monitor(settings).await,
        Command::Worker(args) => cluster::worker(settings, args.control_plane).await,
        Command::Up(_) => cluster::up(settings).await,
        Command::Feed(args) => cluster::feed(settings, args).await,
        Command::Dump(args) => cluster::dump(settings, args).await,
        Command::Rest(_) => cluster::rest(settings).await,
        Command::Wacz(args) => wacz_command(&settings, args).await,
    }
}

/// `spinneret info`: a crawl's progress, or an app's crawls.
async fn info(s: MonitorStore, args: CrawlArgs) -> Result<Value> {
    use crate::monitor::info;
    let now = crate::result::now_unix();
    Ok(match &args.crawlid {
        Some(c) => {
            let i = s.crawl_info(&args.appid, c, &args.spiderid).await?;
            info::crawl_reply((&args.appid, &args.spiderid, c), &i, now)
        }
        None => {
            let crawls = s.app_info(&args.appid, &args.spiderid).await?;
            info::app_reply(&args.appid, &args.spiderid, &crawls, now)
        }
    })
}

/// `spinneret stop`: a crawl's queued requests purged, the crawl stopped.
async fn stop(s: MonitorStore, args: CrawlArgs) -> Result<Value> {
    let crawlid = args.crawlid.context("stop needs --crawlid")?;
    let purged = s.stop(&args.appid, &crawlid, None).await?;
    s.stopped(&args.appid, &crawlid).await?;
    Ok(
        json!({"action": "stop", "appid": args.appid, "spiderid": args.spiderid, "crawlid": crawlid, "total_purged": purged}),
    )
}

/// `spinneret schedule`: pause, resume, run now or unschedule a crawl.
async fn schedule(s: MonitorStore, args: ScheduleArgs) -> Result<Value> {
    use crate::scheduler::Ask;
    let ask = match args.action.as_str() {
        "pause" => Ask::Pause,
        "resume" => Ask::Resume,
        "run-now" => Ask::RunNow,
        _ => Ask::Unschedule,
    };
    match s.schedule_action(&args.appid, &args.crawlid, ask).await? {
        Ok(row) => Ok(
            json!({"action": args.action, "appid": args.appid, "crawlid": args.crawlid,
                             "schedule": crate::monitor::info::schedule_json(&row)}),
        ),
        Err(why) => bail!("{why}"),
    }
}

/// `spinneret domain`: a domain's pace set or removed, or it blacklisted.
async fn domain(s: MonitorStore, args: DomainArgs) -> Result<Value> {
    let action = match args.action.as_str() {
        "update" if args.hits == 0 || args.window <= 0.0 => {
            bail!("domain update needs --hits and --window above 0")
        }
        "update" if !(0.0..=1.0).contains(&args.scale) => bail!("--scale must be within 0.0-1.0"),
        "update" => DomainAction::Update {
            hits: args.hits,
            window: args.window,
            scale: args.scale,
        },
        "remove" => DomainAction::Remove,
        "blacklist" => DomainAction::Blacklist,
        _ => DomainAction::Unblacklist,
    };
    s.domain(&args.domain, &action).await?;
    Ok(json!({"action": args.action, "domain": args.domain}))
}

/// `spinneret wacz`: a crawl packaged, an error if it has no records.
async fn wacz_command(settings: &Settings, args: WaczArgs) -> Result<i32> {
    if settings.warc.dir.is_empty() {
        bail!("wacz needs warc.dir: the directory the crawl's records were written to (with --from-store, where the package is made)");
    }
    let from = if args.from_store {
        "the object store's sealed files"
    } else {
        settings.warc.dir.as_str()
    };
    match wacz(settings, &args.appid, &args.crawlid, args.from_store).await? {
        0 => bail!(
            "no records of crawl {}/{} in {from}",
            args.appid,
            args.crawlid
        ),
        _ => Ok(0),
    }
}

/// Package a crawl as WACZ (into `<warc.dir>/wacz/`), uploaded when there
/// is an object store; how many records went in. `from_store`: from the
/// sealed files every worker uploaded, not this machine's.
async fn wacz(settings: &Settings, appid: &str, crawlid: &str, from_store: bool) -> Result<usize> {
    let dir = std::path::Path::new(&settings.warc.dir);
    let objects = crate::objects::Objects::connect(settings)?;
    let out = dir.join("wacz");
    let packaged = if from_store {
        let objects = objects
            .as_deref()
            .context("--from-store needs an object store (output.objects.url)")?;
        let staging = dir.join(format!(".gathered-{}", std::process::id()));
        let packaged = async {
            let g = crate::archive::gather::gather(objects, appid, crawlid, &staging).await?;
            tracing::info!(files = g.files, indexes = g.indexes, %crawlid, "the crawl's sealed files fetched from the object store");
            Ok::<_, anyhow::Error>(crate::archive::wacz::package(&staging, &out, appid, crawlid)?)
        }
        .await;
        let _ = std::fs::remove_dir_all(&staging);
        packaged?
    } else {
        crate::archive::wacz::package(dir, &out, appid, crawlid)?
    };
    let Some(p) = packaged else {
        return Ok(0);
    };
    tracing::info!(path = %p.path.display(), records = p.records, pages = p.pages, %crawlid, "crawl packaged as WACZ");
    if let Some(objects) = objects {
        let name = p.path.file_name().unwrap_or_default().to_string_lossy();
        let uri = objects.put_file(&format!("wacz/{name}"), &p.path).await?;
        tracing::info!(%uri, "WACZ uploaded");
    }
    Ok(p.records)
}

/// Refuse seeds the address policy refuses, before anything is queued.
async fn check_seeds(fetcher: &Fetcher, requests: &[CrawlRequest]) -> Result<()> {
    for r in requests {
        let url = url::Url::parse(&r.url).with_context(|| format!("bad seed URL {}", r.url))?;
        fetcher
            .policy()
            .check_url(&url)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

/// Run one control operation against the cluster and print its JSON reply.
async fn control<F, Fut>(settings: Settings, op: F) -> Result<i32>
where
    F: FnOnce(MonitorStore) -> Fut,
    Fut: std::future::Future<Output = Result<Value>>,
{
    let cluster = wiring::cluster(&settings, Arc::default()).await?;
    let reply = op(cluster.monitors).await?;
    writeln!(std::io::stdout().lock(), "{reply}")?;
    Ok(0)
}

/// `spinneret submit`: validate, queue in the cluster, exit.
async fn submit(settings: Settings, args: SubmitArgs) -> Result<i32> {
    if settings.redis.url.is_empty() {
        bail!("submit queues requests in a cluster: give --redis URL (or set redis.url)");
    }
    let requests = collect_requests(&settings, &args.requests, &args.spider)?;
    if requests.is_empty() {
        bail!("nothing to submit: give --seed URL, --request JSON or --requests FILE");
    }
    check_seeds(&Fetcher::new(&settings.crawl)?, &requests).await?;
    let stores = wiring::stores(&settings, None, &Arc::default()).await?;
    let (frontier, dedup) = (stores.frontier, stores.dedup);
    for r in requests {
        let (url, crawlid) = (r.url.clone(), r.crawlid.clone());
        if r.schedule.is_some() {
            // Kept in the cluster's schedule book: its runs are fired by
            // whichever process drives the runs when they fall due.
            let key = crate::request::CrawlKey {
                appid: r.appid.clone(),
                crawlid: crawlid.clone(),
            };
            let json = serde_json::to_string(&r)?;
            stores
                .book
                .keep(&key, &json, jiff::Timestamp::now())
                .await?;
            tracing::info!(url = %crate::config::redact(&url), %crawlid, "scheduled");
            continue;
        }
        let cap = settings.crawl.global_page_per_domain_limit;
        let key = crate::request::CrawlKey {
            appid: r.appid.clone(),
            crawlid: crawlid.clone(),
        };
        let webhook = r.webhook.clone();
        if crate::crawl::submit(&*frontier, &*dedup, r, cap).await? {
            // Noted, so that a control plane tells its end.
            stores.book.alive(&key, webhook.as_ref()).await?;
            tracing::info!(url = %crate::config::redact(&url), %crawlid, "queued");
        } else {
            tracing::warn!(url = %crate::config::redact(&url), %crawlid, cap, "not queued: its domain has reached crawl.global_page_per_domain_limit");
        }
    }
    Ok(0)
}

fn collect_requests(
    settings: &Settings,
    args: &RequestArgs,
    spider: &str,
) -> Result<Vec<CrawlRequest>> {
    let limit = settings.crawl.maxdepth_limit;
    let started = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, seed) in args.seed.iter().enumerate() {
        let v = json!({
            "url": seed, "appid": "cli", "crawlid": format!("run-{started}-{i}"),
            "spiderid": spider, "maxdepth": args.maxdepth.unwrap_or(0),
            "render": args.render.as_deref().unwrap_or("never"),
        });
        match CrawlRequest::from_value(v, limit) {
            Ok(r) => out.push(r),
            Err(e) => errors.push(format!("--seed {seed}: {e}")),
        }
    }
    let mut lines: Vec<(String, String)> = args
        .request
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("--request #{}", i + 1), r.clone()))
        .collect();
    if let Some(path) = &args.requests {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        lines.extend(
            text.lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(n, l)| (format!("{}:{}", path.display(), n + 1), l.to_string())),
        );
    }
    for (origin, text) in lines {
        let parsed = serde_json::from_str::<Value>(&text)
            .map_err(|e| format!("not JSON: {e}"))
            .and_then(|mut v| {
                if let Some(obj) = v.as_object_mut() {
                    obj.entry("spiderid").or_insert_with(|| spider.into());
                }
                CrawlRequest::from_value(v, limit).map_err(|e| e.to_string())
            });
        match parsed {
            Ok(r) => out.push(r),
            Err(e) => errors.push(format!("{origin}: {e}")),
        }
    }
    if !errors.is_empty() {
        bail!(
            "rejected {} request(s), nothing was crawled:\n  {}",
            errors.len(),
            errors.join("\n  ")
        );
    }
    Ok(out)
}
