//! Bytes to a validated [`Plugin`]: compile (through the content-hash
//! cache), find which world and WIT version the component targets, reject
//! anything this host does not support with a message that says so, and
//! pre-link it so instantiation on the hot path is cheap.

use super::bindings::{
    middleware::DownloaderMiddlewarePre, monitor::MonitorPluginPre, pipeline::ItemPipelinePre,
    spider::SpiderPre,
};
use super::cache::Origin;
use super::engine::Runtime;
use super::instance::Instance;
use crate::config::Limits;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use wasmtime::component::Component;

/// The WIT package version this host implements.
pub const SUPPORTED_VERSION: &str = "0.1.0";
const PACKAGE: &str = "spinneret:plugin";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Spider,
    Middleware,
    Pipeline,
    Monitor,
}

impl Kind {
    /// The interface a component of this kind exports.
    fn interface(self) -> &'static str {
        match self {
            Kind::Spider => "parser",
            Kind::Middleware => "middleware",
            Kind::Pipeline => "pipeline",
            Kind::Monitor => "monitor",
        }
    }

    /// The WIT world name.
    pub fn world(self) -> &'static str {
        match self {
            Kind::Spider => "spider",
            Kind::Middleware => "downloader-middleware",
            Kind::Pipeline => "item-pipeline",
            Kind::Monitor => "monitor-plugin",
        }
    }

    const ALL: [Kind; 4] = [
        Kind::Spider,
        Kind::Middleware,
        Kind::Pipeline,
        Kind::Monitor,
    ];
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.world())
    }
}

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("plugin `{name}` is not a valid WebAssembly component: {reason}")]
    Invalid { name: String, reason: String },
    #[error(
        "plugin `{name}` targets {found}, but this host supports {PACKAGE}@{SUPPORTED_VERSION} \
         (worlds spider, downloader-middleware, item-pipeline, monitor-plugin): rebuild it against wit/ of this release"
    )]
    UnsupportedVersion { name: String, found: String },
    #[error(
        "plugin `{name}` is built for another world: it exports [{exports}], but a plugin must \
         export one of {PACKAGE}/parser, /middleware, /pipeline or /monitor @{SUPPORTED_VERSION} \
         (worlds spider, downloader-middleware, item-pipeline, monitor-plugin)"
    )]
    WrongWorld { name: String, exports: String },
    #[error("plugin `{name}` is a {found} plugin, not a {wanted}")]
    WrongKind {
        name: String,
        found: Kind,
        wanted: Kind,
    },
    #[error("plugin `{name}` imports something this host does not offer (plugins get WASI 0.2 with nothing granted, and the spinneret:plugin host interface): {reason}")]
    Link { name: String, reason: String },
}

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
        if version != SUPPORTED_VERSION {
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
