//! Example downloader middleware: stamps every outgoing request with an
//! `X-Crawled-By` header, and asks for a retry when a server answers 429.
use spinneret_sdk::middleware::{Middleware, RequestAction, RequestHead, Response, ResponseAction};

struct StampHeaders;

impl Middleware for StampHeaders {
    fn process_request(mut request: RequestHead) -> Result<RequestAction, String> {
        request
            .headers
            .push(("X-Crawled-By".into(), "spinneret".into()));
        Ok(RequestAction::Proceed(request))
    }

    fn process_response(response: &Response) -> Result<ResponseAction, String> {
        if response.status() == 429 {
            return Ok(ResponseAction::Retry("429 Too Many Requests".into()));
        }
        Ok(ResponseAction::Proceed)
    }
}

spinneret_sdk::export_middleware!(StampHeaders);
