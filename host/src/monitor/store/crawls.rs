//! Crawl-level control operations on the Redis store (info, stop, expire,
//! domain changes): the library the Kafka control plane calls. Each costs
//! O(size of that crawl) thanks to per-crawl indexes, never O(whole
//! backlog).

use super::MonitorStore;
use crate::events::event::Stats;
use crate::links::domain;
use crate::politeness::SiteView;
use crate::request::CrawlKey;
use crate::scheduler::{Row, ScheduleBook};
use crate::store::{corrupt, crawl_owner, crawl_ref, unavailable, StoreError};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A live change to a domain's politeness (contract §2.4).
#[derive(Debug, Clone, PartialEq)]
pub enum DomainAction {
    /// `hits` fetches per `window` seconds, scaled by `scale` (0-1).
    Update {
        hits: u32,
        window: f64,
        scale: f64,
    },
    /// Back to the default throttle.
    Remove,
    /// Not fetched at all; its queue is kept.
    Blacklist,
    Unblacklist,
}

/// A crawl's requests queued for one spider on one domain.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainQueue {
    pub total: i64,
    pub high_priority: i64,
    pub low_priority: i64,
    /// Fetches of the domain open (all crawls').
    pub in_flight: u32,
    /// The pace of each of its origins that has one (all crawls'): pause,
    /// Crawl-delay, adaptive spacing, learned rate.
    pub origins: BTreeMap<String, SiteView>,
}

/// An origin holding a crawl back: the crawl has requests queued on its
/// domain, and the origin is paused or paced (status page).
#[derive(Debug, Clone, PartialEq)]
pub struct HeldBack {
    pub origin: String,
    /// The crawl's requests queued on the origin's domain.
    pub queued: i64,
    pub pace: SiteView,
}

/// Origins listed as holding one crawl back, the slowest first.
const HELD_BACK_SHOWN: usize = 5;

/// What the store knows of one crawl (the monitor builds the reply).
#[derive(Debug, Clone, PartialEq)]
pub struct CrawlInfo {
    /// Queued for the asked spider.
    pub queued: u64,
    /// The whole crawl's.
    pub in_flight: u64,
    pub crawled: u64,
    /// Queued for any spider or in flight, each shard's two counters read
    /// in one command: 0 only when the crawl has nothing left anywhere.
    pub open: u64,
    /// The asked spider's queues by domain.
    pub domains: BTreeMap<String, DomainQueue>,
    pub expires: Option<i64>,
    /// Its figures so far (of its current run, if it is scheduled).
    pub figures: Stats,
    /// Its schedule, if it has one.
    pub schedule: Option<Row>,
}

/// One crawl in an app's info.
#[derive(Debug, Clone, PartialEq)]
pub struct AppCrawlInfo {
    pub crawlid: String,
    pub queued: u64,
    pub domains: BTreeMap<String, DomainQueue>,
    pub expires: Option<i64>,
}

/// A crawl ended by its `expires` time, reported exactly once.
#[derive(Debug, Clone, PartialEq)]
pub struct Expired {
    pub appid: String,
    pub crawlid: String,
    pub purged: u64,
}

impl MonitorStore {
    /// Stop crawl `cref` on the given shards, each up to its horizon ("" =
    /// all); the total purged.
    async fn stop_on(
        &self,
        cref: &str,
        owner: &str,
        shards: &[(usize, String)],
    ) -> Result<u64, StoreError> {
        let calls = shards
            .iter()
            .map(|(k, horizon)| {
                let mut inv = self.redis.call(&self.scripts.stop, *k);
                inv.arg(cref).arg(owner).arg(horizon);
                (*k, inv)
            })
            .collect();
        let purged = self.redis.on_shards::<i64>(calls).await?;
        Ok(purged.into_iter().map(|(_, n)| n.max(0) as u64).sum())
    }

