//! Security boundaries (issue 14): the address policy cannot be gone
//! around, and nothing leaks between hosts or apps.

use crate::harness::eventually;
use crate::harness::{read_results, Scratch, Site, SiteSpec};
use crate::kafka::{crawl_request, Bus};
use anyhow::{ensure, Result};
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

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

/// A pipeline that sets `appid`, `crawlid`, `url` and `status_code` cannot
/// reroute or rewrite a result: the host's values win, its own new field
/// is kept, and the attempt is logged once for the plugin.
#[tokio::test(flavor = "multi_thread")]
async fn plugins_cannot_overwrite_reserved_result_fields() -> Result<()> {
    let site = Site::start(SiteSpec::default()).await?;
    let s = Scratch::new(&[("link", "link"), ("reroute", "reroute")], "")?;
    let run = s
        .run(&[
            "--spider",
            "link",
            "--seed",
            &site.seed_url(),
            "--maxdepth",
            "1",
            "--pipeline",
            "reroute",
        ])
        .await?
        .ok()?;
    assert!(run.results.len() > 1);
    for r in &run.results {
        assert_eq!(r["appid"], "cli", "{r}");
        assert_ne!(r["crawlid"], "stolen", "{r}");
        assert!(r["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://127.")));
        assert_ne!(r["status_code"], 599, "{r}");
        assert_eq!(r["rerouted"], true, "the pipeline ran: {r}");
    }
    let warnings = run.stderr.matches("only the host writes").count();
    assert_eq!(warnings, 1, "{}", run.stderr);
    Ok(())
}

/// Credentials a crawl sends (its `cookie`, an `Authorization` header) are
/// sent, and left out of the published `request_headers` unless the app
/// is in `crawl.publish_credentials`: results go to a shared firehose.
#[tokio::test(flavor = "multi_thread")]
async fn credentials_are_sent_but_published_only_for_apps_that_opt_in() -> Result<()> {
    let site = Site::start(SiteSpec::default()).await?;
    let request = serde_json::json!({
        "url": site.seed_url(), "appid": "secapp", "crawlid": "creds",
        "cookie": "sid=secret", "headers": {"Authorization": "Bearer s3cret"},
    })
    .to_string();
    for (config, published) in [
        ("", false),
        ("[crawl]\npublish_credentials = [\"secapp\"]\n", true),
    ] {
        let s = Scratch::new(&[("link", "link")], config)?;
        let run = s
            .run(&["--spider", "link", "--request", &request])
            .await?
            .ok()?;
        let sent = &run.results[0]["request_headers"];
        assert_eq!(sent.get("Cookie").is_some(), published, "{sent}");
        assert_eq!(sent.get("Authorization").is_some(), published, "{sent}");
        assert!(sent.get("User-Agent").is_some(), "{sent}");
    }
    let seed_hits: Vec<_> = site
        .hits()
        .into_iter()
        .filter(|h| h.path == "/p/0.html")
        .collect();
    assert_eq!(seed_hits.len(), 2);
    for h in seed_hits {
        assert!(h
            .headers
            .iter()
            .any(|(k, v)| k == "cookie" && v == "sid=secret"));
        assert!(h
            .headers
            .iter()
            .any(|(k, v)| k == "authorization" && v == "Bearer s3cret"));
    }
    Ok(())
}

