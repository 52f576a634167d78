//! Extraction: CSS selectors the host answers (`response.select`, WIT
//! 0.1.1), used by the `headings` spider in Rust, Python and JavaScript
//! through each SDK's parsel-like `css` (`::text`, `::attr()`).

use crate::harness::{Scratch, Site, SiteSpec};
use anyhow::Result;

/// `spider` crawls the site; every page's result carries the title and
/// the `h1` the spider picked with selectors ("Page N", as the site
/// writes them), and the crawl reaches every page as the link spider does.
async fn picks_titles_and_headings(spider: &str) -> Result<()> {
    let site = Site::start(SiteSpec {
        pages: 20,
        hosts: 1,
        seed: 51,
    })
    .await?;
    let s = Scratch::new(&[(spider, spider)], "")?;
    let run = s.crawl(spider, &site, 10, &[]).await?.ok()?;
    let mut pages = 0;
    for r in &run.results {
        let url = r["url"].as_str().unwrap_or_default();
        let Some(n) = url
            .rsplit_once("/p/")
            .and_then(|(_, p)| p.strip_suffix(".html"))
        else {
            continue;
        };
        let want = format!("Page {n}");
        assert_eq!(r["title"], want.as_str(), "{spider}: {r}");
        assert_eq!(r["headings"], serde_json::json!([want]), "{spider}: {r}");
        assert!(r.get("description").is_none(), "{spider}: {r}");
        pages += 1;
    }
    let expected = site
        .expected(0, None)
        .iter()
        .filter(|u| u.contains("/p/"))
        .count();
    assert_eq!(pages, expected, "{spider}: pages with their headings");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rust_spider_picks_fields_with_css_selectors() -> Result<()> {
    picks_titles_and_headings("headings").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_spider_picks_fields_with_css_selectors() -> Result<()> {
    picks_titles_and_headings("py-headings").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_javascript_spider_picks_fields_with_css_selectors() -> Result<()> {
    picks_titles_and_headings("js-headings").await
}
