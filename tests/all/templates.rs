//! `just new-spider`: every language's template builds and crawls, in a
//! copy of the repository's guest sources (the real tree is left alone).

use crate::harness::{repo, tools, Scratch, Site, SiteSpec};
use anyhow::{ensure, Result};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;

/// Copy `from` into `to`, without build outputs.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let path = entry.path();
        if matches!(
            name.to_str(),
            Some("target" | ".build" | "__pycache__" | "node_modules")
        ) || path.extension().is_some_and(|e| e == "wasm")
        {
            continue;
        }
        if entry.file_type()?.is_dir() {
            copy_tree(&path, &to.join(&name))?;
        } else {
            std::fs::copy(&path, to.join(&name))?;
        }
    }
    Ok(())
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn new_spider_templates_build_and_crawl_in_every_language() -> Result<()> {
    let copy = tempfile::tempdir()?;
    for dir in ["scripts", "spiders", "wit", "plugins/src"] {
        copy_tree(&repo().join(dir), &copy.path().join(dir))?;
    }
    let new_spider = |args: &[&str]| {
        std::process::Command::new(copy.path().join("scripts/new-spider"))
            .args(args)
            .output()
    };
    for lang in ["rust", "python", "js"] {
        let out = new_spider(&[&format!("t-{lang}"), "--lang", lang])?;
        ensure!(
            out.status.success(),
            "new-spider --lang {lang}: {}",
            said(&out)
        );
    }
    // Refusals name the problem and create nothing.
    for (args, says) in [
        (&["t-rust", "--lang", "js"][..], "already exists"),
        (&["Bad_Name"][..], "not a valid name"),
        (&["t-go", "--lang", "go"][..], "must be rust, python or js"),
    ] {
        let out = new_spider(args)?;
        ensure!(!out.status.success(), "{args:?} should be refused");
        ensure!(said(&out).contains(says), "{args:?}: {}", said(&out));
    }
    ensure!(!copy.path().join("spiders/t-go").exists());

    // Build only the three new spiders. The Rust one gets its own target
    // directory (kept between runs in the tools folder), not the one the
    // running `cargo test` holds.
    let out = std::process::Command::new(copy.path().join("scripts/guests"))
        .args(["t-rust", "t-python", "t-js"])
        .env("CARGO_TARGET_DIR", tools().join("template-target"))
        .output()?;
    ensure!(out.status.success(), "guests: {}", said(&out));

    let site = Site::start(SiteSpec::default()).await?;
    let expected = site.expected(0, Some(1));
    for lang in ["rust", "python", "js"] {
        let wasm = copy.path().join(format!("plugins/t-{lang}.wasm"));
        let s = Scratch::new(&[], "")?;
        let run = s
            .crawl(wasm.to_str().unwrap_or_default(), &site, 1, &[])
            .await?;
        let got: BTreeSet<String> = run.urls().into_iter().collect();
        assert_eq!(got, expected, "t-{lang}: the crawl's pages");
        let seed = run
            .results
            .iter()
            .find(|r| r["url"] == site.seed_url().as_str())
            .expect("the seed's result");
        assert_eq!(seed["title"], "Page 0", "t-{lang}: the seed's title");
        assert!(
            run.results.iter().all(|r| r.get("error").is_none()),
            "t-{lang}: a page failed"
        );
    }
    Ok(())
}
