//! Sitemaps (sitemaps.org): an index of sitemaps or a set of page URLs,
//! plain or gzipped. A `<loc>` scanner rather than an XML parser: the
//! format has one element we read, its text is a URL (entities and CDATA
//! undone here), and the scanner's cost and memory are bounded by the
//! bytes it is given. Malformed XML yields the `<loc>`s it has.

use std::io::Read;

/// Bytes of a sitemap once uncompressed: the protocol's own limit (50 MB).
pub const MAX_SITEMAP_BYTES: u64 = 50 * 1024 * 1024;

/// What a sitemap file lists.
#[derive(Debug, PartialEq, Eq)]
pub enum Sitemap {
    /// Other sitemaps (a `<sitemapindex>`).
    Index(Vec<String>),
    /// Pages (a `<urlset>`).
    Pages(Vec<String>),
}

/// Read a sitemap, gzipped or not; at most `max_locs` URLs are kept. An
/// error says why nothing could be read (a broken gzip stream, a file
/// past [`MAX_SITEMAP_BYTES`]).
pub fn parse(body: &[u8], max_locs: usize) -> Result<Sitemap, String> {
    let text = if body.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .take(MAX_SITEMAP_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("not a gzip stream: {e}"))?;
        out
    } else {
        body.to_vec()
    };
    if text.len() as u64 > MAX_SITEMAP_BYTES {
        return Err(format!(
            "larger than {MAX_SITEMAP_BYTES} bytes uncompressed"
        ));
    }
    let text = String::from_utf8_lossy(&text);
    let locs = locs(&text, max_locs);
    Ok(if text.contains("<sitemapindex") {
        Sitemap::Index(locs)
    } else {
        Sitemap::Pages(locs)
    })
}

/// The text of each `<loc>` element, at most `max`.
fn locs(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while out.len() < max {
        let Some(open) = rest.find("<loc") else { break };
        let after = &rest[open + 4..];
        // `<loc>` or `<loc attr...>`, not `<location>`.
        if !after.starts_with('>') && !after.starts_with(char::is_whitespace) {
            rest = after;
            continue;
        }
        let Some(gt) = after.find('>') else { break };
        let body = &after[gt + 1..];
        let Some(close) = body.find("</loc>") else {
            break;
        };
        let loc = crate::links::decode_entities(strip_cdata(body[..close].trim()));
        if !loc.is_empty() {
            out.push(loc);
        }
        rest = &body[close + 6..];
    }
    out
}

fn strip_cdata(s: &str) -> &str {
    s.strip_prefix("<![CDATA[")
        .and_then(|s| s.strip_suffix("]]>"))
        .map(str::trim)
        .unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_an_index_and_a_urlset() {
        let index = br#"<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
          <sitemap><loc>https://a.com/s1.xml</loc><lastmod>2024-01-01</lastmod></sitemap>
          <sitemap><loc> https://a.com/s2.xml.gz </loc></sitemap></sitemapindex>"#;
        assert_eq!(
            parse(index, 10),
            Ok(Sitemap::Index(vec![
                "https://a.com/s1.xml".into(),
                "https://a.com/s2.xml.gz".into()
            ]))
        );
        let urls = br#"<urlset><url><loc>https://a.com/?a=1&amp;b=2</loc></url>
          <url><location>x</location><loc><![CDATA[https://a.com/c]]></loc></url>
          <url><loc>https://a.com/&#x41;</loc></url></urlset>"#;
        assert_eq!(
            parse(urls, 10),
            Ok(Sitemap::Pages(vec![
                "https://a.com/?a=1&b=2".into(),
                "https://a.com/c".into(),
                "https://a.com/A".into()
            ]))
        );
    }

    #[test]
    fn gzipped_and_bounded() {
        let mut body = String::from("<urlset>");
        for i in 0..100 {
            body.push_str(&format!("<url><loc>https://a.com/{i}</loc></url>"));
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(body.as_bytes()).expect("gzip");
        let gz = gz.finish().expect("gzip");
        let Ok(Sitemap::Pages(urls)) = parse(&gz, 7) else {
            panic!("not read")
        };
        assert_eq!(urls.len(), 7);
        assert!(parse(&[0x1f, 0x8b, 0, 1, 2], 7).is_err());
        // A truncated file keeps what it had.
        assert_eq!(
            parse(
                b"<urlset><url><loc>https://a.com/1</loc></url><url><loc>htt",
                9
            ),
            Ok(Sitemap::Pages(vec!["https://a.com/1".into()]))
        );
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![b' '; 1 << 20];
        for _ in 0..51 {
            gz.write_all(&zeros).expect("gzip");
        }
        let gz = gz.finish().expect("gzip");
        assert!(gz.len() < 1 << 20, "{} bytes", gz.len());
        let err = parse(&gz, 10).expect_err("too large");
        assert!(err.contains("uncompressed"), "{err}");
    }
}
