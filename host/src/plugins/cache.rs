//! Compiled components on disk, by content hash.
//!
//! A Python or JavaScript component is 12-18 MB of WebAssembly and takes
//! seconds of Cranelift; its compiled form loads from disk in tens of
//! milliseconds. wasmtime's own cache does the storing (ADR 0001: its safe
//! API, where mapping our own files would need `unsafe`): entries are keyed
//! by a hash of the component and of the engine's version and settings, so
//! a new wasmtime or other settings never read an old entry, and its worker
//! thread trims the directory. This module attaches it to the engine and
//! tells, for each load, whether it was a hit.

use std::path::PathBuf;
use wasmtime::component::Component;
use wasmtime::{Cache, CacheConfig, Config, Engine};

/// Where a component's code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Read from the cache.
    Cached,
    /// Compiled now (and stored, when the cache is usable).
    Compiled,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Cached => "cache",
            Origin::Compiled => "compiled",
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct CodeCache {
    cache: Option<Cache>,
}

impl CodeCache {
    /// A cache in `dir`, attached to `config`; without a usable directory
    /// every load compiles.
    pub fn attach(config: &mut Config, dir: PathBuf) -> CodeCache {
        let mut cache_config = CacheConfig::new();
        cache_config.with_directory(&dir);
        let cache = match Cache::new(cache_config) {
            Ok(cache) => Some(cache),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "compile cache disabled: every load compiles");
                None
            }
        };
        config.cache(cache.clone());
        CodeCache { cache }
    }

    /// The component for `bytes`, and whether it came from the cache. (Two
    /// loads at once may swap their labels; only the label, never the code.)
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> wasmtime::Result<(Component, Origin)> {
        let misses = self.cache.as_ref().map(Cache::cache_misses);
        let component = Component::new(engine, bytes)?;
        let origin = match (&self.cache, misses) {
            (Some(c), Some(before)) if c.cache_misses() == before => Origin::Cached,
            _ => Origin::Compiled,
        };
        Ok((component, origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The empty component: magic, component-model version, layer.
    const EMPTY: &[u8] = b"\0asm\x0d\0\x01\0";

    fn engine(dir: &std::path::Path, epochs: bool) -> (Engine, CodeCache) {
        let mut config = Config::new();
        config.epoch_interruption(epochs);
        let cache = CodeCache::attach(&mut config, dir.to_path_buf());
        (Engine::new(&config).expect("engine"), cache)
    }

    #[test]
    fn a_second_load_comes_from_the_cache_even_in_a_new_engine() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (e, cache) = engine(dir.path(), true);
        assert_eq!(cache.load(&e, EMPTY).expect("load").1, Origin::Compiled);
        assert_eq!(cache.load(&e, EMPTY).expect("load").1, Origin::Cached);
        // A restart: a new engine with the same settings.
        let (e, cache) = engine(dir.path(), true);
        assert_eq!(cache.load(&e, EMPTY).expect("load").1, Origin::Cached);
    }

    #[test]
    fn other_engine_settings_do_not_share_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (e, cache) = engine(dir.path(), true);
        cache.load(&e, EMPTY).expect("load");
        let (e, cache) = engine(dir.path(), false);
        assert_eq!(cache.load(&e, EMPTY).expect("load").1, Origin::Compiled);
    }
}
