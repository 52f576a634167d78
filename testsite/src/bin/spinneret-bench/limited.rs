//! Section 8: a rate-limited site. One host of 400 pages behind a token
//! bucket of 20 requests/s (burst 5) answering 429 without `Retry-After`,
//! as nginx's `limit_req` does, crawled with the throttle lifted by 1 and
//! 3 workers on Redis: the pages/s it served from the tenth second on, as
//! a share of the limiter's rate, and the share of requests answered 429.

use crate::cluster::cluster_crawl;
use crate::redis::Redis;
use anyhow::Result;
use spinneret_testsite::{Limit, Quirks, Site, SiteSpec};
use std::path::Path;
use std::time::Duration;

const RATE: f64 = 20.0;

pub(crate) async fn section(
    spinneret: &Path,
    plugins: &Path,
    work: &Path,
    r: &Redis,
    concurrency: usize,
) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for workers in [1, 3] {
        let quirks = Quirks {
            limit: Some(Limit {
                per_sec: RATE,
                burst: 5.0,
                retry_after: None,
            }),
            ..Quirks::default()
        };
        let spec = SiteSpec {
            pages: 400,
            hosts: 1,
            seed: 41,
        };
        let site = Site::start_with(spec, quirks).await?;
        let url = r.url();
        cluster_crawl(
            &site,
            spinneret,
            plugins,
            work,
            (&[r], &url),
            workers,
            concurrency,
        )
        .await?;
        r.flush()?;
        let f = site.against_limit(Duration::from_secs(10));
        lines.push(format!(
            "{workers} worker(s): {:.2} of the limiter's rate from the tenth second ({:.1} pages/s of {RATE}; slowest 5 s: {:.2}), {} of {} requests answered 429 ({:.1}%)",
            f.per_sec / RATE,
            f.per_sec,
            f.slowest / RATE,
            f.refused,
            f.requests,
            f.refused_share() * 100.0
        ));
    }
    Ok(lines)
}
