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
    /// The block's digest when the caller has it ([`digests`]).
    pub block_digest: Option<String>,
}

impl Record<'_> {
    /// The record gzip-compressed as one member, at `level` (0: stored).
    pub fn gzip(&self, level: u32) -> Vec<u8> {
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
        let digest = match &self.block_digest {
            Some(d) => d.clone(),
            None => sha1_of(self.block),
        };
        line("WARC-Block-Digest", &digest);
        line("Content-Type", self.content_type);
        line("Content-Length", &len.to_string());
        head.push_str("\r\n");
        let mut parts: Vec<&[u8]> = Vec::with_capacity(self.block.len() + 2);
        parts.push(head.as_bytes());
        parts.extend_from_slice(self.block);
        parts.push(b"\r\n\r\n");
        gzip_member(&parts, level)
    }
}

/// Records up to this size go stored, not compressed: compressing a
/// request or a metadata record would save a few hundred bytes and cost a
/// reset of the compressor's tables.
const STORED_BELOW: usize = 4096;

thread_local! {
    /// A deflate stream per thread and level, reset for each record: a
    /// fresh one allocates and zeroes its tables every time, which cost
    /// more than compressing a page.
    static DEFLATE: std::cell::RefCell<Option<(u32, Compress)>> =
        const { std::cell::RefCell::new(None) };
}

/// `parts`, as one, as one gzip member (RFC 1952) compressed at `level`
/// (0: stored blocks, for payloads that arrive compressed).
pub fn gzip_member(parts: &[&[u8]], level: u32) -> Vec<u8> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let stored = level == 0 || total <= STORED_BELOW;
    // No name, no time, "unknown" system: the same bytes for the same record.
    let mut out = Vec::with_capacity(if stored {
        total + total / 8192 + 64
    } else {
        total / 2 + 64
    });
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    let mut crc = crc32fast::Hasher::new();
    for p in parts {
        crc.update(p);
    }
    if stored {
        stored_blocks(parts, total, &mut out);
    } else {
        deflate(parts, level, &mut out);
    }
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out
}

/// Deflate stored blocks (RFC 1951 3.2.4) of at most 65,535 bytes each.
fn stored_blocks(parts: &[&[u8]], total: usize, out: &mut Vec<u8>) {
    const MAX: usize = u16::MAX as usize;
    let mut left = total;
    let mut block = 0;
    let open = |out: &mut Vec<u8>, left: usize| {
        let n = left.min(MAX);
        out.push(u8::from(left <= MAX));
        out.extend_from_slice(&(n as u16).to_le_bytes());
        out.extend_from_slice(&(!(n as u16)).to_le_bytes());
        n
    };
    if total == 0 {
        open(out, 0);
        return;
    }
    for mut p in parts.iter().copied() {
        while !p.is_empty() {
            if block == 0 {
                block = open(out, left);
            }
            let n = block.min(p.len());
            out.extend_from_slice(&p[..n]);
            (p, block, left) = (&p[n..], block - n, left - n);
        }
    }
}

