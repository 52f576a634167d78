//! WARC/1.1 records as bytes: the header block, the digests warcio and
//! pywb check (`sha1:` in base32), and each record compressed as a gzip
//! member of its own, so a reader can seek to any record.

use sha1::{Digest, Sha1};
use std::io::Write;

/// One record before compression.
pub struct Record<'a> {
    pub kind: &'a str,
    pub id: String,
    pub date: &'a str,
    pub target: Option<&'a str>,
    /// Further `WARC-*` headers, in order.
    pub headers: Vec<(&'static str, String)>,
    pub content_type: &'a str,
    /// The block: for HTTP records, the header block and the payload.
    pub block: &'a [&'a [u8]],
}

impl Record<'_> {
    /// The record gzip-compressed as one member.
    pub fn gzip(&self) -> Vec<u8> {
        let len: usize = self.block.iter().map(|b| b.len()).sum();
        let mut head = String::with_capacity(512);
        head.push_str("WARC/1.1\r\n");
        let mut line = |k: &str, v: &str| {
            head.push_str(k);
            head.push_str(": ");
            head.push_str(v);
            head.push_str("\r\n");
        };
        line("WARC-Type", self.kind);
        line("WARC-Record-ID", &self.id);
        line("WARC-Date", self.date);
        if let Some(t) = self.target {
            line("WARC-Target-URI", t);
        }
        for (k, v) in &self.headers {
            line(k, v);
        }
        line("WARC-Block-Digest", &sha1_of(self.block));
        line("Content-Type", self.content_type);
        line("Content-Length", &len.to_string());
        head.push_str("\r\n");
        let mut z = flate2::write::GzEncoder::new(
            Vec::with_capacity(len / 3 + 256),
            flate2::Compression::new(6),
        );
        // Writing to a Vec cannot fail.
        let _ = z.write_all(head.as_bytes());
        for b in self.block {
            let _ = z.write_all(b);
        }
        let _ = z.write_all(b"\r\n\r\n");
        z.finish().unwrap_or_default()
    }
}

/// `sha1:<base32>` of the parts, as one.
pub fn sha1_of(parts: &[&[u8]]) -> String {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    format!("sha1:{}", base32(&h.finalize()))
}

/// RFC 4648 base32, upper case, padded.
fn base32(bytes: &[u8]) -> String {
    const ABC: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    for chunk in bytes.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let n = u64::from_be_bytes([0, 0, 0, buf[0], buf[1], buf[2], buf[3], buf[4]]);
        let chars = (chunk.len() * 8).div_ceil(5);
        for i in 0..8 {
            if i < chars {
                out.push(ABC[((n >> (35 - i * 5)) & 31) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A fresh record id, `<urn:uuid:…>` (random, version 4).
pub fn record_id() -> String {
    let (a, b) = (fastrand::u64(..), fastrand::u64(..));
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x4000;
    format!(
        "<urn:uuid:{:08x}-{:04x}-{:04x}-{:04x}-{:012x}>",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// An HTTP header block: the first line, the headers, the blank line.
pub fn http_head(first: &str, headers: &[(String, String)]) -> Vec<u8> {
    let mut h = Vec::with_capacity(first.len() + headers.len() * 40 + 4);
    h.extend_from_slice(first.as_bytes());
    h.extend_from_slice(b"\r\n");
    for (k, v) in headers {
        // A value cannot end the block early.
        let v = v.replace(['\r', '\n'], " ");
        h.extend_from_slice(k.as_bytes());
        h.extend_from_slice(b": ");
        h.extend_from_slice(v.as_bytes());
        h.extend_from_slice(b"\r\n");
    }
    h.extend_from_slice(b"\r\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc_4648() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "MY======");
        assert_eq!(base32(b"fo"), "MZXQ====");
        assert_eq!(base32(b"foob"), "MZXW6YQ=");
        assert_eq!(base32(b"fooba"), "MZXW6YTB");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI======");
        // sha1("") as warcio writes it.
        assert_eq!(sha1_of(&[]), "sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYJ");
    }

    #[test]
    fn a_record_is_one_gzip_member_with_its_length_and_digest() {
        let id = record_id();
        assert_eq!(id.len(), "<urn:uuid:>".len() + 36);
        let r = Record {
            kind: "resource",
            id,
            date: "2026-12-06T00:00:00Z",
            target: Some("http://a.test/"),
            headers: vec![],
            content_type: "text/plain",
            block: &[b"hel", b"lo"],
        };
        let z = r.gzip();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&z[..]), &mut text)
            .expect("gzip");
        assert!(text.starts_with("WARC/1.1\r\nWARC-Type: resource\r\n"));
        assert!(text.contains("Content-Length: 5\r\n\r\nhello\r\n\r\n"));
        assert!(text.contains(&format!("WARC-Block-Digest: {}\r\n", sha1_of(&[b"hello"]))));
    }
}
