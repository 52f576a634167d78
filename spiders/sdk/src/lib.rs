//! Spinneret's guest SDK: one trait per plugin kind and an export macro.
//!
//! ```ignore
//! use spinneret_sdk::spider::{Response, Output, Spider};
//! struct Mine;
//! impl Spider for Mine {
//!     fn parse(response: &Response) -> Result<Vec<Output>, String> {
//!         Ok(vec![Output::Item(spinneret_sdk::spider::page())])
//!     }
//! }
//! spinneret_sdk::export_spider!(Mine);
//! ```
//!
//! Each plugin kind is a cargo feature (`spider`, `middleware`, `pipeline`,
//! `monitor`),
//! so a guest embeds the one world it implements and nothing else.

/// `s` as a JSON string literal, for item fields and meta values.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What a [`css`](spider::Response::css) query picks from each element it
/// matches: Scrapy's (parsel's) pseudo-elements, at the query's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// No pseudo-element: the element's outer HTML.
    Html,
    /// `::text`: its own text nodes.
    Text,
    /// `::attr(name)`: that attribute's value.
    Attr(String),
}

/// A query split into its CSS selector and what to pick:
/// `"h2 a::attr(href)"` is `("h2 a", Pick::Attr("href"))`.
pub fn split_query(query: &str) -> (&str, Pick) {
    let q = query.trim_end();
    if let Some(css) = q.strip_suffix("::text") {
        return (css, Pick::Text);
    }
    if let Some((css, rest)) = q.rsplit_once("::attr(") {
        if let Some(name) = rest.strip_suffix(')') {
            return (css, Pick::Attr(name.trim().to_string()));
        }
    }
    (q, Pick::Html)
}

/// The strings a `css` query picked, in document order (parsel's
/// `SelectorList` after `::text`, `::attr()` or as HTML).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selected(pub Vec<String>);

impl Selected {
    /// The first, if any (parsel's `.get()`).
    pub fn get(&self) -> Option<&str> {
        self.0.first().map(String::as_str)
    }

    /// All of them (parsel's `.getall()`).
    pub fn getall(self) -> Vec<String> {
        self.0
    }
}

/// CSS selectors on a response (WIT 0.1.1): the host parses the page.
#[cfg(any(feature = "spider", feature = "middleware"))]
macro_rules! selectors {
    () => {
        pub use self::spinneret::plugin::types::Element;

        impl Response {
            /// The strings a CSS query picks, as parsel's
            /// `response.css(query)`: each match's outer HTML, or with
            /// `::text` its own text nodes, with `::attr(name)` that
            /// attribute. `response.select(css)` gives the elements whole.
            pub fn css(&self, query: &str) -> Result<crate::Selected, String> {
                let (css, pick) = crate::split_query(query);
                let picked = self.select(css)?.into_iter().flat_map(|e| match &pick {
                    crate::Pick::Html => vec![e.html],
                    crate::Pick::Text => e.texts,
                    crate::Pick::Attr(name) => e
                        .attrs
                        .into_iter()
                        .filter(|(k, _)| k == name)
                        .map(|(_, v)| v)
                        .collect(),
                });
                Ok(crate::Selected(picked.collect()))
            }
        }
    };
}

/// Helpers shared by every world's copy of the `types` interface.
macro_rules! helpers {
    () => {
        pub use self::spinneret::plugin::host::{self, Level};
        pub use self::spinneret::plugin::types::{Field, Item, Link, Request};

        impl Request {
            /// A GET of `url` with the contract's defaults (parent's priority
            /// minus 10, same spider, crawl's headers).
            pub fn get(url: impl Into<String>) -> Self {
                Request {
                    url: url.into(),
                    priority: None,
                    spiderid: None,
                    method: None,
                    headers: Vec::new(),
                    body: None,
                    meta: Vec::new(),
                    dont_filter: false,
                }
            }

            /// Attach a meta value (JSON text) that the child's response returns.
            pub fn with_meta(mut self, name: &str, json: impl Into<String>) -> Self {
                self.meta.push(Field {
                    name: name.to_string(),
                    value: json.into(),
                });
                self
            }

            /// Mark this request as the page's step of a walk (meta
            /// `walk: true`): a spider that follows one link per page is
            /// bounded by `crawl.max_walk_steps` instead of `maxdepth`.
            pub fn walk(self) -> Self {
                self.with_meta("walk", "true")
            }
        }

        impl Item {
            /// The page's own crawl result, with the links it followed.
            pub fn page(links: Vec<Link>) -> Self {
                Item {
                    links,
                    fields: Vec::new(),
                }
            }

            /// Add or replace a field of the result (value is JSON text).
            pub fn with_field(mut self, name: &str, json: impl Into<String>) -> Self {
                self.fields.push(Field {
                    name: name.to_string(),
                    value: json.into(),
                });
                self
            }
        }

        /// Log through the host, tagged with this plugin's name.
        pub fn log(level: Level, message: &str) {
            host::log(level, message)
        }
    };
}

