//! Section 1: host link extraction on the site's 15-25 KB pages (µs per
//! page).

use spinneret_testsite::Site;
use std::time::Instant;

pub(crate) fn link_extraction(site: &Site) -> Vec<String> {
    let n = site.spec.pages.min(2000);
    let pages: Vec<bytes::Bytes> = (0..n)
        .map(|i| site.graph().render(i, site.addrs()))
        .collect();
    let urls: Vec<url::Url> = (0..n)
        .filter_map(|i| url::Url::parse(&site.url(i)).ok())
        .collect();
    let filters = spinneret::links::LinkFilters::default();
    let mut links = 0;
    for (p, u) in pages.iter().zip(&urls) {
        links += spinneret::links::extract(p, u, &filters, 5000).links.len();
    }
    let rounds = 5;
    let started = Instant::now();
    for _ in 0..rounds {
        for (p, u) in pages.iter().zip(&urls) {
            std::hint::black_box(spinneret::links::extract(p, u, &filters, 5000));
        }
    }
    let per_page = started.elapsed().as_secs_f64() * 1e6 / (rounds * n) as f64;
    let avg_kb = pages.iter().map(|p| p.len()).sum::<usize>() as f64 / n as f64 / 1024.0;
    vec![
        format!(
            "pages:            {n} ({avg_kb:.1} KB average, {:.1} links kept per page)",
            links as f64 / n as f64
        ),
        format!("per page:         {per_page:.1} µs (target <= 30 µs)"),
    ]
}
