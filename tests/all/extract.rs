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

/// A crawl asking for `text`, `metadata` and `jsonld` (main content only,
/// no `html`) gets them on every article, without the body: the head's
/// metadata with the canonical URL resolved, the page's JSON-LD, and the
/// article's text without the site's header, navigation, footer, styles
/// and scripts.
#[tokio::test(flavor = "multi_thread")]
async fn formats_give_text_metadata_and_json_ld_instead_of_the_body() -> Result<()> {
    use spinneret_testsite::articles;
    let site = Site::start(SiteSpec {
        pages: 1,
        hosts: 1,
        seed: 52,
    })
    .await?;
    let s = Scratch::new(&[("link", "link")], "")?;
    let request = serde_json::json!({
        "url": site.article_url("index.html"), "appid": "test", "crawlid": "formats",
        "maxdepth": 1, "formats": ["text", "metadata", "jsonld"], "main_content": true,
    });
    let run = crawl(&s, &request).await?;
    let mut seen = 0;
    for r in &run.results {
        assert!(r.get("body").is_none(), "no html asked: {r}");
        let url = r["url"].as_str().unwrap_or_default();
        let Some(n) = article_number(url) else {
            continue;
        };
        let m = &r["metadata"];
        assert_eq!(m["title"], format!("Article {n} & more"), "{r}");
        assert_eq!(m["description"], format!("What article {n} says."));
        assert_eq!(m["canonical"], site.article_url(&format!("{n}.html")));
        assert_eq!(m["language"], "en-GB");
        assert_eq!(
            m["og"],
            serde_json::json!({"title": format!("Article {n}"), "type": "article"})
        );
        assert_eq!(r["jsonld"][0]["position"], n, "{r}");
        let text = r["text"].as_str().unwrap_or_default();
        assert!(
            text.starts_with(&format!("Article {n}\n{} Next.", articles::paragraph(n))),
            "{text}"
        );
        if n % 4 == 0 {
            assert!(text.contains("Nested"), "the list's text: {text}");
        }
        for chrome in ["All articles", "Site menu", "Footer", "color", "scripted"] {
            assert!(!text.contains(chrome), "{chrome} in {text}");
        }
        seen += 1;
    }
    assert_eq!(
        seen,
        articles::ARTICLES,
        "every article: {:?}",
        run.results.len()
    );
    Ok(())
}

/// Formats are checked when the crawl is asked for: unknown or repeated
/// ones, none, and `main_content` without a format it applies to, are
/// refused with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn bad_formats_are_refused_with_the_reason() -> Result<()> {
    let s = Scratch::new(&[("link", "link")], "")?;
    let cases = [
        (serde_json::json!(["pdf"]), false, "unknown variant `pdf`"),
        (
            serde_json::json!(["text", "text"]),
            false,
            "names `text` twice",
        ),
        (serde_json::json!([]), false, "`formats` is empty"),
        (
            serde_json::json!(["html"]),
            true,
            "`main_content` applies to the `text` and `markdown` formats",
        ),
    ];
    for (formats, main_content, reason) in cases {
        let request = serde_json::json!({
            "url": "http://127.0.0.1:9/", "appid": "test", "crawlid": "bad",
            "formats": formats, "main_content": main_content,
        });
        let run = s
            .run(&["--spider", "link", "--request", &request.to_string()])
            .await?;
        assert_ne!(run.code, Some(0), "{formats}");
        assert!(run.stderr.contains(reason), "{formats}: {}", run.stderr);
        assert!(run.results.is_empty());
    }
    Ok(())
}

/// The `markdown` format of every article (main content only) equals its
/// golden file in `tests/fixtures/markdown/` (`SPINNERET_BLESS=1` writes
/// them): headings, emphasis, links made absolute, images, nested lists,
/// tables, quotes, code; no navigation, header or footer.
#[tokio::test(flavor = "multi_thread")]
async fn markdown_matches_the_golden_files() -> Result<()> {
    use spinneret_testsite::articles;
    let bless = std::env::var_os("SPINNERET_BLESS").is_some();
    let site = Site::start(SiteSpec {
        pages: 1,
        hosts: 1,
        seed: 53,
    })
    .await?;
    let s = Scratch::new(&[("link", "link")], "")?;
    let request = serde_json::json!({
        "url": site.article_url("index.html"), "appid": "test", "crawlid": "markdown",
        "maxdepth": 1, "formats": ["markdown"], "main_content": true,
    });
    let run = crawl(&s, &request).await?;
    // The site's address varies from run to run: the files say ORIGIN.
    let origin = site.article_url("");
    let origin = origin.trim_end_matches("/articles/");
    let dir = crate::harness::repo().join("tests/fixtures/markdown");
    let mut seen = 0;
    for r in &run.results {
        let url = r["url"].as_str().unwrap_or_default();
        let Some(n) = article_number(url) else {
            continue;
        };
        let markdown = r["markdown"]
            .as_str()
            .unwrap_or_default()
            .replace(origin, "ORIGIN");
        let file = dir.join(format!("article-{n}.md"));
        if bless {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(&file, format!("{markdown}\n"))?;
        }
        let want = std::fs::read_to_string(&file)?;
        assert_eq!(format!("{markdown}\n"), want, "{}", file.display());
        for chrome in ["All articles", "Site menu", "Footer"] {
            assert!(!markdown.contains(chrome), "{chrome} in {markdown}");
        }
        seen += 1;
    }
    assert_eq!(seen, articles::ARTICLES);
    Ok(())
}

