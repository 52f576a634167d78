//! Host bindings for every world of `wit/` (the one `bindgen!` site). The
//! worlds share the `types` and `host` interfaces, generated once.

pub mod spider {
    wasmtime::component::bindgen!({
        world: "spider",
        path: "../wit",
        with: {
            "spinneret:plugin/types.response": crate::plugins::resources::ResponseRes,
            "spinneret:plugin/types.crawl-result": crate::plugins::resources::CrawlResultRes,
        },
    });
}

pub mod middleware {
    wasmtime::component::bindgen!({
        world: "downloader-middleware",
        path: "../wit",
        with: {
            "spinneret:plugin/types": super::spider::spinneret::plugin::types,
            "spinneret:plugin/host": super::spider::spinneret::plugin::host,
        },
    });
}

pub mod pipeline {
    wasmtime::component::bindgen!({
        world: "item-pipeline",
        path: "../wit",
        with: {
            "spinneret:plugin/types": super::spider::spinneret::plugin::types,
            "spinneret:plugin/host": super::spider::spinneret::plugin::host,
        },
    });
}

pub mod monitor {
    wasmtime::component::bindgen!({
        world: "monitor-plugin",
        path: "../wit",
        with: {
            "spinneret:plugin/types": super::spider::spinneret::plugin::types,
            "spinneret:plugin/host": super::spider::spinneret::plugin::host,
        },
    });
}

pub use spider::spinneret::plugin::{host, types};