    /// Stop every crawl whose `expires` has passed. On one shard each is
    /// stopped and reported by exactly one caller across the cluster. On
    /// several, the seeds' shards each hold the expiry; the caller that
    /// claims the crawl (for 30 s, then for a day once reported) stops it
    /// on every shard and sends the reply. A caller that dies in between
    /// leaves it to the next one: reported at least once, and never twice
    /// unless a caller dies between sending the reply and marking it sent.
    pub(crate) async fn expire_due(&self) -> Result<Vec<Expired>, StoreError> {
        let here = self.redis.shards().len() == 1;
        let calls = self
            .redis
            .shards()
            .all()
            .map(|k| {
                let mut inv = self.redis.call(&self.scripts.expire, k);
                inv.arg(if here { "1" } else { "0" });
                (k, inv)
            })
            .collect();
        let mut expired = Vec::new();
        for (k, out) in self.redis.on_shards::<Vec<String>>(calls).await? {
            for due in out.chunks(3) {
                let [cref, purged, owner] = due else { continue };
                let mut purged: u64 = purged
                    .parse()
                    .map_err(|_| corrupt(format!("expire reply purged {purged:?}")))?;
                if !here {
                    match self.expire_everywhere(cref, owner).await? {
                        Some(n) => purged = n,
                        None => {
                            self.expiring_done(k, cref).await?;
                            continue;
                        }
                    }
                    self.expiring_done(k, cref).await?;
                }
                if let Some(spec) = self.redis.spec(cref).await? {
                    expired.push(Expired {
                        appid: spec.appid.clone(),
                        crawlid: spec.crawlid.clone(),
                        purged,
                    });
                }
            }
        }
        Ok(expired)
    }

    /// Stop an expired crawl on every shard and send its reply, if this
    /// caller claims it first: the number purged, or None if another
    /// caller has it.
    async fn expire_everywhere(&self, cref: &str, owner: &str) -> Result<Option<u64>, StoreError> {
        let claim = self.redis.key(&format!("expired:{cref}"));
        let mut con = self.redis.con();
        let mine: Option<String> = redis::cmd("SET")
            .arg(&claim)
            .arg(&*self.machine)
            .arg("NX")
            .arg("PX")
            .arg(30_000)
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        if mine.is_none() {
            return Ok(None);
        }
        let all: Vec<(usize, String)> = self
            .redis
            .shards()
            .all()
            .map(|k| (k, String::new()))
            .collect();
        let purged = self.stop_on(cref, owner, &all).await?;
        let reply = json!({"Expired": {"cref": cref, "purged": purged}});
        self.control_push(&reply.to_string()).await?;
        let mut con = self.redis.con();
        let _: () = redis::cmd("SET")
            .arg(&claim)
            .arg("sent")
            .arg("EX")
            .arg(86_400)
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(Some(purged))
    }