/// `parts`, as one, as one raw deflate stream at `level`.
fn deflate(parts: &[&[u8]], level: u32, out: &mut Vec<u8>) {
    DEFLATE.with(|d| {
        let mut d = d.borrow_mut();
        let d = match &mut *d {
            Some((l, c)) if *l == level => {
                c.reset();
                c
            }
            slot => {
                &mut slot
                    .insert((level, Compress::new(Compression::new(level), false)))
                    .1
            }
        };
        let last = parts.len().saturating_sub(1);
        for (i, part) in parts.iter().enumerate() {
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
                    .compress_vec(input, out, flush)
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
    });
}

/// `sha1:<base32>` of the parts, as one.
pub fn sha1_of(parts: &[&[u8]]) -> String {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    format!("sha1:{}", base32(&h.finalize()))
}

/// The digests of a response: of its block (`head` then `payload`) and of
/// its payload, as `sha1:<base32>`. The two are computed a block of each
/// in turn, so that the processor overlaps them: a third less time than
/// one after the other.
pub fn digests(head: &[u8], payload: &[u8]) -> (String, String) {
    let mut block = Twin::default();
    let mut alone = Twin::default();
    block.feed_partial(head);
    let mut blocks = payload.chunks_exact(64);
    for b in blocks.by_ref() {
        block.feed_block(b);
        alone.feed_block(b);
    }
    let rest = blocks.remainder();
    block.feed_partial(rest);
    alone.feed_partial(rest);
    (block.finish(), alone.finish())
}

/// One SHA-1 fed whole blocks where it can ([`digests`]).
struct Twin {
    state: [u32; 5],
    /// Bytes short of a whole block.
    buf: [u8; 64],
    filled: usize,
    len: u64,
}

impl Default for Twin {
    fn default() -> Self {
        Twin {
            state: [
                0x6745_2301,
                0xEFCD_AB89,
                0x98BA_DCFE,
                0x1032_5476,
                0xC3D2_E1F0,
            ],
            buf: [0; 64],
            filled: 0,
            len: 0,
        }
    }
}

impl Twin {
    fn compress(&mut self, b: &[u8]) {
        sha1::compress(
            &mut self.state,
            &[*sha1::digest::generic_array::GenericArray::from_slice(b)],
        );
    }

    /// One block's worth of bytes (or fewer, at the end).
    fn feed_block(&mut self, b: &[u8]) {
        if self.filled == 0 && b.len() == 64 {
            self.len += 64;
            self.compress(b);
        } else {
            self.feed_partial(b);
        }
    }

    fn feed_partial(&mut self, mut b: &[u8]) {
        self.len += b.len() as u64;
        while !b.is_empty() {
            let n = (64 - self.filled).min(b.len());
            self.buf[self.filled..self.filled + n].copy_from_slice(&b[..n]);
            self.filled += n;
            b = &b[n..];
            if self.filled == 64 {
                let block = self.buf;
                self.compress(&block);
                self.filled = 0;
            }
        }
    }

    fn finish(mut self) -> String {
        let bits = self.len * 8;
        let mut pad = [0u8; 72];
        pad[0] = 0x80;
        // To 56 bytes past a block's start, then the length.
        let zeros = (119 - self.filled) % 64;
        pad[1 + zeros..9 + zeros].copy_from_slice(&bits.to_be_bytes());
        let len = self.len;
        self.feed_partial(&pad[..9 + zeros]);
        debug_assert_eq!(self.filled, 0, "{len}");
        let mut out = [0u8; 20];
        for (o, w) in out.chunks_mut(4).zip(self.state) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        format!("sha1:{}", base32(&out))
    }
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
    fn twin_digests_equal_one_at_a_time() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 256) as u8).collect();
        for head in [0, 1, 55, 56, 63, 64, 65, 300] {
            for len in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 4700] {
                let (h, p) = (&data[..head], &data[head..head + len]);
                let (block, payload) = digests(h, p);
                assert_eq!(block, sha1_of(&[h, p]), "{head} {len}");
                assert_eq!(payload, sha1_of(&[p]), "{head} {len}");
            }
        }
    }

    #[test]
    fn small_and_large_members_read_back_whole() {
        // Stored (level 0) across block bounds, and compressed at two levels.
        for level in [0, 1, 6] {
            for size in [0, 1, 4096, 4097, 65_535, 65_536, 200_000] {
                let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
                let z = gzip_member(&[&data[..size / 3], &data[size / 3..]], level);
                let mut gz = flate2::read::GzDecoder::new(&z[..]);
                let mut back = Vec::new();
                std::io::Read::read_to_end(&mut gz, &mut back).expect("gzip");
                assert_eq!(back, data, "{size} at {level}");
                assert!(gz.into_inner().is_empty(), "one whole member");
                if level == 0 && size > 0 {
                    assert!(z.len() > size, "stored, not compressed");
                }
            }
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
            block_digest: None,
        };
        let z = r.gzip(1);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&z[..]), &mut text)
            .expect("gzip");
        assert!(text.starts_with("WARC/1.1\r\nWARC-Type: resource\r\n"));
        assert!(text.contains("Content-Length: 5\r\n\r\nhello\r\n\r\n"));
        assert!(text.contains(&format!("WARC-Block-Digest: {}\r\n", sha1_of(&[b"hello"]))));
    }
}
