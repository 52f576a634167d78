//! Which files hold which crawl's records, kept in Redis for a cluster: a
//! crawl run by many workers is packaged once, when it has ended and every
//! file holding it is sealed and uploaded (`packager.rs`). Keys, under the
//! namespace's hash tag (docs/redis-keys.md):
//!
//! - `warc:crawls`: the crawls with records not packaged yet;
//! - `warc:files:<crawl>`: each file holding the crawl (its name under
//!   `<prefix>/warc/`) and `open` or `sealed` (uploaded);
//! - `warc:seal:<crawl>`: the crawl has ended: workers seal the files
//!   holding it now, not at `warc.max_age`;
//! - `warc:lock:<crawl>`: one process packages the crawl;
//! - `warc:packager`: the process whose turn it is to read the ledger.
//!
//! A file is registered before any page whose records it holds is acked
//! (in the archive's group commit), so when a crawl reads as ended every
//! file it needs is known.

use crate::store::{Redis, StoreError};
use std::collections::HashMap;
use std::sync::Arc;

/// A crawl: its appid and crawlid.
pub type CrawlOf = (String, String);

pub struct Ledger {
    redis: Arc<Redis>,
}

/// Drop the packaged files from the crawl's list and, when none is left
/// (no new file came meanwhile), the crawl from the ledger. One script:
/// a file registered while it runs keeps the crawl listed.
const PACKAGED: &str = r"
if #ARGV > 1 then redis.call('HDEL', KEYS[2], unpack(ARGV, 2)) end
if redis.call('HLEN', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[3])
end
return 1";

/// Take the packager's turn if nobody holds it, or keep it: the key
/// names its holder and lives `ARGV[2]` ms past its last renewal.
const TURN: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0";

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl Ledger {
    pub fn new(redis: Arc<Redis>) -> Ledger {
        Ledger { redis }
    }

    fn member(c: &CrawlOf) -> String {
        serde_json::json!([c.0, c.1]).to_string()
    }

    fn key(&self, what: &str, c: &CrawlOf) -> String {
        self.redis.key(&format!("warc:{what}:{}", Self::member(c)))
    }

    /// Files now holding records of these crawls. The file first, then the
    /// crawl: packaging in between keeps or re-lists it.
    pub async fn opened(&self, entries: &[(CrawlOf, String)]) -> Result<(), StoreError> {
        let mut p = redis::pipe();
        for (c, file) in entries {
            p.hset(self.key("files", c), file, "open").ignore();
            p.sadd(self.redis.key("warc:crawls"), Self::member(c))
                .ignore();
        }
        p.query_async::<()>(&mut self.redis.con())
            .await
            .map_err(unavailable)
    }

    /// `file`, holding records of `crawls`, is sealed and uploaded.
    pub async fn sealed(&self, crawls: &[CrawlOf], file: &str) -> Result<(), StoreError> {
        let mut p = redis::pipe();
        for c in crawls {
            p.hset(self.key("files", c), file, "sealed").ignore();
        }
        p.query_async::<()>(&mut self.redis.con())
            .await
            .map_err(unavailable)
    }

    /// Which of these crawls have ended, their files to be sealed now.
    pub async fn seal_asked(&self, crawls: &[CrawlOf]) -> Result<Vec<bool>, StoreError> {
        let mut p = redis::pipe();
        for c in crawls {
            p.exists(self.key("seal", c));
        }
        p.query_async(&mut self.redis.con())
            .await
            .map_err(unavailable)
    }

    /// The crawls with records not packaged yet.
    pub async fn crawls(&self) -> Result<Vec<CrawlOf>, StoreError> {
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.redis.key("warc:crawls"))
            .query_async(&mut self.redis.con())
            .await
            .map_err(unavailable)?;
        Ok(members
            .iter()
            .filter_map(|m| serde_json::from_str::<(String, String)>(m).ok())
            .collect())
    }

    /// The crawl has ended (`true`: ask its files sealed), or runs again.
    pub async fn ended(&self, c: &CrawlOf, ended: bool) -> Result<(), StoreError> {
        let key = self.key("seal", c);
        let cmd = if ended {
            let mut cmd = redis::cmd("SET");
            cmd.arg(&key).arg(1).arg("EX").arg(86_400);
            cmd
        } else {
            let mut cmd = redis::cmd("DEL");
            cmd.arg(&key);
            cmd
        };
        cmd.query_async::<()>(&mut self.redis.con())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// The files holding the crawl, each `open` or `sealed`.
    pub async fn files(&self, c: &CrawlOf) -> Result<HashMap<String, String>, StoreError> {
        redis::cmd("HGETALL")
            .arg(self.key("files", c))
            .query_async(&mut self.redis.con())
            .await
            .map_err(unavailable)
    }

    /// Whether it is `me`'s turn to read the ledger, taken or renewed for
    /// `ttl`: the other processes would only repeat its reads. When the
    /// holder stops, another takes the turn within `ttl`.
    pub async fn turn(&self, me: &str, ttl: std::time::Duration) -> Result<bool, StoreError> {
        redis::Script::new(TURN)
            .key(self.redis.key("warc:packager"))
            .arg(me)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut self.redis.con())
            .await
            .map_err(unavailable)
    }

    /// One packager per crawl at a time, for at most `ttl`.
    pub async fn lock(&self, c: &CrawlOf, ttl: std::time::Duration) -> Result<bool, StoreError> {
        let got: Option<String> = redis::cmd("SET")
            .arg(self.key("lock", c))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut self.redis.con())
            .await
            .map_err(unavailable)?;
        Ok(got.is_some())
    }

    pub async fn unlock(&self, c: &CrawlOf) -> Result<(), StoreError> {
        redis::cmd("DEL")
            .arg(self.key("lock", c))
            .query_async::<()>(&mut self.redis.con())
            .await
            .map_err(unavailable)
    }

    /// The crawl was packaged from `files`.
    pub async fn packaged(&self, c: &CrawlOf, files: &[String]) -> Result<(), StoreError> {
        redis::Script::new(PACKAGED)
            .key(self.redis.key("warc:crawls"))
            .key(self.key("files", c))
            .key(self.key("seal", c))
            .arg(Self::member(c))
            .arg(files)
            .invoke_async::<()>(&mut self.redis.con())
            .await
            .map_err(unavailable)?;
        self.unlock(c).await
    }
}