    /// Shard k's part of an expiry is over.
    async fn expiring_done(&self, k: usize, cref: &str) -> Result<(), StoreError> {
        let mut con = self.redis.con();
        let _: i64 = redis::cmd("ZREM")
            .arg(format!("{}:expiring", self.redis.shards().tag(k)))
            .arg(cref)
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

impl MonitorStore {
    /// Info on one crawl: queued per domain, in flight, crawled.
    pub async fn crawl_info(
        &self,
        appid: &str,
        crawlid: &str,
        spiderid: &str,
    ) -> Result<CrawlInfo, StoreError> {
        let key = CrawlKey {
            appid: appid.into(),
            crawlid: crawlid.into(),
        };
        let cref = crawl_ref(&key);
        let (queued, in_flight, crawled, domains) = self
            .crawl_counts(&cref, &crawl_owner(&key), spiderid)
            .await?;
        let open = self.crawl_open(&cref).await?;
        let expires = self
            .redis
            .spec(&cref)
            .await?
            .filter(|s| s.expires > 0 && s.key() == key)
            .map(|s| s.expires);
        Ok(CrawlInfo {
            queued,
            in_flight,
            crawled,
            open,
            domains,
            expires,
            figures: self.redis.figures(&key).await?,
            schedule: self.row(&key).await?,
        })
    }

    /// Info on every crawl of an app that has something queued for
    /// `spiderid` or is that spider's.
    pub async fn app_info(
        &self,
        appid: &str,
        spiderid: &str,
    ) -> Result<Vec<AppCrawlInfo>, StoreError> {
        let mut crefs = BTreeSet::new();
        for k in self.redis.shards().all() {
            let mut con = self.redis.con();
            let on_shard: Vec<String> = redis::cmd("SMEMBERS")
                .arg(format!("{}:app:{appid}", self.redis.shards().tag(k)))
                .query_async(&mut con)
                .await
                .map_err(unavailable)?;
            crefs.extend(on_shard);
        }
        let mut crawls = Vec::new();
        for cref in crefs {
            let Some(spec) = self.redis.spec(&cref).await? else {
                continue;
            };
            if spec.appid != appid {
                continue;
            }
            let owner = crawl_owner(&spec.key());
            let (queued, _, _, domains) = self.crawl_counts(&cref, &owner, spiderid).await?;
            if queued == 0 && spec.spiderid != spiderid {
                // Another spider's crawl with nothing queued for this one.
                continue;
            }
            crawls.push(AppCrawlInfo {
                crawlid: spec.crawlid.clone(),
                queued,
                domains,
                expires: (spec.expires > 0).then_some(spec.expires),
            });
        }
        Ok(crawls)
    }

    /// Everything the crawl has queued (whatever the spider) or in flight.
    /// A page's links are queued before its lease is acked, so the sum
    /// never passes through 0 on one shard; across shards a read could fall
    /// between a push on one and the ack on another, so a 0 is read twice.
    async fn crawl_open(&self, cref: &str) -> Result<u64, StoreError> {
        let mut open = 0;
        for _ in 0..2 {
            open = 0;
            for k in self.redis.shards().all() {
                let mut con = self.redis.con();
                let (q, f): (Option<i64>, Option<i64>) = redis::cmd("HMGET")
                    .arg(format!("{}:cc:{cref}", self.redis.shards().tag(k)))
                    .arg("q")
                    .arg("f")
                    .query_async(&mut con)
                    .await
                    .map_err(unavailable)?;
                // A shard where the crawl never queued has neither field.
                open += (q.unwrap_or(0).max(0) + f.unwrap_or(0).max(0)) as u64;
            }
            if open > 0 {
                break;
            }
        }
        Ok(open)
    }

    /// The origins holding a crawl back (requests queued for `spider` on
    /// their domain, and a pause or pace), paused ones first, then the
    /// slowest.
    pub(super) async fn held_back(
        &self,
        cref: &str,
        owner: &str,
        spider: &str,
    ) -> Result<Vec<HeldBack>, StoreError> {
        let (_, _, _, domains) = self.crawl_counts(cref, owner, spider).await?;
        let mut held: Vec<HeldBack> = domains
            .into_values()
            .filter(|q| q.total > 0)
            .flat_map(|q| {
                q.origins
                    .into_iter()
                    .filter(|(_, pace)| pace.holds_back())
                    .map(move |(origin, pace)| HeldBack {
                        origin,
                        queued: q.total,
                        pace,
                    })
            })
            .collect();
        let key = |h: &HeldBack| {
            (
                h.pace.paused_for.is_none(),
                h.pace.per_sec().unwrap_or(f64::MAX),
            )
        };
        held.sort_by(|a, b| {
            let (a, b) = (key(a), key(b));
            a.0.cmp(&b.0).then(a.1.total_cmp(&b.1))
        });
        held.truncate(HELD_BACK_SHOWN);
        Ok(held)
    }

    /// The crawl's requests queued for `spider`, per domain, and the
    /// crawl's in-flight and crawled counts, summed over the shards (a
    /// domain lives on one).
    async fn crawl_counts(
        &self,
        cref: &str,
        owner: &str,
        spider: &str,
    ) -> Result<(u64, u64, u64, BTreeMap<String, DomainQueue>), StoreError> {
        let calls = self
            .redis
            .shards()
            .all()
            .map(|k| {
                let mut inv = self.redis.call(&self.scripts.info, k);
                inv.arg(cref).arg(owner).arg(spider);
                (k, inv)
            })
            .collect();
        let int = |v: &redis::Value| match v {
            redis::Value::Int(i) => *i,
            _ => 0,
        };
        let mut sums = [0u64; 3];
        let mut domains = BTreeMap::new();
        let text = |v: &redis::Value| match v {
            redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        };
        for (k, out) in self.redis.on_shards::<Vec<redis::Value>>(calls).await? {
            // Three sums, then records of seven values: a domain ('d'),
            // then its origins ('o').
            let bad = || corrupt(format!("info reply of shard {k}: {out:?}"));
            if out.len() < 3 || (out.len() - 3) % 7 != 0 {
                return Err(bad());
            }
            for (sum, v) in sums.iter_mut().zip(&out) {
                *sum += int(v).max(0) as u64;
            }
            let mut current: Option<String> = None;
            for r in out[3..].chunks(7) {
                let (tag, name) = (text(&r[0]).ok_or_else(bad)?, text(&r[1]).ok_or_else(bad)?);
                let ms = |v| (int(v) > 0).then(|| Duration::from_millis(int(v) as u64));
                if tag == "d" {
                    let queue = DomainQueue {
                        total: int(&r[2]),
                        high_priority: int(&r[3]),
                        low_priority: int(&r[4]),
                        in_flight: int(&r[5]).max(0) as u32,
                        origins: BTreeMap::new(),
                    };
                    domains.insert(name.clone(), queue);
                    current = Some(name);
                    continue;
                }
                let domain = current
                    .as_ref()
                    .and_then(|d| domains.get_mut(d))
                    .ok_or_else(bad)?;
                let view = SiteView {
                    paused_for: ms(&r[2]),
                    crawl_delay: ms(&r[3]),
                    adaptive: ms(&r[4]),
                    rate: (int(&r[5]) > 0).then(|| int(&r[5]) as f64 / 1000.0),
                    slow_downs: int(&r[6]).max(0) as u64,
                };
                domain.origins.insert(name, view);
            }
        }
        Ok((sums[0], sums[1], sums[2], domains))
    }

    /// Stop a crawl on every shard: purge its queue, refuse its future
    /// children. Requests in flight may still produce results. With
    /// `horizons` (a stop stored in order by the ingest script: one per
    /// shard), only requests queued before the stop (job ids up to the
    /// shard's horizon) are purged. Returns how many were purged.
    pub async fn stop(
        &self,
        appid: &str,
        crawlid: &str,
        horizons: Option<&[u64]>,
    ) -> Result<u64, StoreError> {
        let key = CrawlKey {
            appid: appid.into(),
            crawlid: crawlid.into(),
        };
        let cref = crawl_ref(&key);
        let owner = crawl_owner(&key);
        let shards: Vec<(usize, String)> = self
            .redis
            .shards()
            .all()
            .map(|k| {
                let horizon = horizons.and_then(|h| h.get(k).copied());
                // No horizon for the shard: "" tells the stop script to purge everything.
                (k, horizon.map(|h| h.to_string()).unwrap_or_default())
            })
            .collect();
        self.stop_on(&cref, &owner, &shards).await
    }

    /// Change a domain's limits or blacklist it. The throttle is decided
    /// inside Redis, and the domain's queues are readied and workers woken,
    /// so a change applies to the next pop, within the second.
    pub async fn domain(&self, domain_name: &str, action: &DomainAction) -> Result<(), StoreError> {
        let d = domain::registered(domain_name);
        let k = self.redis.shards().of_domain(&d);
        let (name, config) = match action {
            DomainAction::Update {
                hits,
                window,
                scale,
            } => ("update", format!("{hits},{window},{scale}")),
            DomainAction::Remove => ("remove", String::new()),
            DomainAction::Blacklist => ("blacklist", String::new()),
            DomainAction::Unblacklist => ("unblacklist", String::new()),
        };
        // The script also readies the domain's queues, so a lifted limit
        // takes effect at once.
        let _: i64 = self
            .redis
            .call(&self.scripts.domain, k)
            .arg(name)
            .arg(&d)
            .arg(config)
            .invoke_async(&mut self.redis.con())
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
