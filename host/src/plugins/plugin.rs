//! A loaded plugin ([`Plugin`]: identity, pre-linked component) and calling
//! it: pooled instances, per-call limits (wall time by epoch,
//! optional fuel, a memory cap), and recycling after a trap, after
//! `recycle_calls` calls, or once memory passes `recycle_memory_mb`.
//!
//! Calls block: the crawl loop runs them on tokio's blocking pool. Each
//! kind's calls, typed in and out, are in `calls.rs`.

use super::bindings::{middleware, monitor, pipeline, spider, types};
use super::bindings::{
    middleware::DownloaderMiddlewarePre, monitor::MonitorPluginPre, pipeline::ItemPipelinePre,
    spider::SpiderPre,
};
use super::cache::Origin;
use super::engine::Runtime;
use super::engine::TICK;
use super::kind::{Kind, LoadError};
use super::outputs::CallError;
use super::store_data::StoreState;
use crate::config::Limits;
use crate::telemetry::Event;
use parking_lot::Mutex;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{Store, Trap};

/// Instances kept warm per plugin; more callers than this instantiate anew.
const POOL_MAX: usize = 64;

pub(super) enum Pre {
    Spider(SpiderPre<StoreState>),
    Middleware(DownloaderMiddlewarePre<StoreState>),
    Pipeline(ItemPipelinePre<StoreState>),
    Monitor(MonitorPluginPre<StoreState>),
}

/// A loaded, validated component, with its pool of ready instances.
pub struct Plugin {
    pub name: Arc<str>,
    pub kind: Kind,
    pub version: String,
    /// sha256 of the component bytes, hex.
    pub hash: String,
    /// Time to compile, or to map from the cache.
    pub compile_time: Duration,
    pub origin: Origin,
    pub(super) pre: Pre,
    pub(super) pool: Mutex<Vec<Instance>>,
    pub(super) limits: Limits,
    pub(super) runtime: Runtime,
    pub(super) instances: AtomicU64,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("hash", &self.hash)
            .finish()
    }
}

impl Plugin {
    pub fn short_hash(&self) -> &str {
        &self.hash[..12]
    }

    pub fn expect_kind(&self, wanted: Kind) -> Result<(), LoadError> {
        if self.kind == wanted {
            Ok(())
        } else {
            Err(LoadError::WrongKind {
                name: self.name.to_string(),
                found: self.kind,
                wanted,
            })
        }
    }
}

pub(super) struct Instance {
    store: Store<StoreState>,
    bound: Bound,
    calls: u64,
}

pub(super) enum Bound {
    Spider(spider::Spider),
    Middleware(middleware::DownloaderMiddleware),
    Pipeline(pipeline::ItemPipeline),
    Monitor(monitor::MonitorPlugin),
}