/// The crawl's cookie and credential headers go to the seed's registered
/// domain only: not to a child on another host, not across a redirect to
/// one; a child on the seed's own host still gets them.
#[tokio::test(flavor = "multi_thread")]
async fn credentials_stay_on_the_seeds_registered_domain() -> Result<()> {
    let site = Site::start(SiteSpec::default()).await?;
    let (home, away) = (site.addrs()[0], site.addrs()[1]);
    let other = format!("http://{away}/p/1.html");
    let request = |url: &str, crawlid: &str| {
        serde_json::json!({
            "url": url, "appid": "secapp", "crawlid": crawlid, "maxdepth": 1,
            "cookie": "sid=secret", "headers": {"Authorization": "Bearer s3cret"},
        })
        .to_string()
    };
    let s = Scratch::new(&[("link", "link")], "")?;
    let redirect = format!("http://{home}/hostile/redirect?to={other}");
    s.run(&[
        "--spider",
        "link",
        "--request",
        &request(&site.seed_url(), "links"),
        "--request",
        &request(&redirect, "redirect"),
    ])
    .await?
    .ok()?;
    let hits = site.hits();
    let credentialed = |h: &spinneret_testsite::Hit| {
        h.headers
            .iter()
            .any(|(k, _)| k == "cookie" || k == "authorization")
    };
    let away_pages: Vec<_> = hits
        .iter()
        .filter(|h| h.host == 1 && h.path.starts_with("/p/"))
        .collect();
    assert!(!away_pages.is_empty(), "the crawl reached the other host");
    assert!(
        away_pages.iter().all(|h| !credentialed(h)),
        "credentials reached 127.0.0.2: {:?}",
        away_pages
            .iter()
            .filter(|h| credentialed(h))
            .map(|h| &h.path)
            .collect::<Vec<_>>()
    );
    assert!(
        hits.iter().any(|h| h.host == 1 && h.path == "/p/1.html"),
        "the redirect hop was fetched"
    );
    let home_children: Vec<_> = hits
        .iter()
        .filter(|h| h.host == 0 && h.path.starts_with("/p/") && h.path != "/p/0.html")
        .collect();
    assert!(!home_children.is_empty());
    assert!(
        home_children.iter().all(|h| credentialed(h)),
        "a same-site child lost them"
    );
    Ok(())
}

/// Made-up spider names cannot multiply a domain's rate (each name would
/// get a throttle bucket of its own): a request for a spider nobody has
/// loaded is answered with an error result and never fetched.
#[tokio::test(flavor = "multi_thread")]
async fn made_up_spiderids_do_not_multiply_a_domains_rate() -> Result<()> {
    let site = Site::start(SiteSpec::default()).await?;
    let s = Scratch::new(
        &[("link", "link")],
        "[throttle]\nhits = 1\nwindow = 60\nmoderated = false\n[crawl]\nobey_robots = false\n",
    )?;
    let mut args = vec!["--spider".to_string(), "link".to_string()];
    for i in 0..20 {
        args.push("--request".into());
        args.push(
            serde_json::json!({"url": site.url(0), "appid": "app", "crawlid": format!("c{i}"),
                               "spiderid": format!("made-up-{i}")})
            .to_string(),
        );
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = s.run(&args).await?.ok()?;
    assert_eq!(run.results.len(), 20, "each request is answered");
    assert!(run.results.iter().all(|r| r["error"]
        .as_str()
        .is_some_and(|e| e.contains("no spider named"))));
    let fetches = site.hits().len();
    assert!(
        fetches <= 1,
        "the site saw {fetches} fetches in its one-a-minute window"
    );
    Ok(())
}

/// A password in a crawled URL never reaches the log.
#[tokio::test(flavor = "multi_thread")]
async fn passwords_in_urls_are_not_logged() -> Result<()> {
    let site = Site::start(SiteSpec::default()).await?;
    let s = Scratch::new(&[("link", "link")], "")?;
    let seed = format!("http://reader:hunter2@{}/p/0.html", site.addrs()[0]);
    let run = s.run(&["--spider", "link", "--seed", &seed]).await?.ok()?;
    assert_eq!(run.results.len(), 1);
    assert!(run.stderr.contains("reader:***@"), "{}", run.stderr);
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
    Ok(())
}

/// A crawl's state is keyed by a 64-bit hash of (appid, crawlid), stored
/// with the pair it belongs to. Finding a real collision takes 2^32
/// hashes, so the test makes one: it rewrites the stored pair of crawl
/// `victim`'s key to another's, as if (otherapp, rival) had hashed alike
/// and come first. From then on `victim` may touch none of that state: its
/// seed is dead-lettered (Kafka) or refused (`submit`), its stop stops
/// nothing, its info shows nothing, and the holder's spec and queue stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawls_whose_keys_collide_never_share_state() -> Result<()> {
    let mut bus = Bus::start("", "", 1).await?;
    bus.role("kafka-monitor", &[])?;
    let errors = bus.broker.collect("demo.errors")?;
    bus.produce(&[crawl_request("http://a.example/", "victim", 0)])
        .await?;
    let mut con = bus.redis.connection()?;
    let spec_key = eventually(Duration::from_secs(30), "the crawl to be stored", || {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("{spinneret}:spec:*")
            .query(&mut con)
            .ok()?;
        keys.into_iter().next()
    })
    .await?;
    let cref = spec_key.rsplit(':').next().unwrap_or_default().to_string();
    let counters = format!("{{spinneret}}:cc:{cref}");
    let held_spec: String = redis::cmd("GET").arg(&spec_key).query(&mut con)?;
    let _: () = redis::cmd("HSET")
        .arg(&counters)
        .arg("k")
        .arg("8:otherapprival")
        .query(&mut con)?;

    let second = crawl_request("http://b.example/", "victim", 0);
    bus.produce(&[
        second.clone(),
        crawl_request("http://good.example/", "good", 0),
    ])
    .await?;
    let letter = errors
        .wait(
            Duration::from_secs(30),
            "the colliding seed's dead letter",
            |v| v.first().cloned(),
        )
        .await?;
    let reason = letter["error"].as_str().unwrap_or_default();
    ensure!(reason.contains("collides with another crawl"), "{letter}");
    ensure!(
        letter["payload"] == second.as_str(),
        "payload not kept: {letter}"
    );
    // The message after it was queued: 2 requests in all, 1 of them the
    // holder's.
    eventually(
        Duration::from_secs(20),
        "the good request to be queued",
        || (bus.redis_int(&["HGET", "{spinneret}:counts", "q"]).ok()? == 2).then_some(()),
    )
    .await?;
    ensure!(bus.redis_int(&["HGET", &counters, "q"])? == 1);
    let spec_now: String = redis::cmd("GET").arg(&spec_key).query(&mut con)?;
    ensure!(spec_now == held_spec, "the holder's spec was overwritten");

    the_victim_reaches_none_of_the_holders_state(&bus, &cref, &counters).await
}

