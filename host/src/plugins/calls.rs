//! The calls each plugin kind exports (`parse`, `process-request`,
//! `process-response`, `process-item`, `describe`, `handle`), typed in
//! and out, and what one call returns counted against the output caps.

use super::bindings::{middleware, monitor, pipeline, types};
use super::outputs::{
    CallError, ItemAction, MonitorAction, Output, RequestAction, ResponseAction, SpiderItem,
    SpiderRequest,
};
use super::plugin::{field_bytes, first_line, head_bytes, Bound, Plugin, Tally};
use super::resources::{CrawlResultRes, Page, ResponseRes};
use super::store_data::StoreState;
use crate::result::CrawlResult;
use serde_json::Value;
use std::sync::Arc;
use wasmtime::component::Resource;
use wasmtime::Store;

impl Plugin {
    /// Spider: parse a page.
    pub fn parse(&self, page: Page) -> Result<Vec<Output>, CallError> {
        self.call(|store, bound| {
            let Bound::Spider(s) = bound else {
                return Err(self.wrong_kind());
            };
            let (out, res) = self.lend(store, ResponseRes::parsing(page), |store, r| {
                s.spinneret_plugin_parser().call_parse(store, r)
            })?;
            let out = self.outcome(store, out)?;
            // The page comes back with the records the guest sent; were it
            // gone, they would be lost, so the call fails instead.
            let res = res.ok_or_else(|| self.host_err("the page's records are gone"))?;
            let (records, record_bytes) = (res.records, res.record_bytes);
            let sent = Tally::records(records.len(), record_bytes);
            self.check_output(out.iter().map(Tally::of_output).sum::<Tally>() + sent)?;
            let out: Result<Vec<Output>, CallError> =
                out.into_iter().map(|o| self.convert_output(o)).collect();
            Ok(out?
                .into_iter()
                .chain(records.into_iter().map(Output::Record))
                .collect())
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
    pub(super) fn with_resource<V: Send + 'static, R>(
        &self,
        store: &mut Store<StoreState>,
        value: V,
        call: impl FnOnce(&mut Store<StoreState>, Resource<V>) -> R,
    ) -> Result<R, CallError> {
        Ok(self.lend(store, value, call)?.0)
    }

    /// [`Self::with_resource`], with the value back as the call left it
    /// (`None` only if the guest dropped a handle it did not own, which
    /// wasmtime refuses).
    fn lend<V: Send + 'static, R>(
        &self,
        store: &mut Store<StoreState>,
        value: V,
        call: impl FnOnce(&mut Store<StoreState>, Resource<V>) -> R,
    ) -> Result<(R, Option<V>), CallError> {
        let owned = store
            .data_mut()
            .table
            .push(value)
            .map_err(|e| self.host_err(e))?;
        let out = call(store, Resource::new_borrow(owned.rep()));
        let back = store.data_mut().table.delete(owned).ok();
        Ok((out, back))
    }

    /// A guest call's outcome: its `err` and traps become [`CallError`]s.
    pub(super) fn outcome<T>(
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

    pub(super) fn host_err(&self, e: impl std::fmt::Display) -> CallError {
        CallError::Trap {
            plugin: self.name.to_string(),
            reason: format!("host resource table: {e}"),
        }
    }

    pub(super) fn json(&self, name: &str, text: &str) -> Result<Value, CallError> {
        serde_json::from_str(text).map_err(|e| CallError::BadOutput {
            plugin: self.name.to_string(),
            reason: format!("`{name}` is not JSON ({e}): {}", first_line(text)),
        })
    }

    pub(super) fn convert_output(&self, o: types::Output) -> Result<Output, CallError> {
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