impl Plugin {
    fn instantiate(&self) -> Result<Instance, CallError> {
        let n = self.instances.fetch_add(1, Ordering::Relaxed);
        let settings = &self.runtime.settings;
        let seed = match settings.random_seed {
            0 => {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
                    ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            }
            s => s,
        };
        let state = StoreState::new(
            self.name.clone(),
            self.limits,
            seed,
            self.runtime.stats.clone(),
        );
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|s| &mut s.memory);
        // Wasmtime's own bound on what one call copies out of the guest (a
        // returned list, a `log` string): the host never holds more than
        // this of a call's output, whatever the guest built.
        store.set_hostcall_fuel(self.copy_limit());
        store.set_epoch_deadline(self.ticks());
        if settings.fuel_enabled() {
            let _ = store.set_fuel(self.fuel());
        }
        let err = |e: wasmtime::Error| CallError::Instantiate {
            plugin: self.name.to_string(),
            reason: format!("{e:#}"),
        };
        let bound = match &self.pre {
            Pre::Spider(p) => Bound::Spider(p.instantiate(&mut store).map_err(err)?),
            Pre::Middleware(p) => Bound::Middleware(p.instantiate(&mut store).map_err(err)?),
            Pre::Pipeline(p) => Bound::Pipeline(p.instantiate(&mut store).map_err(err)?),
            Pre::Monitor(p) => Bound::Monitor(p.instantiate(&mut store).map_err(err)?),
        };
        self.runtime
            .stats
            .emit(Event::PluginInstantiated { plugin: &self.name });
        Ok(Instance {
            store,
            bound,
            calls: 0,
        })
    }

    /// Hostcall fuel is roughly bytes, plus some per value: headroom over
    /// `max_output_bytes`, so the exact check after the call is the one
    /// that usually speaks.
    fn copy_limit(&self) -> usize {
        (self.limits.max_output_bytes as usize)
            .saturating_mul(2)
            .max(1 << 20)
    }

    fn ticks(&self) -> u64 {
        self.limits
            .call_timeout_ms
            .div_ceil(TICK.as_millis() as u64)
            .max(1)
    }

    fn fuel(&self) -> u64 {
        if self.limits.fuel == 0 {
            u64::MAX
        } else {
            self.limits.fuel
        }
    }

    /// Run `f` on a pooled instance with this plugin's limits. A failed call
    /// drops the instance, so the next call starts from a fresh one.
    pub(super) fn call<R>(
        &self,
        f: impl FnOnce(&mut Store<StoreState>, &Bound) -> Result<R, CallError>,
    ) -> Result<R, CallError> {
        let pooled = self.pool.lock().pop();
        let mut inst = match pooled {
            Some(i) => i,
            None => self.instantiate()?,
        };
        inst.store.set_epoch_deadline(self.ticks());
        if self.runtime.settings.fuel_enabled() {
            let _ = inst.store.set_fuel(self.fuel());
        }
        inst.store.data_mut().memory.denied = false;
        let limit = std::time::Duration::from_millis(self.limits.call_timeout_ms);
        inst.store.data_mut().budget.start(limit);
        let started = std::time::Instant::now();
        let result = f(&mut inst.store, &inst.bound)
            .and_then(|r| self.within_budget(inst.store.data()).map(|()| r));
        self.runtime.stats.emit(Event::PluginCall {
            plugin: &self.name,
            elapsed: started.elapsed(),
            failed: result.is_err(),
        });
        match result {
            Ok(r) => {
                inst.calls += 1;
                let mem = inst.store.data().memory.current as u64;
                if inst.calls >= self.limits.recycle_calls
                    || mem > self.limits.recycle_memory_mb << 20
                {
                    self.runtime
                        .stats
                        .emit(Event::PluginRecycled { plugin: &self.name });
                    tracing::debug!(plugin = %self.name, calls = inst.calls, memory = mem, "recycling instance");
                } else {
                    let mut pool = self.pool.lock();
                    if pool.len() < POOL_MAX {
                        pool.push(inst);
                    }
                }
                Ok(r)
            }
            Err(e) => {
                self.runtime
                    .stats
                    .emit(Event::PluginRecycled { plugin: &self.name });
                Err(e)
            }
        }
    }

    /// A call that returned may still have gone over: slept past its
    /// deadline, logged too much, made too many counters.
    fn within_budget(&self, state: &StoreState) -> Result<(), CallError> {
        let b = &state.budget;
        if b.overslept {
            return Err(CallError::Timeout {
                plugin: self.name.to_string(),
                ms: self.limits.call_timeout_ms,
            });
        }
        let max = self.limits.max_log_lines;
        let reason = match &b.over {
            Some(r) => r.clone(),
            None if b.lines.load(Ordering::Relaxed) > max => {
                format!("more than {max} log lines in one call (max_log_lines)")
            }
            None => return Ok(()),
        };
        Err(self.over(reason))
    }

    pub(super) fn over(&self, reason: String) -> CallError {
        CallError::Limit {
            plugin: self.name.to_string(),
            reason,
        }
    }

    pub(super) fn trap(&self, store: &Store<StoreState>, e: wasmtime::Error) -> CallError {
        let plugin = self.name.to_string();
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => CallError::Timeout {
                plugin,
                ms: self.limits.call_timeout_ms,
            },
            Some(Trap::OutOfFuel) => CallError::Fuel { plugin },
            _ if store.data().memory.denied => CallError::Memory {
                plugin,
                mb: self.limits.memory_mb,
            },
            _ if format!("{e:#}").contains("too much data is being copied") => self.over(format!(
                "too many outputs: more than {} bytes copied out of one call (max_output_bytes)",
                self.copy_limit()
            )),
            _ => CallError::Trap {
                plugin,
                reason: first_line(&format!("{e:#}")),
            },
        }
    }

    pub(super) fn wrong_kind(&self) -> CallError {
        CallError::WrongKind {
            plugin: self.name.to_string(),
            kind: self.kind.to_string(),
        }
    }
}

