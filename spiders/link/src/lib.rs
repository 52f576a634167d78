//! The `link` spider (Scrapy Cluster's LinkSpider): yield the page, and
//! follow every link the crawl's filters allow while `depth < maxdepth`.
use spinneret_sdk::spider::{follow_all, Output, Response, Spider};

struct Link;

impl Spider for Link {
    fn parse(response: &Response) -> Result<Vec<Output>, String> {
        Ok(follow_all(response))
    }
}

spinneret_sdk::export_spider!(Link);
