//! Guest sleeps end at the call's deadline (ADR 0005). Epoch interruption
//! stops wasm code, not a guest blocked in a host call, and the only thing
//! a guest can block on is a WASI clock (it has no sockets, files or
//! stdin). So the two clock subscriptions are replaced: a sleep that would
//! outlast the call's time limit is cut at the limit, and the call then
//! fails as timed out.

use super::store_data::{Clock, StoreState};
use std::time::Duration;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::{DynPollable, Pollable};

/// The WASI version wasmtime-wasi links; guests importing any 0.2.x
/// resolve to it.
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// A sleep as a pollable.
struct Sleep(tokio::time::Instant);

#[wasmtime_wasi::async_trait]
impl Pollable for Sleep {
    async fn ready(&mut self) {
        tokio::time::sleep_until(self.0).await;
    }
}

fn subscribe(state: &mut StoreState, asked: Duration) -> wasmtime::Result<Resource<DynPollable>> {
    let allowed = state.budget.sleep(asked);
    let sleep = state
        .table
        .push(Sleep(tokio::time::Instant::now() + allowed))?;
    wasmtime_wasi::p2::subscribe(&mut state.table, sleep)
}

/// Replace `subscribe-duration` and `subscribe-instant` in a linker that
/// already has WASI.
pub fn bound_sleeps(l: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    l.allow_shadowing(true);
    let mut clock = l.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap("subscribe-duration", |mut store, (nanos,): (u64,)| {
        Ok((subscribe(store.data_mut(), Duration::from_nanos(nanos))?,))
    })?;
    clock.func_wrap("subscribe-instant", |mut store, (when,): (u64,)| {
        let now = Clock::nanos();
        let asked = Duration::from_nanos(when.saturating_sub(now));
        Ok((subscribe(store.data_mut(), asked)?,))
    })?;
    l.allow_shadowing(false);
    Ok(())
}
