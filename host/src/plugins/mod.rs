//! The plugin runtime: WebAssembly components run sandboxed by wasmtime.
//!
//! - `bindings`: the one `bindgen!` site (one module per WIT world).
//! - `cache`: compiled components on disk, by content hash.
//! - `engine`: the wasmtime engine (epoch ticker) and linker.
//! - `host_api`: what guests import: log, count, random, links, resources.
//! - `loader`: bytes -> validated [`Plugin`] (world and version checked).
//! - `instance`: pooled instances, per-call limits, recycling.
//! - `registry`: plugins by name, swapped atomically; the directory watcher.
//! - `sleep`: guest sleeps cut at the call's deadline.

mod bindings;
mod cache;
mod calls;
mod engine;
mod host_api;
mod kind;
mod loader;
mod outputs;
mod plugin;
mod registry;
mod sleep;

pub use cache::Origin;
pub use engine::Runtime;
pub use host_api::Page;
pub use kind::{Kind, LoadError, SUPPORTED_VERSION};
pub use outputs::{
    CallError, ItemAction, MonitorAction, Output, RequestAction, ResponseAction, SpiderItem,
    SpiderRequest,
};
pub use plugin::Plugin;
pub use registry::{Registry, Watcher, FIRST_LOAD_WAIT};