pub(super) fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.len() > 300 {
        format!("{}…", &line[..line.floor_char_boundary(300)])
    } else {
        line.to_string()
    }
}

impl Plugin {
    /// Check what one call returned against the per-call output caps.
    pub(super) fn check_output(&self, t: Tally) -> Result<(), CallError> {
        let l = &self.limits;
        let what = if t.items > l.max_items {
            format!(
                "{} items, the limit is {} (max_items)",
                t.items, l.max_items
            )
        } else if t.requests > l.max_requests {
            let (n, max) = (t.requests, l.max_requests);
            format!("{n} requests, the limit is {max} (max_requests)")
        } else if t.bytes > l.max_output_bytes {
            let (n, max) = (t.bytes, l.max_output_bytes);
            format!("{n} bytes of output, the limit is {max} (max_output_bytes)")
        } else {
            return Ok(());
        };
        Err(self.over(format!("too many outputs: {what}")))
    }
}

/// What one call returned, counted against the output caps.
#[derive(Default, Clone, Copy)]
pub(super) struct Tally {
    items: u64,
    requests: u64,
    bytes: u64,
}

pub(super) fn field_bytes(f: &types::Field) -> usize {
    f.name.len() + f.value.len()
}

pub(super) fn pairs_bytes(p: &[(String, String)]) -> usize {
    p.iter().map(|(k, v)| k.len() + v.len()).sum()
}

pub(super) fn head_bytes(h: &types::RequestHead) -> usize {
    h.url.len() + h.method.len() + pairs_bytes(&h.headers)
}

impl Tally {
    pub(super) fn bytes(bytes: usize) -> Tally {
        Tally {
            bytes: bytes as u64,
            ..Tally::default()
        }
    }
    pub(super) fn item(bytes: usize) -> Tally {
        Tally {
            items: 1,
            ..Tally::bytes(bytes)
        }
    }
    pub(super) fn request(bytes: usize) -> Tally {
        Tally {
            requests: 1,
            ..Tally::bytes(bytes)
        }
    }
    /// `n` data records of `bytes` in all (`response.emit`): items.
    pub(super) fn records(n: usize, bytes: u64) -> Tally {
        Tally {
            items: n as u64,
            requests: 0,
            bytes,
        }
    }
    pub(super) fn of_output(o: &types::Output) -> Tally {
        match o {
            types::Output::Request(r) => Tally::request(
                r.url.len()
                    + r.method.as_ref().map_or(0, String::len)
                    + r.spiderid.as_ref().map_or(0, String::len)
                    + pairs_bytes(&r.headers)
                    + r.body.as_ref().map_or(0, Vec::len)
                    + r.meta.iter().map(field_bytes).sum::<usize>(),
            ),
            types::Output::Item(i) => Tally::item(
                i.links
                    .iter()
                    .map(|l| l.url.len() + l.text.len())
                    .sum::<usize>()
                    + i.fields.iter().map(field_bytes).sum::<usize>(),
            ),
        }
    }
}

impl std::ops::Add for Tally {
    type Output = Tally;
    fn add(self, b: Tally) -> Tally {
        Tally {
            items: self.items + b.items,
            requests: self.requests + b.requests,
            bytes: self.bytes + b.bytes,
        }
    }
}

impl std::iter::Sum for Tally {
    fn sum<I: Iterator<Item = Tally>>(iter: I) -> Tally {
        iter.fold(Tally::default(), |a, b| a + b)
    }
}
