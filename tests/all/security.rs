//! Security boundaries (issue 14): the address policy cannot be gone
//! around, and nothing leaks between hosts or apps.

use crate::harness::{read_results, Scratch, Site, SiteSpec};
use anyhow::Result;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Proxies from the environment are not used: a proxy resolves targets
/// itself, out of the address policy's reach. A logging proxy set in all
/// the proxy variables sees no connection, and the crawl goes direct.
#[tokio::test(flavor = "multi_thread")]
async fn proxies_from_the_environment_are_ignored() -> Result<()> {
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let proxy_url = format!("http://{}", proxy.local_addr()?);
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = connections.clone();
    let logger = tokio::spawn(async move {
        while let Ok((sock, _)) = proxy.accept().await {
            seen.fetch_add(1, Ordering::Relaxed);
            drop(sock);
        }
    });
    let site = Site::start(SiteSpec::default()).await?;
    let s = Scratch::new(&[("link", "link")], "")?;
    let out = s.path("out.jsonl");
    let status = s
        .command("run")
        .args([
            "--spider",
            "link",
            "--seed",
            &site.seed_url(),
            "--maxdepth",
            "1",
        ])
        .arg("--output")
        .arg(&out)
        .envs(
            [
                "HTTP_PROXY",
                "HTTPS_PROXY",
                "ALL_PROXY",
                "http_proxy",
                "https_proxy",
                "all_proxy",
            ]
            .map(|v| (v, proxy_url.as_str())),
        )
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .status()
        .await?;
    logger.abort();
    assert!(status.success());
    assert_eq!(connections.load(Ordering::Relaxed), 0, "the proxy was used");
    let got: std::collections::BTreeSet<String> = read_results(&out)?
        .iter()
        .filter_map(|r| r["url"].as_str().map(str::to_string))
        .collect();
    assert_eq!(got, site.expected(0, Some(1)), "the crawl went direct");
    Ok(())
}
