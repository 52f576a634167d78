//! Data records apart from pages (`response.emit`): the `catalogue` spider
//! in Rust, Python and JavaScript on the test site's shop, a price list of
//! fifty rows, records on Kafka's `items` topics, and a spider that sends
//! too many.

use crate::harness::{Scratch, Site, SiteSpec};
use crate::kafka::Bus;
use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use spinneret_testsite::catalogue::{self, product, PER_PAGE, PRODUCTS};
use std::time::Duration;

async fn shop(seed: u64) -> Result<Site> {
    Site::start(SiteSpec {
        pages: 1,
        hosts: 1,
        seed,
    })
    .await
    .map_err(Into::into)
}

/// The record product `n`'s page must give, without the names the host
/// adds (`type`, `appid`, `crawlid`, `spiderid`, `timestamp`).
fn product_record(site: &Site, n: usize) -> Value {
    let p = product(n);
    json!({
        "sku": p.sku, "name": p.name, "price": p.pence as f64 / 100.0,
        "in_stock": p.in_stock, "description": p.description,
        "url": site.catalogue_url(&format!("item-{n}.html")),
    })
}

/// A result line's record fields: the host's names checked and taken
/// off, `url` kept, the price as a float.
fn fields(record: &Value, spider: &str) -> Result<Value> {
    let mut r = record.as_object().context("a record is an object")?.clone();
    ensure!(r.remove("type") == Some(json!("item")), "{record}");
    ensure!(r.remove("spiderid") == Some(json!(spider)), "{record}");
    ensure!(r.remove("appid") == Some(json!("shop")), "{record}");
    ensure!(
        r.remove("crawlid").is_some_and(|c| c.is_string()),
        "{record}"
    );
    ensure!(
        r.remove("timestamp").is_some_and(|t| t.is_string()),
        "{record}"
    );
    ensure!(
        !r.contains_key("body"),
        "a record carries no body: {record}"
    );
    // JSON has one kind of number: JavaScript writes 10.0 as 10.
    if let Some(p) = r.get_mut("price") {
        *p = json!(p.as_f64());
    }
    Ok(Value::Object(r))
}

fn request(url: &str, crawlid: &str, maxdepth: u32) -> String {
    json!({"url": url, "appid": "shop", "crawlid": crawlid, "maxdepth": maxdepth}).to_string()
}

