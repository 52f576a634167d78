//! The CLI's plugin side: the registry at start (background loads), waiting
//! for the plugins a role needs by name, the directory watcher, the worker
//! heartbeat's plugin list, and the `plugins` and `parse` commands.

use super::{ParseArgs, PluginsArgs};
use crate::config::Settings;
use crate::fetch::Fetched;
use crate::plugins::{Kind, Output, Page, Registry, Runtime, Watcher, FIRST_LOAD_WAIT};
use crate::request::CrawlRequest;
use crate::scheduler::WorkerCard;
use crate::telemetry::Stats;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The registry, with every plugin in the directory queued for the
/// background compiler.
pub(super) fn start_registry(settings: &Settings, stats: Arc<Stats>) -> Result<Arc<Registry>> {
    let runtime =
        Runtime::new(&settings.plugins, stats).context("starting the WebAssembly runtime")?;
    let registry = Registry::new(runtime);
    registry.load_dir_in_background(&settings.plugins.dir);
    Ok(registry)
}

/// Wait for a plugin this run needs by name, and check its kind.
pub(super) fn require(
    registry: &Registry,
    settings: &Settings,
    name: &str,
    kind: Kind,
) -> Result<()> {
    if !registry.load_queued_now(name) && registry.pending(name) {
        tracing::info!(plugin = %name, "waiting for the plugin to compile (a first compile takes seconds; then it is cached)");
    }
    match registry.wait_for(name, FIRST_LOAD_WAIT) {
        Some(p) => Ok(p.expect_kind(kind)?),
        None => {
            if let Some(e) = registry.load_error(name) {
                bail!("{kind} `{name}` did not load: {e}");
            }
            if kind != Kind::Spider {
                bail!(
                    "no {kind} plugin `{name}` in {}",
                    settings.plugins.dir.display()
                );
            }
            let known = spider_names(registry);
            bail!(
                "no spider `{name}` in {} (spiders there: {}); build them with `just guests` or pass a path to a .wasm file",
                settings.plugins.dir.display(),
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )
        }
    }
}

/// The middlewares and pipelines the settings name, loaded and of the right kind.
pub(super) fn require_chain(registry: &Registry, settings: &Settings) -> Result<()> {
    for (names, kind) in [
        (&settings.plugins.middlewares, Kind::Middleware),
        (&settings.plugins.pipelines, Kind::Pipeline),
    ] {
        for name in names {
            require(registry, settings, name, kind)?;
        }
    }
    Ok(())
}

/// The plugins directory watcher (hot swap), when `plugins.watch` is on.
pub(super) fn watch(settings: &Settings, registry: &Arc<Registry>) -> Result<Option<Watcher>> {
    Ok(if settings.plugins.watch {
        Some(Watcher::start(
            registry.clone(),
            settings.plugins.dir.clone(),
            Duration::from_millis(settings.plugins.watch_interval_ms),
        )?)
    } else {
        None
    })
}

/// Resolve `--spider`: a path loads that file, a name waits for the
/// plugins directory's version.
pub(super) fn spider_name(
    registry: &Registry,
    settings: &Settings,
    spider: &str,
) -> Result<String> {
    let path = Path::new(spider);
    let name = if path.is_file() {
        let (p, _) = registry.load_file(path)?;
        p.name.to_string()
    } else {
        spider.trim_end_matches(".wasm").to_string()
    };
    require(registry, settings, &name, Kind::Spider)?;
    Ok(name)
}

/// The loaded spiders' names.
pub(super) fn spider_names(registry: &Registry) -> Vec<String> {
    registry
        .list()
        .iter()
        .filter(|p| p.kind == Kind::Spider)
        .map(|p| p.name.to_string())
        .collect()
}

