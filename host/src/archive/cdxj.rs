//! CDXJ index lines, as pywb and the WACZ spec read them:
//! `<surt> <yyyymmddhhmmss> {json}`, one per response, revisit or
//! resource record.

use serde::Serialize;

/// What an index line says of one record.
pub struct Entry<'a> {
    pub url: &'a str,
    /// The record's `WARC-Date`.
    pub date: &'a str,
    pub mime: &'a str,
    pub status: u16,
    /// The payload digest (`sha1:…`), when there is a payload.
    pub digest: Option<&'a str>,
    pub offset: u64,
    pub length: u64,
    pub filename: &'a str,
    /// The record type when it is not a response (`revisit`, `resource`).
    pub kind: &'a str,
    /// The crawl it was fetched for (appid, crawlid): what a crawl's WACZ
    /// is cut by.
    pub crawl: Option<(&'a str, &'a str)>,
}

impl Entry<'_> {
    /// The line, with its newline.
    pub fn line(&self) -> String {
        let (offset, length) = (self.offset.to_string(), self.length.to_string());
        let status = (self.status > 0).then(|| self.status.to_string());
        let fields = Fields {
            url: self.url,
            mime: if self.kind == "revisit" {
                "warc/revisit"
            } else {
                self.mime
            },
            offset: &offset,
            length: &length,
            filename: self.filename,
            status: status.as_deref(),
            digest: self.digest,
            appid: self.crawl.map(|c| c.0),
            crawlid: self.crawl.map(|c| c.1),
        };
        let json = serde_json::to_string(&fields).expect("strings serialise");
        format!("{} {} {json}\n", surt(self.url), timestamp14(self.date))
    }
}

/// The JSON part of a line, in the order pywb writes it.
#[derive(Serialize)]
struct Fields<'a> {
    url: &'a str,
    mime: &'a str,
    offset: &'a str,
    length: &'a str,
    filename: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    appid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    crawlid: Option<&'a str>,
}

/// `2026-12-06T21:51:29.123456Z` as `20261206215129`.
pub fn timestamp14(date: &str) -> String {
    date.chars().filter(char::is_ascii_digit).take(14).collect()
}

/// The Sort-friendly URI Reordering Transform pywb sorts by: scheme and
/// `www.` dropped, host labels reversed and comma-joined (an address as
/// it is), `)` before the path, query arguments sorted, lower case.
pub fn surt(url: &str) -> String {
    let Ok(u) = url::Url::parse(url) else {
        return url.to_ascii_lowercase();
    };
    let host = match u.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.');
            let d = d.strip_prefix("www.").unwrap_or(d);
            d.split('.').rev().collect::<Vec<_>>().join(",")
        }
        Some(h) => h.to_string(),
        None => String::new(),
    };
    let mut s = host;
    if let Some(p) = u.port() {
        s.push(':');
        s.push_str(&p.to_string());
    }
    s.push(')');
    s.push_str(u.path());
    if let Some(q) = u.query() {
        let mut args: Vec<&str> = q.split('&').filter(|a| !a.is_empty()).collect();
        args.sort_unstable();
        s.push('?');
        s.push_str(&args.join("&"));
    }
    s.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surts_as_pywb_sorts_them() {
        assert_eq!(
            surt("http://www.Example.com/A?b=2&a=1"),
            "com,example)/a?a=1&b=2"
        );
        assert_eq!(
            surt("https://docs.example.com:8443/"),
            "com,example,docs:8443)/"
        );
        assert_eq!(surt("http://127.0.0.1:8080/x"), "127.0.0.1:8080)/x");
    }

    #[test]
    fn a_line_has_the_fields_replay_needs() {
        let e = Entry {
            url: "http://a.test/",
            date: "2026-12-06T21:51:29.5Z",
            mime: "text/html",
            status: 200,
            digest: Some("sha1:AAAA"),
            offset: 10,
            length: 20,
            filename: "f.warc.gz",
            kind: "response",
            crawl: None,
        };
        let line = e.line();
        assert!(line.starts_with("test,a)/ 20261206215129 {"), "{line}");
        let v: serde_json::Value = serde_json::from_str(
            line.split_once(" {")
                .map(|(_, j)| format!("{{{j}"))
                .as_deref()
                .unwrap_or(""),
        )
        .expect("json");
        assert_eq!(v["offset"], "10");
        assert_eq!(v["status"], "200");
        assert_eq!(v["filename"], "f.warc.gz");
    }
}
