//! The plugin runtime: WebAssembly components run sandboxed by wasmtime.
//!
//! - `bindings`: the one `bindgen!` site (one module per WIT world).
//! - `cache`: compiled components on disk, by content hash.
//! - `engine`: the wasmtime engine (epoch ticker) and linker.
//! - `calls`: each kind's calls into a guest, and the caps on its output.
//! - `host_api`: what guests import: log, count, random, links, and the
//!   calls on resources.
//! - `kind`: the plugin kinds (worlds) and the WIT version loaded.
//! - `loader`: bytes -> validated [`Plugin`] (world and version checked).
//! - `outputs`: what a call returns, checked.
//! - `plugin`: a loaded [`Plugin`], its pool of instances, one call's frame.
//! - `registry`: plugins by name, swapped atomically; the directory watcher.
//! - `resources`: the host side of the page and result guests hold.
//! - `sleep`: guest sleeps cut at the call's deadline.
//! - `store_data`: what one instance's store holds (WASI, memory cap,
//!   the call's budget).

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
mod resources;
mod sleep;
mod store_data;

pub use cache::Origin;
pub use engine::Runtime;
pub use kind::{Kind, LoadError, SUPPORTED_VERSION};
pub use outputs::{
    CallError, ItemAction, MonitorAction, Output, RequestAction, ResponseAction, SpiderItem,
    SpiderRequest,
};
pub use plugin::Plugin;
pub use registry::{Registry, Watcher, FIRST_LOAD_WAIT};
pub use resources::Page;
