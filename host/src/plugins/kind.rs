//! What a plugin is: its kind (the WIT world it targets), the WIT version
//! this host loads, and why a component is refused.

use std::fmt;
use thiserror::Error;

/// The WIT package version this host implements.
pub const SUPPORTED_VERSION: &str = "0.1.1";
/// The oldest version it loads: every 0.1.z up to [`SUPPORTED_VERSION`]
/// (additive patches; wasmtime links an older guest by semver).
pub const OLDEST_VERSION: &str = "0.1.0";
pub(super) const PACKAGE: &str = "spinneret:plugin";

/// Whether a component built against `version` loads on this host: the
/// same minor, a patch no newer than ours (a newer one may import what
/// this host lacks).
pub(super) fn loads(version: &str) -> bool {
    let patch = |v: &str| -> Option<u32> { v.strip_prefix("0.1.")?.parse().ok() };
    match (patch(version), patch(SUPPORTED_VERSION)) {
        (Some(theirs), Some(ours)) => theirs <= ours,
        _ => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Spider,
    Middleware,
    Pipeline,
    Monitor,
}

impl Kind {
    /// The interface a component of this kind exports.
    pub(super) fn interface(self) -> &'static str {
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

    pub(super) const ALL: [Kind; 4] = [
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
        "plugin `{name}` targets {found}, but this host supports {PACKAGE}@{OLDEST_VERSION} to {SUPPORTED_VERSION} \
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_older_patch_of_the_minor_loads_and_nothing_else() {
        for v in [OLDEST_VERSION, SUPPORTED_VERSION, "0.1.0"] {
            assert!(loads(v), "{v}");
        }
        for v in [
            "0.1.2",
            "0.1.99",
            "0.2.0",
            "1.0.0",
            "0.1",
            "0.1.x",
            "unversioned",
        ] {
            assert!(!loads(v), "{v}");
        }
    }
}
