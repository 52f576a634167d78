use super::*;

#[test]
fn passwords_in_urls_are_redacted_for_logs() {
    assert_eq!(
        redact("redis://:s3cret@db:6379/0"),
        "redis://:***@db:6379/0"
    );
    assert_eq!(redact("redis://u:p@db"), "redis://u:***@db");
    assert_eq!(redact("redis://db:6379"), "redis://db:6379");
    assert_eq!(redact("not a url"), "not a url");
    // A Redis Cluster's nodes, each with or without a scheme.
    assert_eq!(
        redact("redis://:pw@a:7000,b:7001,redis://u:pw2@c:7002"),
        "redis://:***@a:7000,b:7001,redis://u:***@c:7002"
    );
    assert_eq!(redact("https://x.example/a@b"), "https://x.example/a@b");
}
use std::io::Write;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_match_the_contract() {
    let s = Settings::load_from(None, env(&[])).expect("defaults load");
    assert_eq!(s.throttle.hits, 10);
    assert_eq!(s.throttle.window, Duration::from_secs(60));
    assert_eq!(s.crawl.maxdepth_limit, 3);
    assert_eq!(s.kafka.topic_prefix, "demo");
    assert!(s.crawl.obey_robots && !s.crawl.allow_private);
    s.validate().expect("defaults are valid");
}

#[test]
fn env_overrides_file() {
    let mut f = tempfile::NamedTempFile::new().expect("tempfile");
    writeln!(f, "[throttle]\nhits = 3\nwindow = 1.5").expect("write");
    let s = Settings::load_from(Some(f.path()), env(&[("SPINNERET_THROTTLE__HITS", "5")]))
        .expect("loads");
    assert_eq!(s.throttle.hits, 5);
    assert_eq!(s.throttle.window, Duration::from_millis(1500));
}

#[test]
fn unknown_keys_are_named() {
    let err =
        Settings::load_from(None, env(&[("SPINNERET_THROTTLE__HTIS", "5")])).expect_err("rejected");
    assert!(err.to_string().contains("htis"), "{err}");
}

#[test]
fn an_unknown_compression_is_refused_with_the_choices() {
    let s = Settings::load_from(None, env(&[("SPINNERET_KAFKA__COMPRESSION", "brotli")]))
        .expect("loads");
    let err = s.validate().expect_err("rejected");
    assert!(
        err.to_string().contains("none, gzip, snappy, lz4, zstd"),
        "{err}"
    );
    let s =
        Settings::load_from(None, env(&[("SPINNERET_KAFKA__COMPRESSION", "zstd")])).expect("loads");
    assert!(s.validate().is_ok());
}

#[test]
fn shards_are_automatic_and_bounded() {
    let s = Settings::load_from(None, env(&[])).expect("loads");
    assert_eq!(s.redis.shard_count(false), 1);
    assert_eq!(s.redis.shard_count(true), CLUSTER_SHARDS as usize);
    let s = Settings::load_from(None, env(&[("SPINNERET_REDIS__SHARDS", "300")])).expect("loads");
    let err = s.validate().expect_err("rejected");
    assert!(err.to_string().contains("at most 256"), "{err}");
    let s = Settings::load_from(None, env(&[("SPINNERET_REDIS__SHARDS", "4")])).expect("loads");
    assert!(s.validate().is_ok());
    assert_eq!(s.redis.shard_count(true), 4);
}

#[test]
fn nested_plugin_overrides_from_env() {
    let s = Settings::load_from(
        None,
        env(&[("SPINNERET_PLUGINS__OVERRIDES__LINK__MEMORY_MB", "7")]),
    )
    .expect("loads");
    assert_eq!(s.plugins.limits_for("link").memory_mb, 7);
    assert_eq!(s.plugins.limits_for("other").memory_mb, 128);
}

#[test]
fn validation_explains() {
    let mut s = Settings::default();
    s.throttle.hits = 0;
    assert!(s
        .validate()
        .expect_err("invalid")
        .to_string()
        .contains("throttle.hits"));
}

#[test]
fn every_duration_is_checked_in_range() {
    type Set = fn(&mut Settings, Duration);
    let cases: [(&str, Set); 6] = [
        ("crawl.read_timeout", |s, v| s.crawl.read_timeout = v),
        ("crawl.connect_timeout", |s, v| s.crawl.connect_timeout = v),
        ("throttle.window", |s, v| s.throttle.window = v),
        ("crawl.max_pause", |s, v| s.crawl.max_pause = v),
        ("rest.feed_wait", |s, v| s.rest.feed_wait = v),
        ("crawl.sitemap_timeout", |s, v| s.crawl.sitemap_timeout = v),
    ];
    for (name, set) in cases {
        let mut s = Settings::default();
        set(&mut s, Duration::from_secs(1_000_000));
        let e = s.validate().expect_err("invalid").to_string();
        assert!(e.contains(name), "{name}: {e}");
    }
}

#[test]
fn a_negative_number_of_seconds_is_refused_where_it_is_read() {
    let e = Settings::load_from(None, env(&[("SPINNERET_CRAWL__LEASE_TTL", "-1")]))
        .expect_err("refused")
        .to_string();
    assert!(e.contains("lease_ttl") && e.contains("seconds"), "{e}");
}

#[test]
fn a_namespace_is_one_hash_tag_of_its_own() {
    for bad in ["", "a{b}", "a}", "a/1", "sp ace"] {
        let mut s = Settings::default();
        s.redis.namespace = bad.into();
        let e = s.validate().expect_err("invalid").to_string();
        assert!(e.contains("redis.namespace"), "{bad:?}: {e}");
    }
    let mut s = Settings::default();
    s.redis.namespace = "team-a.prod:eu".into();
    s.validate().expect("valid");
}

#[test]
fn networks_are_parsed_when_the_settings_load() {
    let mut f = tempfile::NamedTempFile::new().expect("tempfile");
    writeln!(
        f,
        "[crawl]\nallow_networks = [\"10.1.0.0/16\", \"127.0.0.2\"]"
    )
    .expect("write");
    let s = Settings::load_from(Some(f.path()), env(&[])).expect("loads");
    assert!(s.crawl.allow_networks[0].contains("10.1.200.3".parse().expect("ip")));
    assert!(!s.crawl.allow_networks[1].contains("127.0.0.3".parse().expect("ip")));
    let mut f = tempfile::NamedTempFile::new().expect("tempfile");
    writeln!(f, "[crawl]\nallow_networks = [\"10.1.0.0/33\"]").expect("write");
    let e = Settings::load_from(Some(f.path()), env(&[])).expect_err("refused");
    let e = e.to_string();
    assert!(e.contains("allow_networks") && e.contains("prefix"), "{e}");
}
