//! A loaded plugin ([`Plugin`]: identity, pre-linked component) and calling
//! it: pooled instances, per-call limits (wall time by epoch,
//! optional fuel, a memory cap), and recycling after a trap, after
//! `recycle_calls` calls, or once memory passes `recycle_memory_mb`.
//!
//! Calls block: the crawl loop runs them on tokio's blocking pool.

use super::bindings::{middleware, monitor, pipeline, spider, types};
use super::bindings::{
    middleware::DownloaderMiddlewarePre, monitor::MonitorPluginPre, pipeline::ItemPipelinePre,
    spider::SpiderPre,
};
use super::cache::Origin;
use super::engine::Runtime;
use super::engine::TICK;
use super::host_api::{CrawlResultRes, Page, ResponseRes, StoreState};
use super::kind::{Kind, LoadError};
use super::outputs::{
    CallError, ItemAction, MonitorAction, Output, RequestAction, ResponseAction, SpiderItem,
    SpiderRequest,
};
use crate::config::Limits;
use crate::result::CrawlResult;
use crate::telemetry::Event;
use parking_lot::Mutex;
use serde_json::Value;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::Resource;
use wasmtime::{Store, Trap};

/// Instances kept warm per plugin; more callers than this instantiate anew.
const POOL_MAX: usize = 64;

