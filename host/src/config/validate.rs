//! [`Settings::validate`]: ranges and combinations, each table checking its
//! own keys; messages say what to change.

use super::{ConfigError, Crawl, Kafka, Plugins, Redis, Rest, Settings, Throttle, MAX_SHARDS};

type Checked = Result<(), ConfigError>;

fn bad(m: impl Into<String>) -> Checked {
    Err(ConfigError::Invalid(m.into()))
}

impl Settings {
    /// Check ranges and combinations; messages say what to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.throttle.hits == 0 {
            return bad("throttle.hits must be at least 1");
        }
        self.check_seconds()?;
        self.crawl.validate()?;
        self.rest.validate()?;
        self.render.check().map_err(ConfigError::Invalid)?;
        self.warc.check().map_err(ConfigError::Invalid)?;
        self.output.objects.check().map_err(ConfigError::Invalid)?;
        self.webhooks.check().map_err(ConfigError::Invalid)?;
        self.throttle.validate()?;
        self.plugins.validate()?;
        self.kafka.validate()?;
        self.redis.validate()
    }

    /// Every duration in its range (loading already refused negative,
    /// infinite and absurd numbers of seconds).
    fn check_seconds(&self) -> Checked {
        let (c, r) = (&self.crawl, &self.rest);
        let (day, hour, positive) = (86_400.0, 3600.0, 0.001);
        let seconds = [
            ("throttle.window", self.throttle.window, positive, day),
            ("crawl.download_timeout", c.download_timeout, positive, hour),
            ("crawl.connect_timeout", c.connect_timeout, positive, hour),
            ("crawl.read_timeout", c.read_timeout, positive, hour),
            ("crawl.robots_timeout", c.robots_timeout, positive, hour),
            ("crawl.sitemap_timeout", c.sitemap_timeout, positive, hour),
            ("crawl.lease_ttl", c.lease_ttl, positive, day),
            ("crawl.delivery_timeout", c.delivery_timeout, 0.0, day),
            ("crawl.max_crawl_delay", c.max_crawl_delay, 0.0, day),
            ("crawl.retry_backoff", c.retry_backoff, 0.0, day),
            ("crawl.retry_backoff_max", c.retry_backoff_max, 0.0, day),
            ("crawl.pause_first", c.pause_first, 0.0, day),
            ("crawl.max_pause", c.max_pause, 0.0, day),
            ("rest.header_timeout", r.header_timeout, positive, hour),
            ("rest.body_timeout", r.body_timeout, positive, hour),
            ("rest.feed_wait", r.feed_wait, 0.0, hour),
            (
                "process.shutdown_grace",
                self.process.shutdown_grace,
                1.0,
                hour,
            ),
        ];
        for (name, v, lo, hi) in seconds {
            let v = v.as_secs_f64();
            if !(lo..=hi).contains(&v) {
                return bad(format!(
                    "{name} must be a number of seconds from {lo} to {hi}, got {v}"
                ));
            }
        }
        Ok(())
    }
}

impl Crawl {
    fn validate(&self) -> Checked {
        if self.lease_ttl < self.download_timeout {
            return bad(format!(
                "crawl.lease_ttl ({:?}) must be at least crawl.download_timeout ({:?}), or requests would be taken over mid-fetch",
                self.lease_ttl, self.download_timeout
            ));
        }
        if !self.proxy.is_empty() && reqwest::Proxy::all(&self.proxy).is_err() {
            return bad(format!(
                "crawl.proxy {:?} is not a proxy URL: give http://host:port",
                self.proxy
            ));
        }
        if self.max_sitemaps == 0 || self.max_sitemap_urls == 0 {
            return bad("crawl.max_sitemaps and crawl.max_sitemap_urls must be at least 1");
        }
        if self.retry_backoff > self.retry_backoff_max || self.pause_first > self.max_pause {
            return bad("crawl.retry_backoff must not exceed crawl.retry_backoff_max, nor crawl.pause_first crawl.max_pause");
        }
        if self.max_walk_steps > 100_000 {
            return bad(format!(
                "crawl.max_walk_steps must be at most 100000, got {}",
                self.max_walk_steps
            ));
        }
        if self.max_links_per_page == 0 {
            return bad("crawl.max_links_per_page must be at least 1");
        }
        if self.concurrency == 0 {
            return bad("crawl.concurrency must be at least 1");
        }
        if self.max_body_bytes == 0 {
            return bad("crawl.max_body_bytes must be at least 1");
        }
        Ok(())
    }
}