/// Spiders: parse a response into items and requests.
#[cfg(feature = "spider")]
pub mod spider {
    wit_bindgen::generate!({
        world: "spider",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_spider_world",
        default_bindings_module: "spinneret_sdk::spider",
    });
    helpers!();
    selectors!();
    pub use self::spinneret::plugin::types::{Output, Response};

    /// A data record drawn from a page, sent apart from the page's result
    /// (on `<prefix>.items`) by [`Response::emit_record`]:
    /// `Record::new().text("name", name).json("price", "12.5")`.
    #[derive(Debug, Clone, Default)]
    pub struct Record(pub Vec<Field>);

    impl Record {
        pub fn new() -> Self {
            Record::default()
        }

        /// Add a field whose value is JSON text.
        pub fn json(mut self, name: &str, json: impl Into<String>) -> Self {
            self.0.push(Field {
                name: name.to_string(),
                value: json.into(),
            });
            self
        }

        /// Add a string field.
        pub fn text(self, name: &str, value: &str) -> Self {
            self.json(name, crate::json_string(value))
        }
    }

    impl Response {
        /// Send a data record (WIT `response.emit`); an error past the
        /// call's caps or for a field that is not JSON.
        pub fn emit_record(&self, record: Record) -> Result<(), String> {
            self.emit(&record.0)
        }
    }

    /// A spider, like a Scrapy spider's `parse` callback.
    pub trait Spider {
        fn parse(response: &Response) -> Result<Vec<Output>, String>;
    }

    /// The link spider's rule: the page as an item, plus a request for every
    /// link the crawl's filters allow while `depth < maxdepth`.
    pub fn follow_all(response: &Response) -> Vec<Output> {
        if response.depth() >= response.maxdepth() {
            return vec![Output::Item(Item::page(Vec::new()))];
        }
        let links = response.links();
        let mut out = Vec::with_capacity(links.len() + 1);
        out.extend(
            links
                .iter()
                .map(|l| Output::Request(Request::get(l.url.clone()))),
        );
        out.push(Output::Item(Item::page(links)));
        out
    }
}

/// Export a type implementing [`spider::Spider`] as this component's spider.
#[cfg(feature = "spider")]
#[macro_export]
macro_rules! export_spider {
    ($ty:ty) => {
        struct __SpinneretSpider;
        impl $crate::spider::exports::spinneret::plugin::parser::Guest for __SpinneretSpider {
            fn parse(
                response: &$crate::spider::Response,
            ) -> ::core::result::Result<::std::vec::Vec<$crate::spider::Output>, ::std::string::String>
            {
                <$ty as $crate::spider::Spider>::parse(response)
            }
        }
        $crate::spider::export_spider_world!(__SpinneretSpider with_types_in $crate::spider);
    };
}

/// Downloader middlewares: see requests before the fetch, responses after.
#[cfg(feature = "middleware")]
pub mod middleware {
    wit_bindgen::generate!({
        world: "downloader-middleware",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_middleware_world",
        default_bindings_module: "spinneret_sdk::middleware",
    });
    helpers!();
    selectors!();
    pub use self::exports::spinneret::plugin::middleware::{RequestAction, ResponseAction};
    pub use self::spinneret::plugin::types::{RequestHead, Response};

