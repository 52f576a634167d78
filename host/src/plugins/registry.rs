//! Plugins by name, and hot swap. A lookup hands out an `Arc<Plugin>`, so a
//! call in flight finishes on the version it started with while the
//! registry already points at the new one.
//!
//! Loads run on one background thread, the compiler, fed by a queue: at
//! start every file in the plugins directory is queued, and the [`Watcher`]
//! queues each new or changed `.wasm`. A component is compiled (or mapped
//! from the cache) and validated there, never on the request path, then
//! swapped in atomically. A broken file (partial write, not a component,
//! wrong world) gets one log line and the old version keeps serving.

use super::engine::Runtime;
use super::loader;
use super::{LoadError, Plugin};
use crate::telemetry::Event;
use parking_lot::{Condvar, Mutex, RwLock};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

/// The longest anything waits for a plugin's first load: a cold compile of
/// a Python or JavaScript component is about 5 s on two idle cores, more
/// on a busy machine.
pub const FIRST_LOAD_WAIT: Duration = Duration::from_secs(300);

pub struct Registry {
    runtime: Runtime,
    plugins: RwLock<HashMap<String, Arc<Plugin>>>,
    /// Bumped on every insert, so watchers of the set can poll cheaply.
    generation: std::sync::atomic::AtomicU64,
    queue: Mutex<Queue>,
    /// Signalled after each background load, whatever its outcome.
    loaded: Condvar,
}

/// Files waiting for the background compiler.
#[derive(Default)]
struct Queue {
    waiting: VecDeque<PathBuf>,
    /// The plugins being compiled now (by the compiler thread, or by a
    /// caller of `load_queued_now`).
    busy: Vec<String>,
    /// The compiler thread is alive.
    running: bool,
    /// The hash of each file last refused, so it is not tried again
    /// unchanged, and why it was refused.
    rejected: HashMap<PathBuf, (String, String)>,
}

impl Registry {
    pub fn new(runtime: Runtime) -> Arc<Registry> {
        Arc::new(Registry {
            runtime,
            plugins: RwLock::new(HashMap::new()),
            generation: Default::default(),
            queue: Mutex::new(Queue::default()),
            loaded: Condvar::new(),
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
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        (plugin, old)
    }

    /// Changes whenever a plugin is loaded or swapped.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Load one file under its file stem as name, now, on this thread.
    pub fn load_file(&self, path: &Path) -> Result<(Arc<Plugin>, Option<Arc<Plugin>>), LoadError> {
        let name = plugin_name(path);
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let plugin = loader::load(&self.runtime, &name, &bytes)?;
        Ok(self.insert(plugin))
    }

    /// Load every `.wasm` in `dir` now. Failures are returned, not fatal.
    pub fn load_dir(&self, dir: &Path) -> Vec<(PathBuf, Result<Arc<Plugin>, LoadError>)> {
        wasm_files(dir)
            .into_iter()
            .map(|path| {
                let r = self.load_file(&path).map(|(p, _)| p);
                (path, r)
            })
            .collect()
    }

    /// Queue every `.wasm` in `dir` for the background compiler; returns
    /// how many were queued. Loads from the cache take milliseconds; a new
    /// component takes seconds and never holds up anything but its own
    /// first use (see [`Registry::wait_for`]).
    pub fn load_dir_in_background(self: &Arc<Self>, dir: &Path) -> usize {
        let files = wasm_files(dir);
        for path in &files {
            self.submit(path.clone());
        }
        files.len()
    }

    /// Queue `path` for the background compiler. The version it replaces
    /// serves until the new one is ready.
    pub fn submit(self: &Arc<Self>, path: PathBuf) {
        let mut q = self.queue.lock();
        if !q.waiting.contains(&path) {
            q.waiting.push_back(path);
        }
        if !q.running {
            q.running = true;
            let registry = Arc::downgrade(self);
            let spawned = std::thread::Builder::new()
                .name("plugin-compiler".into())
                .spawn(move || compile_queued(registry));
            if let Err(e) = spawned {
                q.running = false;
                tracing::error!(error = %e, "cannot start the plugin compiler thread");
            }
        }
    }

    /// Whether `name` is queued or compiling.
    pub fn pending(&self, name: &str) -> bool {
        let q = self.queue.lock();
        q.busy.iter().any(|b| b == name) || q.waiting.iter().any(|p| plugin_name(p) == name)
    }

    /// Load `name` now on this thread if it is queued and not started: a
    /// start that needs one small spider does not wait behind the
    /// compiler's other work. Returns whether it was queued.
    pub fn load_queued_now(&self, name: &str) -> bool {
        let path = {
            let mut q = self.queue.lock();
            let Some(i) = q.waiting.iter().position(|p| plugin_name(p) == name) else {
                return false;
            };
            q.busy.push(name.to_string());
            q.waiting.remove(i)
        };
        if let Some(path) = path {
            self.load_marked_busy(&path);
        }
        true
    }

    /// Load `path`, whose name the caller put in `busy`, then clear it and
    /// wake the waiters.
    fn load_marked_busy(&self, path: &Path) {
        load_one(self, path);
        let name = plugin_name(path);
        let mut q = self.queue.lock();
        if let Some(i) = q.busy.iter().position(|b| *b == name) {
            q.busy.swap_remove(i);
        }
        drop(q);
        self.loaded.notify_all();
    }

    /// Why the last load of `name` failed, if its current file was refused.
    pub fn load_error(&self, name: &str) -> Option<String> {
        let q = self.queue.lock();
        q.rejected
            .iter()
            .find(|(path, _)| plugin_name(path) == name)
            .map(|(_, (_, e))| e.clone())
    }

    /// Whether any load is queued or running.
    pub fn pending_any(&self) -> bool {
        let q = self.queue.lock();
        !q.busy.is_empty() || !q.waiting.is_empty()
    }

    /// `name` once its queued load is done (moved to the front of the
    /// queue), or at once when nothing is queued for it. `None` if it did
    /// not load by `timeout` or failed to load.
    pub fn wait_for(&self, name: &str, timeout: Duration) -> Option<Arc<Plugin>> {
        let deadline = Instant::now() + timeout;
        let mut q = self.queue.lock();
        loop {
            if let Some(i) = q.waiting.iter().position(|p| plugin_name(p) == name) {
                if i > 0 {
                    let path = q.waiting.remove(i).expect("index in range");
                    q.waiting.push_front(path);
                }
            } else if !q.busy.iter().any(|b| b == name) {
                break;
            }
            if self.loaded.wait_until(&mut q, deadline).timed_out() {
                break;
            }
        }
        drop(q);
        self.get(name)
    }
}

impl Registry {
    /// Wait until the queue is empty (every queued load done), or `timeout`.
    pub fn settle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut q = self.queue.lock();
        while !q.waiting.is_empty() || !q.busy.is_empty() {
            if self.loaded.wait_until(&mut q, deadline).timed_out() {
                return false;
            }
        }
        true
    }
}

/// The compiler thread: drain the queue, one component at a time (wasmtime
/// compiles each one's functions in parallel), then exit.
fn compile_queued(registry: Weak<Registry>) {
    loop {
        let Some(registry) = registry.upgrade() else {
            return;
        };
        let path = {
            let mut q = registry.queue.lock();
            let Some(path) = q.waiting.pop_front() else {
                q.running = false;
                return;
            };
            q.busy.push(plugin_name(&path));
            path
        };
        registry.load_marked_busy(&path);
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
                        registry.submit(path);
                    }
                }
            })?;
        Ok(Watcher { stop })
    }
}

