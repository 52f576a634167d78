//! A response read into a [`Fetched`]: its head, the body bounded by
//! `max_body_bytes` (or cut at `truncate_at`) and the byte budget, then
//! decoded with the bytes as sent kept.

use super::{decode, Encoded, FetchError, Fetched, Fetcher, Hop, Outgoing};
use bytes::{Bytes, BytesMut};
use std::time::Instant;

impl Fetcher {
    pub(super) async fn read(
        &self,
        mut resp: reqwest::Response,
        out: &Outgoing<'_>,
        started: Instant,
        redirect: Option<Result<Hop, FetchError>>,
    ) -> Result<Fetched, FetchError> {
        let status = resp.status();
        let mut headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let response_url = resp.url().to_string();
        let version = version_name(resp.version());
        let mut body = self.body(&mut resp, out).await?;
        let encoded = self.decoded(&mut headers, &mut body, out, status.as_u16())?;
        Ok(Fetched {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("").to_string(),
            response_url,
            request_headers: out.headers.to_vec(),
            headers,
            body,
            elapsed: started.elapsed(),
            redirect,
            rendered: false,
            encoded,
            version,
            archived: None,
        })
    }

    /// The body as sent, refused past `max_body_bytes` or the budget (cut
    /// at `truncate_at` instead, when the request has one).
    async fn body(
        &self,
        resp: &mut reqwest::Response,
        out: &Outgoing<'_>,
    ) -> Result<Bytes, FetchError> {
        let status = resp.status();
        let limit = out.truncate_at.unwrap_or(self.max_body);
        let declared = resp.content_length().map_or(0, |n| n as usize);
        if out.truncate_at.is_none() && declared > self.max_body {
            return Err(FetchError::TooLarge {
                limit: self.max_body,
                status: status.as_u16(),
            });
        }
        // A declared length is taken from the budget whole, up front: bodies
        // read side by side must not each take a part and none finish.
        let mut reserved = 0;
        if let Some(b) = out.budget {
            if !b.take(declared) {
                return Err(FetchError::TooLarge {
                    limit: b.total,
                    status: status.as_u16(),
                });
            }
            reserved = declared;
        }
        let expected = resp.content_length().unwrap_or(16 * 1024) as usize;
        let mut body = BytesMut::with_capacity(expected.min(limit));
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.classify(e))? {
            if out.truncate_at.is_some() && body.len() + chunk.len() >= limit {
                body.extend_from_slice(&chunk[..limit - body.len()]);
                break;
            }
            if body.len() + chunk.len() > self.max_body {
                return Err(FetchError::TooLarge {
                    limit: self.max_body,
                    status: status.as_u16(),
                });
            }
            let covered = chunk.len().min(reserved);
            reserved -= covered;
            if out.budget.is_some_and(|b| !b.take(chunk.len() - covered)) {
                return Err(FetchError::TooLarge {
                    limit: out.budget.map_or(0, |b| b.total),
                    status: status.as_u16(),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// Decode a content-encoded `body` in place, bounded like a body read
    /// (`max_body_bytes`, or cut at `truncate_at`), and hand back the bytes
    /// as sent with the headers that describe them. A coding we do not
    /// read leaves the body as sent; a corrupt one too, as browsers show it.
    fn decoded(
        &self,
        headers: &mut Vec<(String, String)>,
        body: &mut Bytes,
        out: &Outgoing<'_>,
        status: u16,
    ) -> Result<Option<Encoded>, FetchError> {
        let Some(coding) = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-encoding"))
            .map(|(_, v)| v.clone())
        else {
            return Ok(None);
        };
        let limit = out.truncate_at.unwrap_or(self.max_body);
        let plain = match decode::decode(&coding, body, limit, out.truncate_at.is_some()) {
            None | Some(Err(decode::DecodeError::Corrupt(_))) => return Ok(None),
            Some(Err(decode::DecodeError::TooLarge)) => {
                return Err(FetchError::TooLarge {
                    limit: self.max_body,
                    status,
                })
            }
            Some(Ok(plain)) => plain,
        };
        let mut content_length = None;
        headers.retain(|(k, v)| {
            if k.eq_ignore_ascii_case("content-length") {
                content_length = Some(v.clone());
                return false;
            }
            !k.eq_ignore_ascii_case("content-encoding")
        });
        Ok(Some(Encoded {
            body: std::mem::replace(body, plain),
            content_encoding: coding,
            content_length,
        }))
    }
}

/// The HTTP version as a status line writes it.
fn version_name(v: reqwest::Version) -> &'static str {
    match v {
        reqwest::Version::HTTP_09 => "HTTP/0.9",
        reqwest::Version::HTTP_10 => "HTTP/1.0",
        reqwest::Version::HTTP_2 => "HTTP/2",
        reqwest::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}
