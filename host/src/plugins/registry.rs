//! Plugins by name, and hot swap. A lookup hands out an `Arc<Plugin>`, so a
//! call in flight finishes on the version it started with while the
//! registry already points at the new one.
//!
//! The [`Watcher`] polls the plugins directory: a new or changed `.wasm` is
//! compiled and validated off the hot path, then swapped in atomically. A
//! broken file (partial write, not a component, wrong world) gets one log
//! line and the old version keeps serving.

use super::engine::Runtime;
use super::loader::{LoadError, Plugin};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub struct Registry {
    runtime: Runtime,
    plugins: RwLock<HashMap<String, Arc<Plugin>>>,
}

impl Registry {
    pub fn new(runtime: Runtime) -> Arc<Registry> {
        Arc::new(Registry {
            runtime,
            plugins: RwLock::new(HashMap::new()),
        })
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub fn get(&self, name: &str) -> Option<Arc<Plugin>> {
        self.plugins.read().get(name).cloned()
    }

    /// Every loaded plugin, by name.
    pub fn list(&self) -> Vec<Arc<Plugin>> {
        let mut all: Vec<_> = self.plugins.read().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Swap `plugin` in under its name; returns the version it replaced.
    pub fn insert(&self, plugin: Plugin) -> (Arc<Plugin>, Option<Arc<Plugin>>) {
        let plugin = Arc::new(plugin);
        let old = self
            .plugins
            .write()
            .insert(plugin.name.to_string(), plugin.clone());
        (plugin, old)
    }

    /// Load one file under its file stem as name.
    pub fn load_file(&self, path: &Path) -> Result<(Arc<Plugin>, Option<Arc<Plugin>>), LoadError> {
        let name = plugin_name(path);
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let plugin = Plugin::load(&self.runtime, &name, &bytes)?;
        Ok(self.insert(plugin))
    }

    /// Load every `.wasm` in `dir`. Failures are returned, not fatal.
    pub fn load_dir(&self, dir: &Path) -> Vec<(PathBuf, Result<Arc<Plugin>, LoadError>)> {
        wasm_files(dir)
            .into_iter()
            .map(|path| {
                let r = self.load_file(&path).map(|(p, _)| p);
                (path, r)
            })
            .collect()
    }
}

/// A plugin's name: its file stem (`plugins/link.wasm` -> `link`).
pub fn plugin_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn wasm_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file())
        .collect();
    files.sort();
    files
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        len: m.len(),
        modified: m.modified().ok(),
    })
}

/// Polls a directory and hot-swaps changed plugins. Stops when dropped.
pub struct Watcher {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Watcher {
    pub fn start(
        registry: Arc<Registry>,
        dir: PathBuf,
        interval: Duration,
    ) -> std::io::Result<Watcher> {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let mut seen: HashMap<PathBuf, Stamp> = wasm_files(&dir)
            .into_iter()
            .filter_map(|p| stamp(&p).map(|s| (p, s)))
            .collect();
        // A changed file must look the same for one more tick before we read
        // it, so a copy in progress is not compiled half-written.
        let mut pending: HashMap<PathBuf, Stamp> = HashMap::new();
        let mut rejected: HashMap<PathBuf, String> = HashMap::new();
        std::thread::Builder::new()
            .name("plugin-watcher".into())
            .spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(interval);
                    for path in wasm_files(&dir) {
                        let Some(now) = stamp(&path) else { continue };
                        if seen.get(&path) == Some(&now) {
                            continue;
                        }
                        if pending.get(&path) != Some(&now) {
                            pending.insert(path.clone(), now);
                            continue;
                        }
                        pending.remove(&path);
                        seen.insert(path.clone(), now);
                        reload(&registry, &path, &mut rejected);
                    }
                }
            })?;
        Ok(Watcher { stop })
    }
}

fn reload(registry: &Registry, path: &Path, rejected: &mut HashMap<PathBuf, String>) {
    let name = plugin_name(path);
    let Ok(bytes) = std::fs::read(path) else {
        return;
    };
    let hash = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(&bytes))
    };
    if registry.get(&name).is_some_and(|p| p.hash == hash) || rejected.get(path) == Some(&hash) {
        return;
    }
    let serving = registry.get(&name).map(|p| p.short_hash().to_string());
    match Plugin::load(registry.runtime(), &name, &bytes) {
        Ok(plugin) => {
            rejected.remove(path);
            let (new, old) = registry.insert(plugin);
            registry.runtime().stats.plugin_reloaded(true);
            tracing::info!(
                plugin = %new.name,
                kind = %new.kind,
                version = %new.version,
                hash = new.short_hash(),
                replaced = old.as_ref().map(|o| o.short_hash()).unwrap_or("none"),
                compile_ms = new.compile_time.as_millis() as u64,
                "plugin swapped in"
            );
        }
        Err(e) => {
            registry.runtime().stats.plugin_reloaded(false);
            tracing::warn!(
                plugin = %name,
                file = %path.display(),
                serving = serving.as_deref().unwrap_or("nothing"),
                "rejected plugin update, previous version keeps serving: {e}"
            );
            rejected.insert(path.to_path_buf(), hash);
        }
    }
}
