//! The gate every request passes before its route: the bearer token, and
//! the body read whole within `rest.body_timeout`.

use super::fail;
use super::Gateway;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// Bearer-token check (when `rest.token` is set); health and metrics stay
/// open for load balancers and scrapers. The token is compared in constant
/// time, and taken from `?token=` only for the status page (a browser
/// opening a link sends no header; anywhere else a token in a URL ends up
/// in proxy logs).
pub(super) async fn guard(State(gw): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    let token = &gw.settings.rest.token;
    let open = matches!(req.uri().path(), "/" | "/metrics");
    if !token.is_empty() && !open {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string)
            .or_else(|| {
                (req.uri().path() == "/ui")
                    .then(|| req.uri().query())
                    .flatten()
                    .and_then(|q| {
                        q.split('&')
                            .find_map(|kv| kv.strip_prefix("token=").map(str::to_string))
                    })
            });
        if !given.is_some_and(|g| same_secret(g.as_bytes(), token.as_bytes())) {
            return fail(
                StatusCode::UNAUTHORIZED,
                "A valid bearer token is required.",
                None,
            );
        }
    }
    // The body is read here, whole and in time: a client that drips it
    // cannot hold a connection slot past `rest.body_timeout`.
    let (parts, body) = req.into_parts();
    let within = gw.settings.rest.body_timeout;
    let bytes = match tokio::time::timeout(within, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            return fail(
                StatusCode::PAYLOAD_TOO_LARGE,
                "The request body is over 2 MiB, or was cut off.",
                None,
            )
        }
        Err(_) => {
            let mut r = fail(
                StatusCode::REQUEST_TIMEOUT,
                "The request body did not arrive within rest.body_timeout.",
                None,
            );
            r.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            return r;
        }
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// The largest request body the gateway reads (axum's own default limit).
const MAX_BODY: usize = 2 * 1024 * 1024;

/// Equal, in time that does not depend on where they differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}