    /// A downloader middleware. Both hooks default to passing things through.
    pub trait Middleware {
        fn process_request(request: RequestHead) -> Result<RequestAction, String> {
            Ok(RequestAction::Proceed(request))
        }
        fn process_response(_response: &Response) -> Result<ResponseAction, String> {
            Ok(ResponseAction::Proceed)
        }
    }
}

/// Export a type implementing [`middleware::Middleware`].
#[cfg(feature = "middleware")]
#[macro_export]
macro_rules! export_middleware {
    ($ty:ty) => {
        struct __SpinneretMiddleware;
        impl $crate::middleware::exports::spinneret::plugin::middleware::Guest
            for __SpinneretMiddleware
        {
            fn process_request(
                request: $crate::middleware::RequestHead,
            ) -> ::core::result::Result<$crate::middleware::RequestAction, ::std::string::String>
            {
                <$ty as $crate::middleware::Middleware>::process_request(request)
            }
            fn process_response(
                response: &$crate::middleware::Response,
            ) -> ::core::result::Result<$crate::middleware::ResponseAction, ::std::string::String>
            {
                <$ty as $crate::middleware::Middleware>::process_response(response)
            }
        }
        $crate::middleware::export_middleware_world!(
            __SpinneretMiddleware with_types_in $crate::middleware
        );
    };
}

/// Item pipelines: see every crawl result before it is published.
#[cfg(feature = "pipeline")]
pub mod pipeline {
    wit_bindgen::generate!({
        world: "item-pipeline",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_pipeline_world",
        default_bindings_module: "spinneret_sdk::pipeline",
    });
    helpers!();
    pub use self::exports::spinneret::plugin::pipeline::ItemAction;
    pub use self::spinneret::plugin::types::CrawlResult;

    /// An item pipeline stage.
    pub trait Pipeline {
        fn process_item(item: &CrawlResult) -> Result<ItemAction, String>;
    }
}

/// Export a type implementing [`pipeline::Pipeline`].
#[cfg(feature = "pipeline")]
#[macro_export]
macro_rules! export_pipeline {
    ($ty:ty) => {
        struct __SpinneretPipeline;
        impl $crate::pipeline::exports::spinneret::plugin::pipeline::Guest for __SpinneretPipeline {
            fn process_item(
                item: &$crate::pipeline::CrawlResult,
            ) -> ::core::result::Result<$crate::pipeline::ItemAction, ::std::string::String> {
                <$ty as $crate::pipeline::Pipeline>::process_item(item)
            }
        }
        $crate::pipeline::export_pipeline_world!(__SpinneretPipeline with_types_in $crate::pipeline);
    };
}

/// Monitor plugins: a request kind of your own on the incoming topic.
#[cfg(feature = "monitor")]
pub mod monitor {
    wit_bindgen::generate!({
        world: "monitor-plugin",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_monitor_world",
        default_bindings_module: "spinneret_sdk::monitor",
    });
    helpers!();
    pub use self::exports::spinneret::plugin::monitor::{Action, Schema};

    /// A request kind: its fields, and what a message of it becomes.
    pub trait Monitor {
        fn describe() -> Schema;
        /// `request` is the message, a JSON object.
        fn handle(request: String) -> Result<Vec<Action>, String>;
    }
}

/// Export a type implementing [`monitor::Monitor`].
#[cfg(feature = "monitor")]
#[macro_export]
macro_rules! export_monitor {
    ($ty:ty) => {
        struct __SpinneretMonitor;
        impl $crate::monitor::exports::spinneret::plugin::monitor::Guest for __SpinneretMonitor {
            fn describe() -> $crate::monitor::Schema {
                <$ty as $crate::monitor::Monitor>::describe()
            }
            fn handle(
                request: ::std::string::String,
            ) -> ::core::result::Result<::std::vec::Vec<$crate::monitor::Action>, ::std::string::String>
            {
                <$ty as $crate::monitor::Monitor>::handle(request)
            }
        }
        $crate::monitor::export_monitor_world!(__SpinneretMonitor with_types_in $crate::monitor);
    };
}
