//! Bytes to a validated [`Plugin`]: compile (through the content-hash
//! cache), find which world and WIT version the component targets, reject
//! anything this host does not support with a message that says so, and
//! pre-link it so instantiation on the hot path is cheap.

use super::bindings::{
    middleware::DownloaderMiddlewarePre, monitor::MonitorPluginPre, pipeline::ItemPipelinePre,
    spider::SpiderPre,
};
use super::engine::Runtime;
use super::kind::{Kind, LoadError, PACKAGE};
use super::plugin::{Plugin, Pre};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::sync::atomic::AtomicU64;
use std::time::Instant;
use wasmtime::component::Component;

/// Compile and validate `bytes` as plugin `name`.
pub fn load(runtime: &Runtime, name: &str, bytes: &[u8]) -> Result<Plugin, LoadError> {
    let hash = hex::encode(Sha256::digest(bytes));
    let started = Instant::now();
    let (component, origin) =
        runtime
            .cache
            .load(&runtime.engine, bytes)
            .map_err(|e| LoadError::Invalid {
                name: name.into(),
                reason: format!("{e:#}"),
            })?;
    let compile_time = started.elapsed();
    let (kind, version) = detect(name, &component, runtime)?;
    let link_err = |e: wasmtime::Error| LoadError::Link {
        name: name.into(),
        reason: format!("{e:#}"),
    };
    let instance_pre = runtime
        .linker
        .instantiate_pre(&component)
        .map_err(link_err)?;
    let pre = match kind {
        Kind::Spider => Pre::Spider(SpiderPre::new(instance_pre).map_err(link_err)?),
        Kind::Middleware => {
            Pre::Middleware(DownloaderMiddlewarePre::new(instance_pre).map_err(link_err)?)
        }
        Kind::Pipeline => Pre::Pipeline(ItemPipelinePre::new(instance_pre).map_err(link_err)?),
        Kind::Monitor => Pre::Monitor(MonitorPluginPre::new(instance_pre).map_err(link_err)?),
    };
    Ok(Plugin {
        name: name.into(),
        kind,
        version,
        hash,
        compile_time,
        origin,
        pre,
        pool: Mutex::new(Vec::new()),
        limits: runtime.settings.limits_for(name),
        runtime: runtime.clone(),
        instances: AtomicU64::new(0),
    })
}

/// Which plugin world and WIT version the component's exports say it targets.
fn detect(
    name: &str,
    component: &Component,
    runtime: &Runtime,
) -> Result<(Kind, String), LoadError> {
    let exports: Vec<String> = component
        .component_type()
        .exports(&runtime.engine)
        .map(|(n, _)| n.to_string())
        .collect();
    for export in &exports {
        let Some(rest) = export
            .strip_prefix(PACKAGE)
            .and_then(|r| r.strip_prefix('/'))
        else {
            continue;
        };
        let (iface, version) = rest.split_once('@').unwrap_or((rest, "unversioned"));
        let Some(kind) = Kind::ALL.into_iter().find(|k| k.interface() == iface) else {
            continue;
        };
        if !super::kind::loads(version) {
            return Err(LoadError::UnsupportedVersion {
                name: name.into(),
                found: format!("{PACKAGE}@{version} (world {})", kind.world()),
            });
        }
        return Ok((kind, version.to_string()));
    }
    Err(LoadError::WrongWorld {
        name: name.into(),
        exports: if exports.is_empty() {
            "nothing".into()
        } else {
            exports.join(", ")
        },
    })
}