impl Rest {
    fn validate(&self) -> Checked {
        if self.max_connections == 0 {
            return bad("rest.max_connections must be at least 1");
        }
        if self.poll_ttl == 0 {
            return bad("rest.poll_ttl must be at least 1");
        }
        Ok(())
    }
}

impl Throttle {
    fn validate(&self) -> Checked {
        if self.split_by_egress && self.egress_id.is_empty() {
            return bad("throttle.split_by_egress is on but throttle.egress_id is empty: name this process's egress identity");
        }
        if let Some((app, w)) = self.weights.iter().find(|(_, w)| !(1..=1000).contains(*w)) {
            return bad(format!(
                "throttle.weights: {app} = {w}; a weight is from 1 to 1000"
            ));
        }
        Ok(())
    }
}

impl Plugins {
    fn validate(&self) -> Checked {
        for (name, l) in std::iter::once(("(default)", self.limits)).chain(
            self.overrides
                .keys()
                .map(|n| (n.as_str(), self.limits_for(n))),
        ) {
            let caps = [
                l.max_items,
                l.max_requests,
                l.max_output_bytes,
                l.max_log_lines,
            ];
            if l.memory_mb == 0
                || l.call_timeout_ms == 0
                || l.recycle_calls == 0
                || caps.contains(&0)
            {
                return bad(format!(
                    "plugins limits for {name}: memory_mb, call_timeout_ms, recycle_calls, max_items, max_requests, max_output_bytes and max_log_lines must be at least 1"
                ));
            }
        }
        if self.watch_interval_ms == 0 {
            return bad("plugins.watch_interval_ms must be at least 1");
        }
        Ok(())
    }
}

impl Kafka {
    fn validate(&self) -> Checked {
        if self.brokers.trim().is_empty() {
            return bad("kafka.brokers is empty: give host:port[,host:port] (or --kafka)");
        }
        if self.partitions < 1 || self.replication < 1 || self.batch == 0 {
            return bad("kafka.partitions, kafka.replication and kafka.batch must be at least 1");
        }
        if self.max_message_bytes < 1024 {
            return bad(format!(
                "kafka.max_message_bytes ({}) must be at least 1024",
                self.max_message_bytes
            ));
        }
        if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&self.compression.as_str()) {
            return bad(format!(
                "kafka.compression ({:?}) must be one of none, gzip, snappy, lz4, zstd",
                self.compression
            ));
        }
        for (key, topic) in [
            ("kafka.topic_prefix", &self.topic_prefix),
            ("kafka.incoming_topic", &self.incoming_topic),
        ] {
            if topic.is_empty()
                || !topic
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            {
                return bad(format!(
                    "{key} {topic:?} is not a Kafka topic name: use letters, digits, '.', '_' and '-'"
                ));
            }
        }
        Ok(())
    }
}

impl Redis {
    fn validate(&self) -> Checked {
        // A namespace is one hash tag (`{ns}`, shard k `{ns/k}`): braces
        // would break the tag and a `/` would make it another's shard.
        let ns = &self.namespace;
        if ns.is_empty()
            || ns.len() > 64
            || !ns
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
        {
            return bad(format!(
                "redis.namespace {ns:?} must be 1-64 of A-Z a-z 0-9 _ - . : (no braces or /: each namespace is its own hash tag, and shard k of one is {{ns/k}})"
            ));
        }
        if self.shards > MAX_SHARDS {
            return bad(format!(
                "redis.shards ({}) must be at most {} (0 = automatic)",
                self.shards, MAX_SHARDS
            ));
        }
        Ok(())
    }
}
