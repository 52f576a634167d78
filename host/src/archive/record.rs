//! WARC/1.1 records as bytes: the header block, the digests warcio and
//! pywb check (`sha1:` in base32), and each record compressed as a gzip
//! member of its own, so a reader can seek to any record.

use flate2::{Compress, Compression, FlushCompress, Status};
use sha1::{Digest, Sha1};

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
        let mut parts: Vec<&[u8]> = Vec::with_capacity(self.block.len() + 2);
        parts.push(head.as_bytes());
        parts.extend_from_slice(self.block);
        parts.push(b"\r\n\r\n");
        gzip_member(&parts)
    }
}

/// Records up to this size go stored, not compressed (a deflate stored
/// block holds at most 65,535 bytes).
const STORED_BELOW: usize = 4096;

thread_local! {
    /// A deflate stream per thread, reset for each record: a fresh one
    /// allocates and zeroes its tables every time, which cost more than
    /// compressing a page.
    static DEFLATE: std::cell::RefCell<Compress> =
        std::cell::RefCell::new(Compress::new(Compression::fast(), false));
}

/// `parts`, as one, compressed as one gzip member (RFC 1952). Level 1:
/// an archive is written at crawl speed and read far less often.
pub fn gzip_member(parts: &[&[u8]]) -> Vec<u8> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    // No name, no time, "unknown" system: the same bytes for the same record.
    let mut out = Vec::with_capacity(total / 2 + 64);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    let mut crc = flate2::Crc::new();
    if total <= STORED_BELOW {
        // A small record (a request, metadata) is stored as one block:
        // compressing it would save a few hundred bytes and cost a reset
        // of the compressor's tables.
        out.push(1);
        out.extend_from_slice(&(total as u16).to_le_bytes());
        out.extend_from_slice(&(!(total as u16)).to_le_bytes());
        for p in parts {
            crc.update(p);
            out.extend_from_slice(p);
        }
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&(total as u32).to_le_bytes());
        return out;
    }
    DEFLATE.with(|d| {
        let mut d = d.borrow_mut();
        d.reset();
        let last = parts.len().saturating_sub(1);
        for (i, part) in parts.iter().enumerate() {
            crc.update(part);
            let flush = if i == last {
                FlushCompress::Finish
            } else {
                FlushCompress::None
            };
            let mut input = *part;
            loop {
                if out.capacity() - out.len() < 1024 {
                    out.reserve(input.len() / 2 + 4096);
                }
                let before = d.total_in();
                // Only a bug of ours could make deflate fail on a Vec.
                let status = d
                    .compress_vec(input, &mut out, flush)
                    .unwrap_or(Status::StreamEnd);
                input = &input[(d.total_in() - before) as usize..];
                let done = match flush {
                    FlushCompress::Finish => status == Status::StreamEnd,
                    _ => input.is_empty(),
                };
                if done {
                    break;
                }
            }
        }
        if parts.is_empty() {
            let _ = d.compress_vec(&[], &mut out, FlushCompress::Finish);
        }
    });
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out
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
    fn small_and_large_members_read_back_whole() {
        for size in [0, 1, 4096, 4097, 200_000] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let z = gzip_member(&[&data[..size / 2], &data[size / 2..]]);
            let mut back = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&z[..]), &mut back)
                .expect("gzip");
            assert_eq!(back, data, "{size}");
        }
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