/// Compile `path` and swap it in; on failure whatever served keeps serving.
fn load_one(registry: &Registry, path: &Path) {
    let name = plugin_name(path);
    let Ok(bytes) = std::fs::read(path) else {
        return;
    };
    let hash = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(&bytes))
    };
    let refused = registry
        .queue
        .lock()
        .rejected
        .get(path)
        .is_some_and(|(h, _)| *h == hash);
    if refused || registry.get(&name).is_some_and(|p| p.hash == hash) {
        return;
    }
    let serving = registry.get(&name).map(|p| p.short_hash().to_string());
    match loader::load(registry.runtime(), &name, &bytes) {
        Ok(plugin) => {
            registry.queue.lock().rejected.remove(path);
            let (new, old) = registry.insert(plugin);
            let ms = new.compile_time.as_millis() as u64;
            let (kind, version, hash) = (&new.kind, &new.version, new.short_hash());
            let from = new.origin.as_str();
            match old {
                Some(old) => {
                    registry
                        .runtime()
                        .stats
                        .emit(Event::PluginReloaded { ok: true });
                    let replaced = old.short_hash();
                    tracing::info!(plugin = %name, %kind, %version, hash, replaced, load_ms = ms, from, "plugin swapped in");
                }
                None => {
                    tracing::info!(plugin = %name, %kind, %version, hash, load_ms = ms, from, "plugin loaded")
                }
            }
        }
        Err(e) => {
            let file = path.display();
            match serving {
                Some(serving) => {
                    registry
                        .runtime()
                        .stats
                        .emit(Event::PluginReloaded { ok: false });
                    tracing::warn!(plugin = %name, %file, %serving, "rejected plugin update, previous version keeps serving: {e}");
                }
                None => tracing::warn!(plugin = %name, %file, "skipping plugin: {e}"),
            }
            registry
                .queue
                .lock()
                .rejected
                .insert(path.to_path_buf(), (hash, e.to_string()));
        }
    }
}
