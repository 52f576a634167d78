//! The Kafka bus and control plane: a real nisshi broker, a real Redis, the
//! real binary in its roles, and real Kafka clients (rdkafka here, Python's
//! confluent-kafka in the end-to-end test).

use crate::harness::{eventually, Broker, Collector, RedisServer, Scratch, Site, SiteSpec};
use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;
use tokio::process::Child;

/// One Redis, one broker, a scratch config naming both, and role processes.
pub(crate) struct Bus {
    pub redis: RedisServer,
    pub broker: Broker,
    pub scratch: Scratch,
    pub roles: Vec<(Child, PathBuf)>,
}

impl Bus {
    /// `kafka_keys` go into the `[kafka]` table; `extra_config` after it.
    pub async fn start(kafka_keys: &str, extra_config: &str, partitions: i32) -> Result<Bus> {
        let redis = RedisServer::start().await?;
        let mut broker = Broker::start().await?;
        for t in [
            "demo.incoming",
            "demo.crawled_firehose",
            "demo.outbound_firehose",
            "demo.errors",
        ] {
            broker.create_topic(t, partitions).await?;
        }
        let config = format!(
            "[kafka]\nbrokers = \"{}\"\npartitions = {partitions}\n{kafka_keys}\n[redis]\nurl = \"{}\"\n{extra_config}",
            broker.brokers(),
            redis.url()
        );
        let scratch = Scratch::new(&[("link", "link"), ("seed-list", "seed-list")], &config)?;
        Ok(Bus {
            redis,
            broker,
            scratch,
            roles: Vec::new(),
        })
    }

    /// Start `spinneret <role> args...`, logging to a file.
    pub fn role(&mut self, role: &str, args: &[&str]) -> Result<()> {
        self.role_env(role, args, &[])
    }

    /// A role with extra environment (`SPINNERET_*` settings).
    pub fn role_env(&mut self, role: &str, args: &[&str], env: &[(&str, &str)]) -> Result<()> {
        let log = self
            .scratch
            .path(&format!("{role}-{}.log", self.roles.len()));
        let child = self
            .scratch
            .command(role)
            .args(args)
            .envs(env.iter().copied())
            .stderr(std::fs::File::create(&log)?)
            .stdout(std::process::Stdio::null())
            .spawn()?;
        self.roles.push((child, log));
        Ok(())
    }

    pub fn logs(&self) -> String {
        self.roles
            .iter()
            .map(|(_, p)| std::fs::read_to_string(p).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub(crate) async fn produce(&self, messages: &[String]) -> Result<()> {
        let keyed: Vec<(String, String)> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("k{i}"), m.clone()))
            .collect();
        self.broker.produce("demo.incoming", &keyed).await
    }

