//! Content decoding, done here rather than by the HTTP client: the bytes
//! the server sent are kept as sent (an archive stores them so), and the
//! decoded body is bounded like any other (a small gzip can expand a
//! thousandfold).

use bytes::Bytes;
use std::io::Read;

/// What `Accept-Encoding` offers when a request does not set its own: the
/// codings [`decode`] reads.
pub const ACCEPTED: &str = "gzip, deflate, br";

/// Why a body could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// It decodes to more than the limit.
    TooLarge,
    /// Not what its `Content-Encoding` says.
    Corrupt(String),
}

/// `body` decoded by `coding` (a `Content-Encoding` value, codings applied
/// in order), at most `limit` bytes of it; `None` when it says no coding
/// (`identity`, empty) or one we do not read, so the body stays as sent.
/// With `truncate`, a body past the limit is cut there instead of failing.
pub fn decode(
    coding: &str,
    body: &Bytes,
    limit: usize,
    truncate: bool,
) -> Option<Result<Bytes, DecodeError>> {
    let codings: Vec<String> = coding
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect();
    if codings.is_empty() || !codings.iter().all(|c| known(c)) {
        return None;
    }
    let mut out = body.clone();
    // Applied in the order listed: undone last first.
    for c in codings.iter().rev() {
        out = match one(c, &out, limit, truncate) {
            Ok(b) => b,
            Err(e) => return Some(Err(e)),
        };
    }
    Some(Ok(out))
}

fn known(coding: &str) -> bool {
    matches!(coding, "gzip" | "x-gzip" | "deflate" | "br")
}

fn one(coding: &str, body: &[u8], limit: usize, truncate: bool) -> Result<Bytes, DecodeError> {
    match coding {
        "gzip" | "x-gzip" => read_bounded(flate2::read::MultiGzDecoder::new(body), limit, truncate),
        // `deflate` is zlib-wrapped by the RFC, raw by many servers.
        "deflate" if body.first().is_some_and(|b| b & 0x0f == 8) => {
            read_bounded(flate2::read::ZlibDecoder::new(body), limit, truncate).or_else(|e| match e
            {
                DecodeError::TooLarge => Err(e),
                DecodeError::Corrupt(_) => {
                    read_bounded(flate2::read::DeflateDecoder::new(body), limit, truncate)
                }
            })
        }
        "deflate" => read_bounded(flate2::read::DeflateDecoder::new(body), limit, truncate),
        _ => read_bounded(
            brotli_decompressor::Decompressor::new(body, 4096),
            limit,
            truncate,
        ),
    }
}

/// Read `r` to its end, failing past `limit` bytes (or stopping there).
fn read_bounded(r: impl Read, limit: usize, truncate: bool) -> Result<Bytes, DecodeError> {
    let mut out = Vec::new();
    // One byte past the limit tells "exactly the limit" from "more".
    let read = r.take(limit as u64 + 1).read_to_end(&mut out);
    if let Err(e) = read {
        // A body cut at the limit on purpose (robots.txt) ends mid-stream.
        if !truncate || out.is_empty() {
            return Err(DecodeError::Corrupt(e.to_string()));
        }
    }
    if out.len() > limit {
        if !truncate {
            return Err(DecodeError::TooLarge);
        }
        out.truncate(limit);
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(b: &[u8]) -> Bytes {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).expect("gzip");
        e.finish().expect("gzip").into()
    }

    #[test]
    fn gzip_deflate_and_brotli_decode_and_identity_stays() {
        let text = b"hello hello hello hello".repeat(10);
        assert_eq!(
            decode("gzip", &gzip(&text), 1 << 20, false),
            Some(Ok(Bytes::from(text.clone())))
        );
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&text).expect("zlib");
        let z: Bytes = z.finish().expect("zlib").into();
        assert_eq!(
            decode("deflate", &z, 1 << 20, false),
            Some(Ok(Bytes::from(text.clone())))
        );
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(&text).expect("deflate");
        let raw: Bytes = raw.finish().expect("deflate").into();
        assert_eq!(
            decode("Deflate", &raw, 1 << 20, false),
            Some(Ok(Bytes::from(text.clone())))
        );
        let mut br = Vec::new();
        brotli::BrotliCompress(&mut &text[..], &mut br, &Default::default()).expect("br");
        assert_eq!(
            decode("br", &br.into(), 1 << 20, false),
            Some(Ok(Bytes::from(text.clone())))
        );
        assert_eq!(
            decode("identity", &Bytes::from_static(b"x"), 10, false),
            None
        );
        assert_eq!(decode("zstd", &Bytes::from_static(b"x"), 10, false), None);
    }

    #[test]
    fn a_bomb_stops_at_the_limit_and_a_corrupt_body_says_so() {
        let bomb = gzip(&vec![0u8; 1 << 20]);
        assert!(bomb.len() < 4096);
        assert_eq!(
            decode("gzip", &bomb, 1000, false),
            Some(Err(DecodeError::TooLarge))
        );
        assert_eq!(
            decode("gzip", &bomb, 1000, true).map(|r| r.map(|b| b.len())),
            Some(Ok(1000))
        );
        assert!(matches!(
            decode("gzip", &Bytes::from_static(b"not gzip"), 1000, false),
            Some(Err(DecodeError::Corrupt(_)))
        ));
        // Two codings, undone in reverse order.
        let twice = gzip(&gzip(b"inner"));
        assert_eq!(
            decode("gzip, gzip", &twice, 100, false),
            Some(Ok(Bytes::from_static(b"inner")))
        );
    }
}
