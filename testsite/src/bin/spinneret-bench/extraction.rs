//! Section: extraction's cost per page on the site's pages, in process:
//! CSS selectors (one call and ten) native, through a spider's
//! `response.select`, and with a parser bundled in the guest; the
//! `markdown` format; and, on the same pages in the same run, Python's
//! parsel (the selectors Scrapy spiders use) and markdownify.

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use spinneret::extract::{formats, Bounds, Document, Format};
use spinneret::plugins::{Kind, Page, Registry, Runtime};
use spinneret_testsite::Site;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The selectors a spider typically asks of a page (handed to the
/// `select-cost` fixture in its request's meta).
const SELECTORS: [&str; 10] = [
    "title",
    "h1",
    "a",
    "nav a",
    "p",
    "a.l",
    "map area",
    "meta",
    "link",
    "a[href$='.html']",
];

/// Pages measured, and passes over them.
const PAGES: usize = 300;
const ROUNDS: usize = 3;

pub(crate) async fn extraction(site: &Site, repo: &Path, work: &Path) -> Result<Vec<String>> {
    let n = site.spec.pages.min(PAGES);
    let pages: Vec<(String, String)> = (0..n)
        .map(|i| {
            let body = site.graph().render(i, site.addrs());
            (site.url(i), String::from_utf8_lossy(&body).into_owned())
        })
        .collect();
    let kb = pages.iter().map(|(_, p)| p.len()).sum::<usize>() as f64 / n as f64 / 1024.0;
    let mut lines = vec![
        format!("pages:            {n} of the site's ({kb:.1} KB average), {ROUNDS} passes; µs per page"),
        format!("{:<42} {:>10} {:>10}", "", "1 select", "10 selects"),
    ];
    let native = [1, 10].map(|calls| per_page(&pages, |(_, html)| native(html, calls)));
    lines.push(row("native (host, no plugin call)", native));
    let guest = guest_costs(&pages, repo, work).await?;
    lines.push(row("spider's response.select (host parses)", guest[0]));
    lines.push(row("parser bundled in the guest (scraper)", guest[1]));
    let markdown = per_page(&pages, |(url, html)| {
        std::hint::black_box(formats::make(html, url, &[Format::Markdown], false));
    });
    let python = python_costs(&pages, repo, work);
    match &python {
        Ok(p) => {
            lines.push(row("Python parsel (lxml), same gathering", [p[0], p[1]]));
            lines.push(format!(
                "ratios:           response.select {:.2}x / {:.2}x parsel; bundled {:.2}x / {:.2}x response.select",
                guest[0][0] / p[0],
                guest[0][1] / p[1],
                guest[1][0] / guest[0][0],
                guest[1][1] / guest[0][1],
            ));
        }
        Err(e) => lines.push(format!("Python parsel:    skipped ({e:#})")),
    }
    lines.push(format!("markdown format:  {markdown:.0} µs per page"));
    if let Ok(p) = &python {
        lines.push(format!(
            "                  markdownify {:.0} µs per page: {:.2}x ours",
            p[2],
            p[2] / markdown
        ));
    }
    Ok(lines)
}

fn row(name: &str, us: [f64; 2]) -> String {
    format!("{name:<42} {:>10.0} {:>10.0}", us[0], us[1])
}

/// Parse `html` and gather the first `calls` selectors' matches whole.
fn native(html: &str, calls: usize) {
    let bounds = Bounds::default();
    let doc = Document::parse(html, &bounds).expect("the site's pages parse");
    for css in &SELECTORS[..calls] {
        std::hint::black_box(doc.select(css, &bounds).expect("valid selectors"));
    }
}

/// Mean µs per page of `f`, over [`ROUNDS`] passes after a warm-up one.
fn per_page<T>(pages: &[T], mut f: impl FnMut(&T)) -> f64 {
    pages.iter().for_each(&mut f);
    let started = Instant::now();
    for _ in 0..ROUNDS {
        pages.iter().for_each(&mut f);
    }
    started.elapsed().as_secs_f64() * 1e6 / (ROUNDS * pages.len()) as f64
}

/// The `select-cost` fixture's parse per page: [through the host, bundled]
/// x [1 call, 10 calls]. Both ways must find the same elements.
async fn guest_costs(
    pages: &[(String, String)],
    repo: &Path,
    work: &Path,
) -> Result<[[f64; 2]; 2]> {
    let dir = work.join("plugins-select-cost");
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(
        repo.join("tests/fixtures/wasm/select-cost.wasm"),
        dir.join("select-cost.wasm"),
    )
    .context("tests/fixtures/wasm/select-cost.wasm is missing: run `just guests`")?;
    let mut settings = spinneret::config::Settings::default();
    settings.plugins.dir = dir.clone();
    settings.plugins.cache_dir = work.join("cache-select-cost");
    settings.plugins.watch = false;
    let stats = Arc::new(spinneret::telemetry::Stats::default());
    let registry = Registry::new(Runtime::new(&settings.plugins, stats)?);
    registry.load_dir_in_background(&dir);
    let spider = tokio::task::spawn_blocking(move || {
        registry.wait_for("select-cost", Duration::from_secs(300))
    })
    .await?
    .context("the select-cost fixture did not load")?;
    ensure!(spider.kind == Kind::Spider, "select-cost is not a spider");
    let pages: Vec<Vec<Page>> = [(false, 1), (false, 10), (true, 1), (true, 10)]
        .iter()
        .map(|&(bundled, calls)| {
            pages
                .iter()
                .map(|(url, html)| page(url, html, bundled, calls))
                .collect::<Result<_>>()
        })
        .collect::<Result<_>>()?;
    tokio::task::spawn_blocking(move || {
        let matched = |page: &Page| -> Result<u64> {
            let out = spider.parse(page.clone())?;
            out.iter()
                .find_map(|o| match o {
                    spinneret::plugins::Output::Item(i) => i
                        .fields
                        .iter()
                        .find(|(k, _)| k == "matched")
                        .and_then(|(_, v)| v.as_u64()),
                    _ => None,
                })
                .context("select-cost gave no count")
        };
        for (host, bundled) in pages[1].iter().zip(&pages[3]).take(5) {
            ensure!(
                matched(host)? == matched(bundled)?,
                "the host and the bundled parser disagree on {}",
                host.job.url
            );
        }
        let us = |set: &[Page]| {
            per_page(set, |p| {
                std::hint::black_box(spider.parse(p.clone()).expect("select-cost parses"));
            })
        };
        Ok([
            [us(&pages[0]), us(&pages[1])],
            [us(&pages[2]), us(&pages[3])],
        ])
    })
    .await?
}

/// A fetched page for the fixture, asking for `calls` selectors, bundled
/// or not.
fn page(url: &str, html: &str, bundled: bool, calls: usize) -> Result<Page> {
    let request =
        json!({"url": url, "appid": "bench", "crawlid": "extract", "spiderid": "select-cost"});
    let mut job = spinneret::request::CrawlRequest::from_value(request, 10)?.into_seed();
    job.meta = vec![
        ("selectors".into(), json!(SELECTORS[..calls]).to_string()),
        ("bundled".into(), bundled.to_string()),
    ];
    let fetched = spinneret::fetch::Fetched::recorded(
        200,
        url.into(),
        vec![("content-type".into(), "text/html; charset=utf-8".into())],
        html.as_bytes().to_vec().into(),
    );
    Ok(Page::new(Arc::new(job), Arc::new(fetched), 5000))
}

/// parsel (1 and 10 selectors, each match gathered as ours are) and
/// markdownify per page, µs, from the tools' Python.
fn python_costs(pages: &[(String, String)], repo: &Path, work: &Path) -> Result<[f64; 3]> {
    let tools = std::env::var_os("SPINNERET_TOOLS")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/spinneret/tools")))
        .context("no HOME")?;
    let python = tools.join("py/bin/python");
    ensure!(
        python.exists(),
        "{} is missing (scripts/setup --test)",
        python.display()
    );
    let input = work.join("extract-pages.json");
    let htmls: Vec<&str> = pages.iter().map(|(_, h)| h.as_str()).collect();
    std::fs::write(
        &input,
        serde_json::to_vec(&json!({"pages": htmls, "selectors": SELECTORS, "rounds": ROUNDS}))?,
    )?;
    let out = std::process::Command::new(&python)
        .arg(repo.join("bench/extract_peer.py"))
        .arg(&input)
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("failed")
    );
    let v: Value = serde_json::from_slice(&out.stdout)?;
    let f = |k: &str| v[k].as_f64().with_context(|| format!("no {k} in {v}"));
    Ok([f("parsel_1")?, f("parsel_10")?, f("markdownify")?])
}