/// `victim`, colliding with the crawl whose counters are `counters`:
/// `submit` refuses it, and neither its stop nor its info reaches the
/// holder's state.
async fn the_victim_reaches_none_of_the_holders_state(
    bus: &Bus,
    cref: &str,
    counters: &str,
) -> Result<()> {
    // Submitted straight to Redis: refused with the reason.
    let out = bus
        .scratch
        .command("submit")
        .args([
            "--request",
            &crawl_request("http://127.0.0.1:9/", "victim", 0),
        ])
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && stderr.contains("collides with another crawl"),
        "submit: {stderr}"
    );
    // Neither a stop nor info reaches the holder's state.
    let stop: Value = serde_json::from_str(
        &bus.cli(&["stop", "--appid", "testapp", "--crawlid", "victim"])
            .await?,
    )?;
    ensure!(
        stop["total_purged"] == 0,
        "stop purged another crawl's queue: {stop}"
    );
    ensure!(bus.redis_int(&["SISMEMBER", "{spinneret}:stopped", cref])? == 0);
    let info: Value = serde_json::from_str(
        &bus.cli(&["info", "--appid", "testapp", "--crawlid", "victim"])
            .await?,
    )?;
    ensure!(
        info["total_pending"] == 0,
        "info shows another crawl's queue: {info}"
    );
    ensure!(bus.redis_int(&["HGET", counters, "q"])? == 1);
    Ok(())
}

/// A wrong Redis password is a configuration error: the worker stops at
/// once with the reason, never retries forever, and never logs the
/// password, in a single URL or a cluster list.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_redis_password_stops_the_worker_and_is_never_logged() -> Result<()> {
    let redis = crate::harness::RedisServer::start().await?;
    let mut c = redis.connection()?;
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("the-right-one")
        .query::<()>(&mut c)?;
    let scratch = Scratch::new(&[("link", "link")], "")?;
    for url in [
        format!("redis://:s3cret-wrong@127.0.0.1:{}/", redis.port),
        format!(
            "redis://:s3cret-wrong@127.0.0.1:{},127.0.0.1:{}",
            redis.port, redis.port
        ),
    ] {
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            scratch
                .command("run")
                .args(["--serve", "--spider", "link", "--redis", &url])
                .output(),
        )
        .await??;
        let log = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success(), "{url}: {log}");
        ensure!(log.contains("redis.url"), "{url}: {log}");
        ensure!(log.contains("***"), "{url}: {log}");
        ensure!(
            !log.contains("s3cret-wrong"),
            "the password was logged: {log}"
        );
    }
    Ok(())
}