/// `spider` crawls the whole catalogue: its records are exactly the
/// products (entities unescaped, windows-1252 pages decoded, malformed
/// pages read as a browser reads them), one each,
/// and every page (listings and products) has its one result, without
/// the records' fields.
async fn the_catalogue_spider_sends_every_product(spider: &str, seed: u64) -> Result<()> {
    let site = shop(seed).await?;
    let s = Scratch::new(&[(spider, spider)], "")?;
    let seed = site.catalogue_url("index.html");
    let run = s
        .run(&["--spider", spider, "--request", &request(&seed, "all", 3)])
        .await?
        .ok()?;
    let (records, pages): (Vec<&Value>, Vec<&Value>) =
        run.results.iter().partition(|r| r.get("type").is_some());
    let mut got: Vec<Value> = records
        .iter()
        .map(|r| fields(r, spider))
        .collect::<Result<_>>()?;
    got.sort_by_key(|r| r["sku"].as_str().unwrap_or_default().to_string());
    let want: Vec<Value> = (0..PRODUCTS).map(|n| product_record(&site, n)).collect();
    assert_eq!(
        got, want,
        "{spider}: the records are the catalogue's products"
    );
    assert_eq!(
        pages.len(),
        catalogue::pages() + PRODUCTS,
        "{spider}: one result per page"
    );
    for p in &pages {
        assert!(
            p["body"].is_string() && p.get("sku").is_none(),
            "{spider}: {p}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rust_spider_sends_the_catalogue_as_records() -> Result<()> {
    the_catalogue_spider_sends_every_product("catalogue", 61).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_spider_sends_the_catalogue_as_records() -> Result<()> {
    the_catalogue_spider_sends_every_product("py-catalogue", 62).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_javascript_spider_sends_the_catalogue_as_records() -> Result<()> {
    the_catalogue_spider_sends_every_product("js-catalogue", 63).await
}

/// A price list of fifty rows is fifty record lines and one page result,
/// the page's body once.
#[tokio::test(flavor = "multi_thread")]
async fn a_page_of_fifty_records_is_fifty_records_and_one_page_result() -> Result<()> {
    let site = shop(64).await?;
    let s = Scratch::new(&[("catalogue", "catalogue")], "")?;
    let url = site.catalogue_url("prices.html");
    let run = s
        .run(&[
            "--spider",
            "catalogue",
            "--request",
            &request(&url, "prices", 0),
        ])
        .await?
        .ok()?;
    let (records, pages): (Vec<&Value>, Vec<&Value>) =
        run.results.iter().partition(|r| r["type"] == "item");
    assert_eq!(pages.len(), 1, "one page result: {pages:?}");
    assert!(pages[0]["body"]
        .as_str()
        .is_some_and(|b| b.contains("<table")));
    let got: Vec<Value> = records
        .iter()
        .map(|r| fields(r, "catalogue"))
        .collect::<Result<_>>()?;
    let want: Vec<Value> = (0..PER_PAGE)
        .map(|n| {
            let p = product(n);
            json!({"sku": p.sku, "name": p.name, "price": p.pence as f64 / 100.0, "url": url})
        })
        .collect();
    assert_eq!(got, want, "a record per row, in the page's order");
    Ok(())
}

/// Item pipelines see records: one dropping records under a price and
/// marking the rest leaves the price list's records at or over it,
/// marked, and the page's result as it was.
#[tokio::test(flavor = "multi_thread")]
async fn item_pipelines_see_records() -> Result<()> {
    let site = shop(66).await?;
    let plugins = [("catalogue", "catalogue"), ("price-floor", "price-floor")];
    let s = Scratch::new(&plugins, "")?;
    let url = site.catalogue_url("prices.html");
    let run = s
        .run(&[
            "--spider",
            "catalogue",
            "--pipeline",
            "price-floor",
            "--request",
            &request(&url, "floor", 0),
        ])
        .await?
        .ok()?;
    let (records, pages): (Vec<&Value>, Vec<&Value>) =
        run.results.iter().partition(|r| r["type"] == "item");
    let want: Vec<String> = (0..PER_PAGE)
        .map(product)
        .filter(|p| p.pence >= 500)
        .map(|p| p.sku)
        .collect();
    let got: Vec<String> = records
        .iter()
        .filter_map(|r| r["sku"].as_str().map(str::to_string))
        .collect();
    assert_eq!(got, want, "records under the floor dropped");
    assert!(records.iter().all(|r| r["checked"] == true));
    assert!(pages.len() == 1 && pages[0].get("checked").is_none());
    Ok(())
}

/// Through Kafka, records go to `<prefix>.items` and, with
/// `appid_topics`, `<prefix>.items_<appid>`, keyed by crawlid; the page
/// results stay on `crawled_firehose`, one per page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_go_to_the_items_topics() -> Result<()> {
    let site = shop(65).await?;
    let mut bus = Bus::start("appid_topics = true", "", 1).await?;
    for t in ["demo.items", "demo.items_shop"] {
        bus.broker.create_topic(t, 1).await?;
    }
    std::fs::copy(
        crate::harness::wasm("catalogue"),
        bus.scratch.path("plugins/catalogue.wasm"),
    )?;
    bus.role("up", &["--workers", "1"])?;
    let (items, per_app) = (
        bus.broker.collect("demo.items")?,
        bus.broker.collect("demo.items_shop")?,
    );
    let pages = bus.broker.collect("demo.crawled_firehose")?;
    let url = site.catalogue_url("prices.html");
    let mut req: Value = serde_json::from_str(&request(&url, "kafka-prices", 0))?;
    req["spiderid"] = json!("catalogue");
    bus.cli(&["feed", &req.to_string()]).await?;
    for (topic, name) in [(&items, "items"), (&per_app, "items_shop")] {
        let got = topic
            .wait(Duration::from_secs(60), name, |v| {
                (v.len() >= PER_PAGE).then(|| v.to_vec())
            })
            .await
            .with_context(|| bus.logs())?;
        ensure!(got.len() == PER_PAGE, "{name}: {} records", got.len());
        ensure!(got
            .iter()
            .all(|r| r["type"] == "item" && r["url"] == url.as_str()));
    }
    ensure!(
        items
            .all()
            .iter()
            .all(|r| r.key.as_deref() == Some("kafka-prices")),
        "records are keyed by crawlid"
    );
    let page = pages
        .wait(Duration::from_secs(30), "the page result", |v| {
            v.first().cloned()
        })
        .await?;
    ensure!(
        page["url"] == url.as_str() && page.get("type").is_none(),
        "{page}"
    );
    bus.until_done("shop", "kafka-prices").await?;
    ensure!(pages.values().len() == 1, "one page result");
    Ok(())
}