pub(super) enum Pre {
    Spider(SpiderPre<super::host_api::StoreState>),
    Middleware(DownloaderMiddlewarePre<super::host_api::StoreState>),
    Pipeline(ItemPipelinePre<super::host_api::StoreState>),
    Monitor(MonitorPluginPre<super::host_api::StoreState>),
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

enum Bound {
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
    fn call<R>(
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

    fn over(&self, reason: String) -> CallError {
        CallError::Limit {
            plugin: self.name.to_string(),
            reason,
        }
    }

    /// Check what one call returned against the per-call output caps.
    fn check_output(&self, t: Tally) -> Result<(), CallError> {
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

    fn trap(&self, store: &Store<StoreState>, e: wasmtime::Error) -> CallError {
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

    fn wrong_kind(&self) -> CallError {
        CallError::WrongKind {
            plugin: self.name.to_string(),
            kind: self.kind.to_string(),
        }
    }

    /// Spider: parse a page.
    pub fn parse(&self, page: Page) -> Result<Vec<Output>, CallError> {
        self.call(|store, bound| {
            let Bound::Spider(s) = bound else {
                return Err(self.wrong_kind());
            };
            let out = self.with_resource(store, ResponseRes::new(page), |store, r| {
                s.spinneret_plugin_parser().call_parse(store, r)
            })?;
            let out = self.outcome(store, out)?;
            self.check_output(out.iter().map(Tally::of_output).sum())?;
            out.into_iter().map(|o| self.convert_output(o)).collect()
        })
    }

    /// Middleware: see a request before it is fetched.
    pub fn process_request(
        &self,
        url: String,
        method: String,
        headers: Vec<(String, String)>,
    ) -> Result<RequestAction, CallError> {
        use middleware::exports::spinneret::plugin::middleware::RequestAction as W;
        self.call(|store, bound| {
            let Bound::Middleware(m) = bound else {
                return Err(self.wrong_kind());
            };
            let head = types::RequestHead {
                url,
                method,
                headers,
            };
            let out = m
                .spinneret_plugin_middleware()
                .call_process_request(&mut *store, &head);
            let out = self.outcome(store, out)?;
            if let W::Proceed(h) = &out {
                self.check_output(Tally::bytes(head_bytes(h)))?;
            }
            Ok(match out {
                W::Proceed(h) => RequestAction::Proceed {
                    url: h.url,
                    method: h.method,
                    headers: h.headers,
                },
                W::Drop(reason) => RequestAction::Drop(reason),
            })
        })
    }

    /// Middleware: see a response before the spider does.
    pub fn process_response(&self, page: Page) -> Result<ResponseAction, CallError> {
        use middleware::exports::spinneret::plugin::middleware::ResponseAction as W;
        self.call(|store, bound| {
            let Bound::Middleware(m) = bound else {
                return Err(self.wrong_kind());
            };
            let out = self.with_resource(store, ResponseRes::new(page), |store, r| {
                m.spinneret_plugin_middleware()
                    .call_process_response(store, r)
            })?;
            Ok(match self.outcome(store, out)? {
                W::Proceed => ResponseAction::Proceed,
                W::Retry(r) => ResponseAction::Retry(r),
                W::Drop(r) => ResponseAction::Drop(r),
            })
        })
    }

    /// Pipeline: see a crawl result before it is published; `base64_body`
    /// is how the sinks write its body (`kafka.base64_body`), so a
    /// pipeline reads the fields a client gets.
    pub fn process_item(
        &self,
        result: Arc<CrawlResult>,
        base64_body: bool,
    ) -> Result<ItemAction, CallError> {
        use pipeline::exports::spinneret::plugin::pipeline::ItemAction as W;
        self.call(|store, bound| {
            let Bound::Pipeline(p) = bound else {
                return Err(self.wrong_kind());
            };
            let res = CrawlResultRes {
                result,
                base64_body,
            };
            let out = self.with_resource(store, res, |store, r| {
                p.spinneret_plugin_pipeline().call_process_item(store, r)
            })?;
            let out = self.outcome(store, out)?;
            if let W::Keep(fields) = &out {
                self.check_output(Tally::bytes(fields.iter().map(field_bytes).sum()))?;
            }
            Ok(match out {
                W::Keep(fields) => ItemAction::Keep(
                    fields
                        .into_iter()
                        .map(|f| Ok((f.name.clone(), self.json(&f.name, &f.value)?)))
                        .collect::<Result<_, _>>()?,
                ),
                W::Drop(r) => ItemAction::Drop(r),
            })
        })
    }

    /// Monitor plugin: its schema (required, optional field names).
    pub fn describe(&self) -> Result<(Vec<String>, Vec<String>), CallError> {
        self.call(|store, bound| {
            let Bound::Monitor(m) = bound else {
                return Err(self.wrong_kind());
            };
            let s = m
                .spinneret_plugin_monitor()
                .call_describe(&mut *store)
                .map_err(|e| self.trap(store, e))?;
            Ok((s.required, s.optional))
        })
    }

    /// Monitor plugin: handle one message of its kind.
    pub fn handle(&self, request: &String) -> Result<Vec<MonitorAction>, CallError> {
        use monitor::exports::spinneret::plugin::monitor::Action as W;
        self.call(|store, bound| {
            let Bound::Monitor(m) = bound else {
                return Err(self.wrong_kind());
            };
            let out = m
                .spinneret_plugin_monitor()
                .call_handle(&mut *store, request);
            let out = self.outcome(store, out)?;
            self.check_output(
                out.iter()
                    .map(|a| match a {
                        W::Crawl(j) => Tally::request(j.len()),
                        W::Reply(j) => Tally::item(j.len()),
                    })
                    .sum(),
            )?;
            Ok(out
                .into_iter()
                .map(|a| match a {
                    W::Crawl(j) => MonitorAction::Crawl(j),
                    W::Reply(j) => MonitorAction::Reply(j),
                })
                .collect())
        })
    }

    /// Lend `value` to the guest as a borrowed resource for one call.
    fn with_resource<V: Send + 'static, R>(
        &self,
        store: &mut Store<StoreState>,
        value: V,
        call: impl FnOnce(&mut Store<StoreState>, Resource<V>) -> R,
    ) -> Result<R, CallError> {
        let owned = store
            .data_mut()
            .table
            .push(value)
            .map_err(|e| self.host_err(e))?;
        let out = call(store, Resource::new_borrow(owned.rep()));
        let _ = store.data_mut().table.delete(owned);
        Ok(out)
    }

    /// A guest call's outcome: its `err` and traps become [`CallError`]s.
    fn outcome<T>(
        &self,
        store: &Store<StoreState>,
        out: wasmtime::Result<Result<T, String>>,
    ) -> Result<T, CallError> {
        match out {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(reason)) => Err(CallError::Guest {
                plugin: self.name.to_string(),
                reason,
            }),
            Err(e) => Err(self.trap(store, e)),
        }
    }

    fn host_err(&self, e: impl std::fmt::Display) -> CallError {
        CallError::Trap {
            plugin: self.name.to_string(),
            reason: format!("host resource table: {e}"),
        }
    }

    fn json(&self, name: &str, text: &str) -> Result<Value, CallError> {
        serde_json::from_str(text).map_err(|e| CallError::BadOutput {
            plugin: self.name.to_string(),
            reason: format!("`{name}` is not JSON ({e}): {}", first_line(text)),
        })
    }

    fn convert_output(&self, o: types::Output) -> Result<Output, CallError> {
        Ok(match o {
            types::Output::Request(r) => {
                for f in &r.meta {
                    self.json(&f.name, &f.value)?;
                }
                Output::Request(SpiderRequest {
                    url: r.url,
                    priority: r.priority,
                    spiderid: r.spiderid,
                    method: r.method,
                    headers: r.headers,
                    body: r.body,
                    meta: r.meta.into_iter().map(|f| (f.name, f.value)).collect(),
                    dont_filter: r.dont_filter,
                })
            }
            types::Output::Item(i) => Output::Item(SpiderItem {
                links: i.links.into_iter().map(|l| (l.url, l.text)).collect(),
                fields: i
                    .fields
                    .into_iter()
                    .map(|f| Ok((f.name.clone(), self.json(&f.name, &f.value)?)))
                    .collect::<Result<_, _>>()?,
            }),
        })
    }
}

/// What one call returned, counted against the output caps.
#[derive(Default, Clone, Copy)]
struct Tally {
    items: u64,
    requests: u64,
    bytes: u64,
}

impl Tally {
    fn bytes(bytes: usize) -> Tally {
        Tally {
            bytes: bytes as u64,
            ..Tally::default()
        }
    }
    fn item(bytes: usize) -> Tally {
        Tally {
            items: 1,
            ..Tally::bytes(bytes)
        }
    }
    fn request(bytes: usize) -> Tally {
        Tally {
            requests: 1,
            ..Tally::bytes(bytes)
        }
    }
    fn of_output(o: &types::Output) -> Tally {
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

impl std::iter::Sum for Tally {
    fn sum<I: Iterator<Item = Tally>>(iter: I) -> Tally {
        iter.fold(Tally::default(), |a, b| Tally {
            items: a.items + b.items,
            requests: a.requests + b.requests,
            bytes: a.bytes + b.bytes,
        })
    }
}

fn field_bytes(f: &types::Field) -> usize {
    f.name.len() + f.value.len()
}

fn pairs_bytes(p: &[(String, String)]) -> usize {
    p.iter().map(|(k, v)| k.len() + v.len()).sum()
}

fn head_bytes(h: &types::RequestHead) -> usize {
    h.url.len() + h.method.len() + pairs_bytes(&h.headers)
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.len() > 300 {
        let mut end = 300;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &line[..end])
    } else {
        line.to_string()
    }
}
