//! Section 9: what the WARC archive costs. The embedded crawl of the whole
//! site (its pages served plain, then gzip-encoded as nginx sends HTML)
//! and one worker on Redis, each with `warc.dir` set beside without, in
//! alternating rounds: pages/s and CPU per page as ratios (on/off,
//! medians), and the bytes written per page.

use crate::cluster::cluster_crawl;
use crate::embedded::{crawl, Scope};
use crate::redis::Redis;
use crate::runner::median;
use anyhow::Result;
use spinneret_testsite::{Quirks, Site};
use std::path::Path;

/// The crawls with the archive on: the environment of every process the
/// bench starts while it runs.
struct Archiving<'a>(&'a Path);

impl<'a> Archiving<'a> {
    fn on(dir: &'a Path) -> Archiving<'a> {
        let _ = std::fs::remove_dir_all(dir);
        std::env::set_var("SPINNERET_WARC__DIR", dir);
        Archiving(dir)
    }

    /// Bytes of WARC files written.
    fn bytes(&self) -> u64 {
        let mut total = 0;
        let mut todo = vec![self.0.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    todo.push(p);
                } else if p.to_string_lossy().ends_with(".warc.gz") {
                    total += e.metadata().map_or(0, |m| m.len());
                }
            }
        }
        total
    }
}

impl Drop for Archiving<'_> {
    fn drop(&mut self) {
        std::env::remove_var("SPINNERET_WARC__DIR");
        let _ = std::fs::remove_dir_all(self.0);
    }
}

pub(crate) async fn section(
    site: &Site,
    spinneret: &Path,
    plugins: &Path,
    work: &Path,
    (concurrency, rounds): (usize, usize),
    redis: Option<&Redis>,
) -> Result<Vec<String>> {
    let dir = work.join("warc");
    // The same pages served gzip-encoded, as nginx's `gzip on` sends HTML:
    // their payloads are archived as they came, without deflating again.
    let gzipped = Site::start_with(
        site.spec,
        Quirks {
            gzip: true,
            ..Quirks::default()
        },
    )
    .await?;
    let mut lines = Vec::new();
    for (site, served) in [(site, "plain"), (&gzipped, "gzip")] {
        let (mut speed, mut cpu, mut per_page) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let args = (concurrency, Scope::Whole);
            let off = crawl(site, spinneret, plugins, work, "link", args, None).await?;
            let archiving = Archiving::on(&dir);
            let on = crawl(site, spinneret, plugins, work, "link", args, None).await?;
            per_page.push(archiving.bytes() as f64 / on.pages.max(1) as f64);
            drop(archiving);
            speed.push(on.per_second() / off.per_second());
            cpu.push(on.cpu_ms_per_page / off.cpu_ms_per_page);
        }
        lines.push(format!(
            "embedded, pages served {served:5}, WARC on/off: {:.2}x pages/s, {:.2}x CPU per page, {:.1} KiB of WARC per page (medians of {rounds} rounds)",
            median(speed),
            median(cpu),
            median(per_page) / 1024.0
        ));
    }
    drop(gzipped);
    let Some(r) = redis else {
        return Ok(lines);
    };
    let (mut speed, mut per_page) = (Vec::new(), Vec::new());
    let url = r.url();
    // The cluster crawl fetches every page the site has, once.
    let pages = site.expected(0, None).len().max(1) as f64;
    for _ in 0..rounds {
        let mut per_second = [0.0; 2];
        for (i, on) in [false, true].into_iter().enumerate() {
            let archiving = on.then(|| Archiving::on(&dir));
            let nodes = (&[r][..], url.as_str());
            let (_, s) =
                cluster_crawl(site, spinneret, plugins, work, nodes, 1, concurrency).await?;
            if let Some(a) = &archiving {
                per_page.push(a.bytes() as f64 / pages);
            }
            drop(archiving);
            r.flush()?;
            per_second[i] = s;
        }
        speed.push(per_second[1] / per_second[0]);
    }
    lines.push(format!(
        "one worker on Redis, WARC on/off: {:.2}x pages/s, {:.1} KiB of WARC per page (medians of {rounds} rounds)",
        median(speed),
        median(per_page) / 1024.0
    ));
    Ok(lines)
}