    /// `spinneret <args>` to the end; its stdout.
    pub async fn cli(&self, args: &[&str]) -> Result<String> {
        let out = self
            .scratch
            .command(args[0])
            .args(&args[1..])
            .output()
            .await?;
        ensure!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Poll `info` until the crawl reports `done`.
    pub async fn until_done(&self, appid: &str, crawlid: &str) -> Result<Value> {
        let started = std::time::Instant::now();
        let deadline = started + Duration::from_secs(60);
        // `feed` returns once the broker has the request, maybe before the
        // ingest monitor stored it; a crawl not stored yet reads as done
        // with nothing in it. So done counts once the crawl was seen with
        // work, or after 5 s for a crawl that never gets any.
        let mut seen = false;
        loop {
            let out = self
                .cli(&["info", "--appid", appid, "--crawlid", crawlid])
                .await?;
            let info: Value = serde_json::from_str(&out)?;
            let work = ["crawled", "in_flight", "total_pending"]
                .iter()
                .any(|k| info[*k].as_u64().unwrap_or(0) > 0);
            seen |= work;
            if info["done"] == true && (seen || started.elapsed() > Duration::from_secs(5)) {
                return Ok(info);
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "crawl {crawlid} not done: {info}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) fn redis_int(&self, cmd: &[&str]) -> Result<i64> {
        let mut c = self.redis.connection()?;
        let mut q = redis::cmd(cmd[0]);
        for a in &cmd[1..] {
            q.arg(*a);
        }
        Ok(q.query::<Option<i64>>(&mut c)?.unwrap_or(0))
    }
}

/// A test site of `pages` pages on one host.
pub(crate) async fn one_host_site(pages: usize, seed: u64) -> Result<Site> {
    Ok(Site::start(SiteSpec {
        pages,
        hosts: 1,
        seed,
    })
    .await?)
}

pub(crate) fn crawl_request(url: &str, crawlid: &str, maxdepth: u32) -> String {
    json!({"url": url, "appid": "testapp", "crawlid": crawlid, "maxdepth": maxdepth}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_invalid_input_is_dead_lettered_and_ingest_goes_on() -> Result<()> {
    let mut bus = Bus::start("", "", 1).await?;
    bus.role("kafka-monitor", &[])?;
    let errors = bus.broker.collect("demo.errors")?;
    let bad = [
        ("not JSON", r#"{"url": "http://a.com/", "appid""#.to_string()),
        ("unknown field", r#"{"url":"http://a.com/","appid":"app","crawlid":"c","colour":"red"}"#.into()),
        ("bad enum", r#"{"uuid":"u1","appid":"app","stats":"everything"}"#.into()),
        ("out of range", r#"{"url":"http://a.com/","appid":"app","crawlid":"c","priority":101}"#.into()),
        ("explicit null", r#"{"url":"http://a.com/","appid":"app","crawlid":"c","cookie":null}"#.into()),
        ("duplicate entry", r#"{"url":"http://a.com/","appid":"app","crawlid":"c","allowed_domains":["a.com","a.com"]}"#.into()),
        ("spiderid with a bar", r#"{"url":"http://a.com/","appid":"app","crawlid":"c","spiderid":"link|x"}"#.into()),
        ("spiderid with a newline", r#"{"url":"http://a.com/","appid":"app","crawlid":"c","spiderid":"a\nb"}"#.into()),
        ("too many regexes", serde_json::json!({"url": "http://a.com/", "appid": "app", "crawlid": "c",
            "allow_regex": (0..40).map(|i| format!("{i}{}", "a".repeat(1000))).collect::<Vec<_>>()}).to_string()),
        ("domain config too fast", r#"{"uuid":"u9","appid":"app","domain":"a.com","action":"domain-update","hits":1000,"window":1}"#.into()),
    ];
    let mut messages: Vec<String> = bad.iter().map(|(_, m)| m.clone()).collect();
    messages.push(crawl_request("http://good.example/", "good", 0));
    bus.produce(&messages).await?;

    let letters = errors
        .wait(Duration::from_secs(30), "a dead letter for each", |v| {
            (v.len() >= bad.len()).then(|| v.to_vec())
        })
        .await?;
    ensure!(
        letters.len() == bad.len(),
        "more dead letters than bad messages: {letters:?}"
    );
    let expect = [
        "not JSON",
        "unknown field `colour`",
        "unknown variant `everything`",
        "priority",
        "`cookie` is null",
        "allowed_domains",
        "only A-Z a-z 0-9 _ - . are allowed",
        "only A-Z a-z 0-9 _ - . are allowed",
        "`allow_regex` has 40 items, more than the 32 allowed",
        "is faster than the 100 per",
    ];
    for (i, l) in letters.iter().enumerate() {
        let (what, payload) = &bad[i];
        ensure!(
            l["payload"] == *payload,
            "{what}: payload not kept verbatim: {l}"
        );
        ensure!(
            l["topic"] == "demo.incoming" && l["partition"] == 0 && l["offset"] == i as i64,
            "{what}: origin wrong: {l}"
        );
        ensure!(
            l["server_time"].as_i64().is_some_and(|t| t > 1_700_000_000),
            "{what}: no server_time: {l}"
        );
        let reason = l["error"].as_str().unwrap_or_default();
        ensure!(
            reason.contains(expect[i]),
            "{what}: reason {reason:?} does not say {:?}",
            expect[i]
        );
    }
    // The good request after them was queued: the monitor kept going.
    let info: Value = serde_json::from_str(
        &bus.cli(&["info", "--appid", "testapp", "--crawlid", "good"])
            .await?,
    )?;
    let queued = eventually(
        Duration::from_secs(20),
        "the valid request to be queued",
        || {
            let n = bus.redis_int(&["HGET", "{spinneret}:counts", "q"]).ok()?;
            (n == 1).then_some(n)
        },
    )
    .await?;
    ensure!(queued == 1);
    let _ = info;
    // Failures are counted in the kafka-monitor stats.
    let fails = bus.redis_int(&["HGET", "{spinneret}:st:k:fail:n", "life"])?;
    ensure!(fails == bad.len() as i64, "fail count {fails}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_monitors_in_one_group_split_partitions_without_loss_or_double_handling() -> Result<()>
{
    let mut bus = Bus::start("", "", 4).await?;
    bus.role("kafka-monitor", &[])?;
    bus.role("kafka-monitor", &[])?;
    // Wait until the group has settled with both members holding partitions.
    eventually(
        Duration::from_secs(60),
        "both monitors to hold partitions",
        || {
            let held = bus
                .roles
                .iter()
                .filter(|(_, log)| {
                    std::fs::read_to_string(log)
                        .unwrap_or_default()
                        .lines()
                        .rev()
                        .find(|l| l.contains("partitions assigned"))
                        .is_some_and(|l| !l.contains("partitions=[]"))
                })
                .count();
            (held == 2).then_some(())
        },
    )
    .await
    .with_context(|| bus.logs())?;
    let requests: Vec<String> = (0..100)
        .map(|i| {
            crawl_request(
                &format!("http://site{i}.example/"),
                &format!("crawl-{i}"),
                0,
            )
        })
        .collect();
    bus.produce(&requests).await?;
    eventually(Duration::from_secs(60), "100 crawls queued", || {
        let n = bus.redis_int(&["ZCARD", "{spinneret}:crawls"]).ok()?;
        (n == 100).then_some(())
    })
    .await
    .with_context(|| bus.logs())?;
    // Redelivery would show as more than 100 queued requests or handled
    // messages; give a late duplicate a chance to land before checking.
    let handled = eventually(Duration::from_secs(10), "stats to count 100", || {
        let n = bus
            .redis_int(&["HGET", "{spinneret}:st:k:total:n", "life"])
            .ok()?;
        (n >= 100).then_some(n)
    })
    .await?;
    ensure!(handled == 100, "handled {handled} messages for 100 sent");
    let queued = bus.redis_int(&["HGET", "{spinneret}:counts", "q"])?;
    ensure!(
        queued == 100,
        "{queued} requests queued for 100 distinct crawls"
    );
    let logs = bus.logs();
    for (_, log) in &bus.roles {
        let text = std::fs::read_to_string(log)?;
        ensure!(
            text.contains("partitions assigned"),
            "a monitor never joined:\n{logs}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_killed_mid_stream_is_replaced_without_double_handling() -> Result<()> {
    // No commit before the kill: the replacement reads everything again.
    let mut bus = Bus::start("batch = 10\ncommit_interval_ms = 600000", "", 2).await?;
    let requests: Vec<String> = (0..300)
        .map(|i| {
            crawl_request(
                &format!("http://site{i}.example/"),
                &format!("crawl-{i}"),
                0,
            )
        })
        .collect();
    bus.produce(&requests).await?;
    bus.role("kafka-monitor", &[])?;
    eventually(Duration::from_secs(30), "the monitor to be midway", || {
        let n = bus.redis_int(&["ZCARD", "{spinneret}:crawls"]).ok()?;
        (n > 0).then_some(())
    })
    .await?;
    // kill -9: offsets handled since the last commit are read again.
    bus.roles[0].0.start_kill()?;
    bus.roles[0].0.wait().await?;
    let at_kill = bus.redis_int(&["HGET", "{spinneret}:st:k:total:n", "life"])?;
    bus.role("kafka-monitor", &[])?;
    // The replacement reads the uncommitted messages again; the watermark
    // must skip exactly those handled before the kill.
    let log = bus.roles[1].1.clone();
    eventually(
        Duration::from_secs(60),
        "the replacement to see redelivered messages",
        || {
            std::fs::read_to_string(&log)
                .ok()?
                .contains("redelivered")
                .then_some(())
        },
    )
    .await
    .with_context(|| bus.logs())?;
    eventually(Duration::from_secs(60), "all 300 crawls queued", || {
        let n = bus.redis_int(&["ZCARD", "{spinneret}:crawls"]).ok()?;
        (n == 300).then_some(())
    })
    .await
    .with_context(|| bus.logs())?;
    // Let the replacement work through the whole topic before counting.
    let mut c = bus.redis.connection()?;
    let topic_end = 300;
    eventually(
        Duration::from_secs(60),
        "the replacement to reach the end",
        || {
            let skipped: i64 = std::fs::read_to_string(&log)
                .ok()?
                .lines()
                .filter_map(|l| {
                    l.split("skipped=")
                        .nth(1)?
                        .split_whitespace()
                        .next()?
                        .trim_matches(|c: char| !c.is_ascii_digit())
                        .parse::<i64>()
                        .ok()
                })
                .sum();
            let handled: i64 = redis::cmd("HGET")
                .arg("{spinneret}:st:k:total:n")
                .arg("life")
                .query(&mut c)
                .ok()?;
            (skipped + handled >= topic_end).then_some(())
        },
    )
    .await
    .with_context(|| bus.logs())?;
    let handled = bus.redis_int(&["HGET", "{spinneret}:st:k:total:n", "life"])?;
    let queued = bus.redis_int(&["HGET", "{spinneret}:counts", "q"])?;
    ensure!(
        handled == 300 && queued == 300,
        "handled {handled}, queued {queued} for 300 messages (killed at {at_kill})"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_crawl_is_reported_once() -> Result<()> {
    let mut bus = Bus::start("", "", 1).await?;
    bus.role("kafka-monitor", &[])?;
    bus.role("redis-monitor", &[])?;
    bus.role("redis-monitor", &[])?;
    let replies = bus.broker.collect("demo.outbound_firehose")?;
    // Blacklisted, so its seed stays queued until it expires.
    bus.cli(&[
        "domain",
        "blacklist",
        "held.example",
        "--redis",
        &bus.redis.url(),
    ])
    .await?;
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 2;
    let req = json!({"url": "http://held.example/", "appid": "testapp", "crawlid": "short",
                     "spiderid": "link", "expires": expires});
    bus.produce(&[req.to_string()]).await?;
    let expired = replies
        .wait(Duration::from_secs(30), "the expired message", |v| {
            v.iter().find(|r| r["action"] == "expired").cloned()
        })
        .await
        .with_context(|| bus.logs())?;
    ensure!(
        expired["crawlid"] == "short"
            && expired["appid"] == "testapp"
            && expired["spiderid"] == "link"
            && expired["total_expired"] == 1
            && expired["server_time"].is_i64()
            && expired.get("uuid").is_none(),
        "expired message {expired}"
    );
    // Once: a later info reply arrives after it, and no second `expired`.
    bus.produce(&[
        json!({"uuid": "after", "appid": "testapp", "spiderid": "link",
                         "action": "info", "crawlid": "short"})
        .to_string(),
    ])
    .await?;
    let info = replies
        .wait(Duration::from_secs(30), "the info reply", |v| {
            v.iter().find(|r| r["uuid"] == "after").cloned()
        })
        .await?;
    ensure!(
        info["total_pending"] == 0,
        "expired crawl still queued: {info}"
    );
    let n = replies
        .values()
        .iter()
        .filter(|r| r["action"] == "expired")
        .count();
    ensure!(n == 1, "{n} expired messages");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_plugin_adds_a_request_kind() -> Result<()> {
    let mut bus = Bus::start("", "", 1).await?;
    bus.role("kafka-monitor", &[])?;
    bus.role("redis-monitor", &[])?;
    let replies = bus.broker.collect("demo.outbound_firehose")?;
    let errors = bus.broker.collect("demo.errors")?;
    let msg = json!({"uuid": "sl-1", "appid": "testapp", "crawlid": "list",
                     "urls": ["http://one.example/", "http://two.example/", "http://three.example/"]});
    let bad = json!({"uuid": "sl-2", "appid": "testapp", "crawlid": "list", "urls": []});
    bus.produce(&[msg.to_string(), bad.to_string()]).await?;
    let reply = replies
        .wait(Duration::from_secs(30), "the plugin's reply", |v| {
            v.iter().find(|r| r["uuid"] == "sl-1").cloned()
        })
        .await
        .with_context(|| bus.logs())?;
    ensure!(
        reply["queued"] == 3 && reply["appid"] == "testapp",
        "reply {reply}"
    );
    ensure!(reply["server_time"].is_i64(), "reply {reply}");
    let letter = errors
        .wait(Duration::from_secs(30), "the refused seed list", |v| {
            v.first().cloned()
        })
        .await?;
    ensure!(
        letter["error"]
            .as_str()
            .is_some_and(|e| e.contains("seed-list") && e.contains("no urls")),
        "letter {letter}"
    );
    let queued = bus.redis_int(&["HGET", "{spinneret}:counts", "q"])?;
    ensure!(queued == 3, "{queued} queued");
    let plugin_count = bus.redis_int(&["HGET", "{spinneret}:st:k:seed-list:n", "life"])?;
    ensure!(plugin_count >= 1, "plugin not counted in stats");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_crawl_loses_no_page() -> Result<()> {
    let site = one_host_site(60, 11).await?;
    let expected: BTreeSet<String> = site.expected(0, Some(2)).into_iter().collect();
    let mut bus = Bus::start(
        "",
        "[throttle]\nhits = 20\nwindow = 1\nmoderated = true\n",
        2,
    )
    .await?;
    bus.role("kafka-monitor", &[])?;
    bus.role("redis-monitor", &[])?;
    bus.role("worker", &["--concurrency", "4"])?;
    let before = bus.broker.collect("demo.crawled_firehose")?;
    bus.cli(&["feed", &crawl_request(&site.url(0), "restart", 2)])
        .await?;
    before
        .wait(Duration::from_secs(60), "the first results", |v| {
            (v.len() >= 5).then_some(())
        })
        .await
        .with_context(|| bus.logs())?;
    // Hold fetching, and wait until every delivered result was read, so
    // the broker's in-memory loss on restart can only hit messages we have.
    let host = url::Url::parse(&site.url(0))?
        .host_str()
        .unwrap_or_default()
        .to_string();
    bus.cli(&["domain", "blacklist", &host, "--redis", &bus.redis.url()])
        .await?;
    let info = || -> Result<Value> {
        let mut c = bus.redis.connection()?;
        let f: Option<i64> = redis::cmd("HGET")
            .arg("{spinneret}:counts")
            .arg("f")
            .query(&mut c)?;
        Ok(json!({"in_flight": f.unwrap_or(0)}))
    };
    eventually(Duration::from_secs(30), "nothing in flight", || {
        (info().ok()?["in_flight"] == 0).then_some(())
    })
    .await?;
    let crawled_key = |c: &Collector| c.values().len();
    // Pages acked with a delivered result (the crawl's own counter, written
    // by the ack itself; the stats windows lag by up to a second).
    let out = bus
        .cli(&["info", "--appid", "testapp", "--crawlid", "restart"])
        .await?;
    let delivered = serde_json::from_str::<Value>(&out)?["crawled"]
        .as_i64()
        .unwrap_or(0);
    eventually(
        Duration::from_secs(30),
        "every delivered result to be read",
        || (crawled_key(&before) as i64 >= delivered).then_some(()),
    )
    .await?;
    let mut got: BTreeSet<String> = before
        .values()
        .iter()
        .filter_map(|r| r["url"].as_str().map(str::to_string))
        .collect();
    drop(before);

    // The broker goes away while the crawl goes on: results wait in the
    // workers (leases held), nothing is acked.
    bus.broker.kill();
    bus.cli(&["domain", "unblacklist", &host, "--redis", &bus.redis.url()])
        .await?;
    eventually(
        Duration::from_secs(30),
        "a result waiting for the broker",
        || (info().ok()?["in_flight"].as_i64()? > 0).then_some(()),
    )
    .await?;
    bus.broker.restart().await?;
    let after = bus.broker.collect("demo.crawled_firehose")?;
    let rest = after
        .wait(Duration::from_secs(120), "every expected page", |v| {
            let mut all = got.clone();
            all.extend(
                v.iter()
                    .filter_map(|r| r["url"].as_str().map(str::to_string)),
            );
            expected.is_subset(&all).then_some(all)
        })
        .await
        .with_context(|| bus.logs())?;
    got = rest;
    let missing: Vec<_> = expected.difference(&got).collect();
    ensure!(missing.is_empty(), "lost pages: {missing:?}");
    // The incoming topic started over with the broker: a request fed now
    // has an offset the monitor saw before, and must still be handled.
    bus.cli(&["feed", &crawl_request(&site.url(7), "after-restart", 0)])
        .await?;
    after
        .wait(
            Duration::from_secs(60),
            "a crawl fed after the restart",
            |v| v.iter().find(|r| r["crawlid"] == "after-restart").cloned(),
        )
        .await
        .with_context(|| bus.logs())?;
    ensure!(bus.logs().contains("retrying"), "the outage was not logged");
    ensure!(
        after
            .all()
            .iter()
            .all(|r| r.key.as_ref() == r.value["crawlid"].as_str().map(str::to_string).as_ref()),
        "results are keyed by crawlid"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_python_client_sees_the_contract() -> Result<()> {
    let python = crate::harness::tools().join("py/bin/python");
    ensure!(
        python.exists(),
        "{} is missing: run scripts/setup --test",
        python.display()
    );
    let site = Site::start(SiteSpec {
        pages: 40,
        hosts: 2,
        seed: 5,
    })
    .await?;
    let mut bus = Bus::start("", "", 2).await?;
    bus.role("up", &["--concurrency", "8"])?;
    let expected: Vec<String> = site.expected(0, Some(1)).into_iter().collect();
    let spec = json!({
        "brokers": bus.broker.brokers(),
        "seed": site.url(0),
        "expected": expected,
        "slow_seed": site.url(1),
        "slow_host": url::Url::parse(&site.url(1))?.host_str(),
    });
    let spec_file = bus.scratch.path("e2e.json");
    std::fs::write(&spec_file, spec.to_string())?;
    let out = tokio::process::Command::new(&python)
        .arg(crate::harness::repo().join("tests/e2e/contract_client.py"))
        .arg(&spec_file)
        .kill_on_drop(true)
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}\n--- spinneret ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        bus.logs()
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}"))?;
    ensure!(
        report["checked"].as_u64().is_some_and(|n| n >= 8),
        "report {report}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_app_topics_and_base64_bodies_read_back_with_dump() -> Result<()> {
    let site = one_host_site(10, 3).await?;
    let mut bus = Bus::start("appid_topics = true\nbase64_body = true", "", 1).await?;
    for t in ["demo.crawled_testapp", "demo.outbound_testapp"] {
        bus.broker.create_topic(t, 1).await?;
    }
    bus.role("up", &["--workers", "2"])?;
    let per_app = bus.broker.collect("demo.crawled_testapp")?;
    let replies = bus.broker.collect("demo.outbound_testapp")?;
    bus.cli(&["feed", &crawl_request(&site.url(0), "b64", 0)])
        .await?;
    let raw = per_app
        .wait(
            Duration::from_secs(60),
            "the result on the per-app topic",
            |v| v.first().cloned(),
        )
        .await
        .with_context(|| bus.logs())?;
    let body = raw["body"].as_str().unwrap_or_default();
    ensure!(
        !body.contains('<'),
        "body is not base64: {}",
        &body[..body.len().min(80)]
    );
    let dumped = bus
        .cli(&[
            "dump",
            "-t",
            "demo.crawled_firehose",
            "--from-beginning",
            "--count",
            "1",
            "--decode-base64",
        ])
        .await?;
    let dumped: Value = serde_json::from_str(dumped.trim())?;
    ensure!(
        dumped["body"].as_str().is_some_and(|b| b.contains("<html")),
        "dump did not decode the body"
    );
    let no_body = bus
        .cli(&[
            "dump",
            "-t",
            "demo.crawled_firehose",
            "--from-beginning",
            "--count",
            "1",
            "--no-body",
        ])
        .await?;
    ensure!(
        serde_json::from_str::<Value>(no_body.trim())?
            .get("body")
            .is_none(),
        "--no-body kept the body"
    );
    bus.cli(&[
        "feed",
        r#"{"uuid":"app-q","appid":"testapp","stats":"queue"}"#,
    ])
    .await?;
    replies
        .wait(
            Duration::from_secs(30),
            "the reply on the per-app topic",
            |v| v.iter().find(|r| r["uuid"] == "app-q").cloned(),
        )
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_over_the_size_limit_arrives_with_an_error() -> Result<()> {
    let site = one_host_site(10, 3).await?;
    // Test pages are 15-25 KiB: none fits in 4 KiB.
    let mut bus = Bus::start("max_message_bytes = 4096", "", 1).await?;
    bus.role("up", &[])?;
    let results = bus.broker.collect("demo.crawled_firehose")?;
    bus.cli(&["feed", &crawl_request(&site.url(0), "big", 0)])
        .await?;
    let r = results
        .wait(
            Duration::from_secs(60),
            "the oversized page's result",
            |v| v.first().cloned(),
        )
        .await
        .with_context(|| bus.logs())?;
    ensure!(
        r["body"] == "" && r["url"] == site.url(0).as_str(),
        "result {r}"
    );
    ensure!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.contains("exceeds kafka.max_message_bytes (4096)")),
        "result {r}"
    );
    ensure!(r["status_code"] == 200, "the page itself was fine: {r}");
    Ok(())
}