/// Keep the spiders and plugins in this worker's heartbeat current: checked
/// every 200 ms, written with the next heartbeat (each second), so loads
/// and hot swaps show in stats and on the status page.
pub(super) fn publish_plugins(card: &Arc<WorkerCard>, registry: &Arc<Registry>) {
    let (card, registry) = (Arc::downgrade(card), Arc::downgrade(registry));
    tokio::spawn(async move {
        let mut seen = None;
        while let (Some(card), Some(registry)) = (card.upgrade(), registry.upgrade()) {
            let generation = registry.generation();
            if seen != Some(generation) {
                seen = Some(generation);
                card.set_spiders(spider_names(&registry));
                card.set_plugins(
                    registry
                        .list()
                        .iter()
                        .map(|p| json!({"name": *p.name, "kind": p.kind.world(), "version": p.version, "hash": p.short_hash()}))
                        .collect(),
                );
            }
            drop((card, registry));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

/// `spinneret plugins`: load every plugin in the directory now and list them.
pub(super) fn plugins(settings: Settings, args: PluginsArgs) -> Result<i32> {
    let runtime = Runtime::new(&settings.plugins, Arc::new(Stats::default()))?;
    let registry = Registry::new(runtime);
    let loaded = registry.load_dir(&settings.plugins.dir);
    let mut out = std::io::stdout().lock();
    if !args.json {
        writeln!(
            out,
            "{:<20} {:<22} {:<8} {:<14} {:<18} STATUS",
            "NAME", "KIND", "WIT", "HASH", "LOAD"
        )?;
    }
    let mut failed = 0;
    for (path, r) in loaded {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        match r {
            Ok(p) if args.json => writeln!(
                out,
                "{}",
                json!({"name": *p.name, "kind": p.kind.world(), "wit": p.version, "hash": p.hash, "file": path.display().to_string(),
                       "load_ms": p.compile_time.as_secs_f64() * 1000.0, "from": p.origin.as_str()})
            )?,
            Ok(p) => writeln!(
                out,
                "{:<20} {:<22} {:<8} {:<14} {:<18} ok",
                p.name,
                p.kind.world(),
                p.version,
                p.short_hash(),
                format!("{} ms {}", p.compile_time.as_millis(), p.origin.as_str())
            )?,
            Err(e) => {
                failed += 1;
                if args.json {
                    writeln!(
                        out,
                        "{}",
                        json!({"name": name, "file": path.display().to_string(), "error": e.to_string()})
                    )?;
                } else {
                    writeln!(
                        out,
                        "{name:<20} {:<22} {:<8} {:<14} {:<18} rejected: {e}",
                        "-", "-", "-", "-"
                    )?;
                }
            }
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

/// `spinneret parse`: one recorded response through a spider, for golden
/// tests and for debugging a spider without crawling.
pub(super) async fn parse(settings: Settings, args: ParseArgs) -> Result<i32> {
    let registry = start_registry(&settings, Arc::new(Stats::default()))?;
    let name = spider_name(&registry, &settings, &args.spider)?;
    let spider = registry.get(&name).context("spider vanished")?;
    let text = std::fs::read_to_string(&args.response)
        .with_context(|| format!("cannot read {}", args.response.display()))?;
    let rec: Value = serde_json::from_str(&text).context("the recorded response is not JSON")?;
    let page = recorded_page(&rec, &name, &settings.crawl)?;
    let outputs = tokio::task::spawn_blocking(move || spider.parse(page)).await??;
    let (mut items, mut requests, mut records) = (Vec::new(), Vec::new(), Vec::new());
    for o in outputs {
        match o {
            Output::Item(i) => items.push(json!({
                "links": i.links.iter().map(|(u, t)| json!({"url": u, "text": t})).collect::<Vec<_>>(),
                "fields": i.fields.into_iter().collect::<serde_json::Map<_, _>>(),
            })),
            Output::Request(r) => requests.push(json!({
                "url": r.url, "priority": r.priority, "spiderid": r.spiderid, "method": r.method,
                "meta": r.meta.into_iter().map(|(k, v)| (k, Value::String(v))).collect::<serde_json::Map<_, _>>(),
                "dont_filter": r.dont_filter,
            })),
            Output::Record(fields) => {
                records.push(fields.into_iter().collect::<serde_json::Map<_, _>>())
            }
        }
    }
    let out = json!({"items": items, "requests": requests, "records": records});
    let out = serde_json::to_string_pretty(&out)?;
    writeln!(std::io::stdout().lock(), "{out}")?;
    Ok(0)
}

/// A [`Page`] from a recorded response: `{url, status, headers, body,
/// depth, request: {crawl request fields}, meta: {name: json}}`.
fn recorded_page(rec: &Value, spider: &str, crawl: &crate::config::Crawl) -> Result<Page> {
    let (limit, max_links) = (crawl.maxdepth_limit, crawl.max_links_per_page);
    let url = rec["url"]
        .as_str()
        .context("recorded response needs `url`")?;
    let mut request = rec.get("request").cloned().unwrap_or_else(|| json!({}));
    let obj = request
        .as_object_mut()
        .context("`request` must be an object")?;
    obj.entry("url").or_insert_with(|| url.into());
    obj.entry("appid").or_insert_with(|| "golden".into());
    obj.entry("crawlid").or_insert_with(|| "golden".into());
    obj.entry("spiderid").or_insert_with(|| spider.into());
    let mut job = CrawlRequest::from_value(request, limit)?.into_seed();
    job.url = url.to_string();
    // A record without a depth is a seed (0); without headers or body, empty.
    job.depth = rec["depth"].as_u64().unwrap_or(0) as u32;
    if let Some(meta) = rec.get("meta").and_then(Value::as_object) {
        job.meta = meta
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
    }
    let headers = rec
        .get("headers")
        .and_then(Value::as_object)
        .map(|h| {
            h.iter()
                // A header value that is not a string in the fixture reads as empty.
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let fetched = Fetched::recorded(
        rec["status"].as_u64().unwrap_or(200) as u16,
        rec["response_url"].as_str().unwrap_or(url).to_string(),
        headers,
        rec["body"]
            .as_str()
            .unwrap_or_default()
            .as_bytes()
            .to_vec()
            .into(),
    );
    Ok(Page::new(Arc::new(job), Arc::new(fetched), max_links))
}