/// Hostile pages (a million elements; 100,000 nested) asked for `text`
/// and `markdown` hit the parse bounds: each result says so in `error`,
/// still carries what the streaming scan read (`metadata`), and the crawl
/// finishes.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_pages_hit_the_format_bounds_and_the_crawl_goes_on() -> Result<()> {
    let site = Site::start(SiteSpec {
        pages: 1,
        hosts: 1,
        seed: 54,
    })
    .await?;
    let s = Scratch::new(&[("link", "link")], "")?;
    for (page, bound) in [
        ("nodes", "more than 200000 elements"),
        ("deep", "deeper than 512"),
    ] {
        let request = serde_json::json!({
            "url": site.hostile_url(page), "appid": "test", "crawlid": page,
            "formats": ["text", "markdown", "metadata"],
        });
        let run = crawl(&s, &request).await?;
        let [r] = run.results.as_slice() else {
            anyhow::bail!("{page}: one result, not {:?}", run.results.len());
        };
        let error = r["error"].as_str().unwrap_or_default();
        assert!(error.contains(bound), "{page}: {error}");
        assert!(
            r.get("text").is_none() && r.get("markdown").is_none(),
            "{page}"
        );
        assert!(r["metadata"].is_object(), "{page}: {r}");
    }
    Ok(())
}

/// Hostile pages asked for by a spider's selectors (the `headings`
/// spider in each language): a million elements and 100,000 nested fail
/// that page with the bound in `error`; a 50 MB attribute comes back cut
/// to 64 KiB. The crawl goes on to the next page each time.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_pages_hit_the_selector_bounds_and_the_crawl_goes_on() -> Result<()> {
    let site = Site::start(SiteSpec {
        pages: 1,
        hosts: 1,
        seed: 55,
    })
    .await?;
    for spider in ["headings", "py-headings", "js-headings"] {
        let s = Scratch::new(&[(spider, spider)], "[crawl]\nmax_body_bytes = 67108864\n")?;
        let mut args = vec!["--spider", spider];
        let requests: Vec<String> = ["nodes", "deep", "attribute"]
            .iter()
            .map(|page| {
                serde_json::json!({"url": site.hostile_url(page), "appid": "test", "crawlid": page})
                    .to_string()
            })
            .collect();
        for r in &requests {
            args.extend(["--request", r]);
        }
        let run = s.run(&args).await?.ok()?;
        assert_eq!(run.results.len(), 3, "{spider}: a result per page");
        for r in &run.results {
            let (crawlid, error) = (r["crawlid"].as_str(), r["error"].as_str());
            match crawlid {
                Some("nodes") => assert!(
                    error.is_some_and(|e| e.contains("more than 200000 elements")),
                    "{spider}: {error:?}"
                ),
                Some("deep") => assert!(
                    error.is_some_and(|e| e.contains("deeper than 512")),
                    "{spider}: {error:?}"
                ),
                _ => {
                    assert_eq!(error, None, "{spider}");
                    let description = r["description"].as_str().unwrap_or_default();
                    assert_eq!(description.len(), 64 * 1024, "{spider}: cut at 64 KiB");
                    assert_eq!(r["title"], "Big", "{spider}");
                }
            }
        }
    }
    Ok(())
}

/// `spinneret shell`: a page fetched once answers parsel's queries and
/// `:commands` (a windows-1252, malformed product page of the test
/// site's shop), and saved with `--save`, feeds `spinneret parse`, whose
/// spider sends the product's record from it.
#[tokio::test(flavor = "multi_thread")]
async fn the_shell_answers_selectors_and_saves_the_page_for_parse() -> Result<()> {
    let site = Site::start(SiteSpec {
        pages: 1,
        hosts: 1,
        seed: 56,
    })
    .await?;
    let s = Scratch::new(&[("catalogue", "catalogue")], "")?;
    let n = 19;
    let p = spinneret_testsite::catalogue::product(n);
    let saved = s.path("item.json");
    let out = s
        .command("shell")
        .arg(site.catalogue_url(&format!("item-{n}.html")))
        .args([
            "--query",
            "h1::text",
            "--query",
            "article.product::attr(data-sku)",
        ])
        .args(["--query", ":elements .sku span", "--query", ":metadata"])
        .arg("--save")
        .arg(&saved)
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("charset=windows-1252"), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], p.name, "decoded and unescaped");
    assert_eq!(lines[1], p.sku);
    let span: serde_json::Value = serde_json::from_str(lines[2])?;
    assert_eq!(span["html"], format!("<span>{}</span>", p.sku));
    let metadata: serde_json::Value = serde_json::from_str(lines[3])?;
    assert_eq!(metadata["title"], p.name.as_str());
    let parsed = s
        .command("parse")
        .args(["--spider", "catalogue", "--response"])
        .arg(&saved)
        .output()
        .await?;
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let parsed: serde_json::Value = serde_json::from_slice(&parsed.stdout)?;
    assert_eq!(parsed["records"][0]["name"], p.name.as_str(), "{parsed}");
    assert_eq!(parsed["records"][0]["sku"], p.sku.as_str(), "{parsed}");
    Ok(())
}

/// The link spider's embedded crawl of one request; it must exit 0.
async fn crawl(s: &Scratch, request: &serde_json::Value) -> Result<crate::harness::Run> {
    s.run(&["--spider", "link", "--request", &request.to_string()])
        .await?
        .ok()
}

/// `n` of an article's URL (`/articles/<n>.html`).
fn article_number(url: &str) -> Option<usize> {
    url.rsplit_once("/articles/")
        .and_then(|(_, p)| p.strip_suffix(".html"))
        .and_then(|n| n.parse().ok())
}
