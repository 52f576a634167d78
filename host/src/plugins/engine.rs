//! The wasmtime engine and linker, shared by every plugin.
//!
//! Compiled code is cached on disk by content hash ([`CodeCache`]), so a
//! restart or a re-load of a known component skips Cranelift. A ticker
//! thread advances the epoch every [`TICK`]; a call's wall-time limit is a
//! number of ticks.

use super::bindings::spider::Spider;
use super::cache::CodeCache;
use super::store_data::StoreState;
use crate::config::Plugins as Settings;
use crate::telemetry::Stats;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine};

/// Epoch granularity: call timeouts are rounded up to this.
pub const TICK: Duration = Duration::from_millis(10);

/// Engine, linker and settings: cheap to clone, shared by all plugins.
#[derive(Clone)]
pub struct Runtime {
    pub(super) engine: Engine,
    pub(super) linker: Arc<Linker<StoreState>>,
    pub(super) cache: CodeCache,
    pub(super) settings: Arc<Settings>,
    pub(super) stats: Arc<Stats>,
}

impl Runtime {
    pub fn new(settings: &Settings, stats: Arc<Stats>) -> anyhow::Result<Runtime> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.consume_fuel(settings.fuel_enabled());
        config.parallel_compilation(true);
        let cache = CodeCache::attach(&mut config, settings.cache_dir().join("wasmtime"));
        let engine = Engine::new(&config)?;
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })?;

        let mut linker = Linker::<StoreState>::new(&engine);
        add_wasi(&mut linker)?;
        Spider::add_to_linker::<StoreState, HasSelf<StoreState>>(&mut linker, |s| s)?;
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
            cache,
            settings: Arc::new(settings.clone()),
            stats,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

/// All of WASI 0.2, with nothing granted (ADR 0002): guests' runtimes
/// (CPython, SpiderMonkey, Rust's std) import filesystem and sockets, so the
/// interfaces are linked, but the context has no preopened directory, no
/// environment, no arguments, and TCP, UDP and name lookup are refused.
/// stdout and stderr go to the host log. Sleeps end at the call's
/// deadline (ADR 0005).
fn add_wasi(l: &mut Linker<StoreState>) -> anyhow::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(l).map_err(|e| anyhow::anyhow!("{e:#}"))?;
    super::sleep::bound_sleeps(l).map_err(|e| anyhow::anyhow!("{e:#}"))
}
