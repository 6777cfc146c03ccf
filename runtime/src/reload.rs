//! Hot reload of sink components while rules run.
//!
//! When a sink module changes (a file watcher, or SIGHUP), the new build is loaded off the
//! delivery path (compiled, or taken from the artifact cache, on a blocking thread) and, for
//! every action instance that uses it, a new instance is made, configured with the same props
//! and opened. Only when every one of them is ready are they handed over; each action then
//! switches at a batch boundary: the old instance gets `close` (it flushes), the new one takes
//! the next batch. Rows that arrive meanwhile wait in the action's buffer. A build that fails to
//! load, to configure or to open is refused with the reason in the log, and the old one keeps
//! running. A batch in flight when an instance traps is delivered again (to the new build if
//! one is waiting): delivery is at-least-once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Map, Value as Json};
use tokio::sync::mpsc;

use crate::host::bindings::WitContext;
use crate::host::{CallFailure, Grants, InstanceTag, Plugin, SinkHost, WasmInstance};
use crate::metrics::ActionMetrics;

/// A new build, ready for one action instance: created, configured and opened.
pub struct Swap {
    /// The new component.
    pub plugin: Arc<Plugin>,
    /// Its grants (the manifest may have changed).
    pub grants: Arc<Grants>,
    /// The props given to `configure`.
    pub props: Arc<str>,
    /// The opened instance.
    pub instance: WasmInstance,
}

/// What the reloader knows of one action instance, to rebuild it.
pub struct Subscriber {
    /// Where ready instances go; the sink takes them at a batch boundary.
    pub tx: mpsc::Sender<Swap>,
    /// The instance's context (its generation is taken from `generation`).
    pub context: WitContext,
    /// Its log tag.
    pub tag: InstanceTag,
    /// The next generation number of the instance's replacements (shared with the sink).
    pub generation: Arc<AtomicU32>,
    /// The sink's own props as the rule wrote them (before grant paths were resolved).
    pub raw_props: Map<String, Json>,
    /// The rule file's folder, for relative paths in props.
    pub base_dir: PathBuf,
    /// The action's counters (reload refusals are recorded there).
    pub metrics: Arc<ActionMetrics>,
    /// The action's batch numbering: what `open` tells the new build's instance.
    pub sequencer: Arc<crate::sink::sequence::Sequencer>,
    /// The action's instance limits.
    pub limits: crate::host::Limits,
}

struct Entry {
    current: Arc<Plugin>,
    subscribers: Vec<Subscriber>,
    /// The content hash of the last build refused, so the same broken file is refused (and
    /// logged) once, not at every event the watcher sees.
    refused: Option<String>,
    /// The module and manifest files as they were when last looked at (see [`Fingerprint`]).
    seen: Option<Fingerprint>,
}

/// What `stat` says of a module and its manifest: enough to tell that neither changed without
/// reading them. Reading a file raises an access event on the watched folder, so a watcher
/// that read the module at every event would wake itself up for ever.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint([Option<FileStamp>; 2]);

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    #[cfg(unix)]
    inode: (u64, u64),
}

impl Fingerprint {
    fn of(wasm: &Path) -> Self {
        let stamp = |path: &Path| {
            let meta = std::fs::metadata(path).ok()?;
            Some(FileStamp {
                len: meta.len(),
                modified: meta.modified().ok(),
                #[cfg(unix)]
                inode: {
                    use std::os::unix::fs::MetadataExt;
                    (meta.dev(), meta.ino())
                },
            })
        };
        Self([stamp(wasm), stamp(&wasm.with_extension("json"))])
    }

    /// Whether the module exists and has no bytes yet.
    fn module_is_empty(&self) -> bool {
        self.0[0].as_ref().is_some_and(|m| m.len == 0)
    }
}

/// Reloads sink components and hands new builds to the actions that use them.
pub struct Reloader {
    host: SinkHost,
    plugins: tokio::sync::Mutex<HashMap<PathBuf, Entry>>,
}

/// What one reload attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No action uses this module.
    Unused,
    /// The module's content did not change.
    Unchanged,
    /// Every instance now has the new build waiting (`hash`).
    Swapped {
        /// The new build's hash.
        hash: String,
        /// Action instances handed the new build.
        instances: usize,
    },
    /// The new build was refused; the old one keeps running.
    Refused(String),
}

fn key(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_owned())
}

impl Reloader {
    /// A reloader for components run by `host`.
    pub fn new(host: SinkHost) -> Arc<Self> {
        Arc::new(Self {
            host,
            plugins: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Registers an action instance running `plugin`.
    pub async fn subscribe(&self, plugin: &Arc<Plugin>, subscriber: Subscriber) {
        let mut plugins = self.plugins.lock().await;
        plugins
            .entry(key(&plugin.path))
            .or_insert_with(|| Entry {
                current: Arc::clone(plugin),
                subscribers: Vec::new(),
                refused: None,
                seen: None,
            })
            .subscribers
            .push(subscriber);
    }

    /// The modules in use.
    pub async fn paths(&self) -> Vec<PathBuf> {
        self.plugins.lock().await.keys().cloned().collect()
    }

    /// Reloads every module in use (SIGHUP): each is read again even if `stat` says it did
    /// not change.
    pub async fn reload_all(&self) -> Vec<(PathBuf, Outcome)> {
        let mut out = Vec::new();
        for path in self.paths().await {
            let outcome = self.reload_checked(&path, true).await;
            out.push((path, outcome));
        }
        out
    }

    /// Loads the module at `path` again and, if it changed, prepares and hands a new instance
    /// to every action instance using it. Holding the lock for the whole attempt keeps reloads
    /// of one module in order.
    pub async fn reload(&self, path: &Path) -> Outcome {
        self.reload_checked(path, true).await
    }

    /// As [`Reloader::reload`], for a watcher's event: a module whose files `stat` the same as
    /// when last looked at is not read again (the event was our own read, or a touch).
    pub async fn reload_changed(&self, path: &Path) -> Outcome {
        self.reload_checked(path, false).await
    }

    async fn reload_checked(&self, path: &Path, force: bool) -> Outcome {
        let wasm = if path.extension().is_some_and(|e| e == "json") {
            path.with_extension("wasm")
        } else {
            path.to_owned()
        };
        let mut plugins = self.plugins.lock().await;
        let Some(entry) = plugins.get_mut(&key(&wasm)) else {
            return Outcome::Unused;
        };
        entry.subscribers.retain(|s| !s.tx.is_closed());
        let shown = wasm.display().to_string();
        // Taken before reading: a write landing while this attempt reads is seen next time.
        let fingerprint = Fingerprint::of(&entry.current.path);
        // An empty module is a copy that has opened (truncated) the file and not written yet,
        // not a build: wait for the event of its write.
        if fingerprint.module_is_empty() {
            tracing::debug!(module = %shown, "the module is empty (a copy in progress?)");
            return Outcome::Unchanged;
        }
        if !force && entry.seen.as_ref() == Some(&fingerprint) {
            return Outcome::Unchanged;
        }
        entry.seen = Some(fingerprint);
        // The module and its manifest, as they are now: the same content is not tried twice.
        let module = std::fs::read(&entry.current.path).unwrap_or_default();
        // The new build's version, as the host names it (for the reload history).
        let to = blake3::hash(&module).to_hex()[..16].to_string();
        let content = {
            let mut hasher = blake3::Hasher::new();
            hasher.update(&module);
            hasher.update(
                &std::fs::read(entry.current.path.with_extension("json")).unwrap_or_default(),
            );
            hasher.finalize().to_hex().to_string()
        };
        if entry.refused.as_deref() == Some(content.as_str()) {
            tracing::debug!(module = %shown, "this build was refused already");
            return Outcome::Unchanged;
        }
        let host = self.host.clone();
        let load_path = entry.current.path.clone();
        let loaded = tokio::task::spawn_blocking(move || host.load(&load_path)).await;
        let plugin = match loaded {
            Ok(Ok(plugin)) => plugin,
            Ok(Err(err)) => return refuse(entry, &shown, (content, &to), err.to_string()),
            Err(err) => {
                return refuse(
                    entry,
                    &shown,
                    (content, &to),
                    format!("the loader failed: {err}"),
                );
            }
        };
        if plugin.hash == entry.current.hash && plugin.manifest == entry.current.manifest {
            tracing::debug!(module = %shown, hash = %plugin.hash, "sink module unchanged");
            return Outcome::Unchanged;
        }
        tracing::info!(
            module = %shown,
            from = %entry.current.hash,
            to = %plugin.hash,
            cache = ?plugin.cache,
            "new sink build loaded; preparing instances"
        );

        // Prepare every instance first: a build that cannot start anywhere starts nowhere.
        let mut ready: Vec<(usize, Swap)> = Vec::with_capacity(entry.subscribers.len());
        for (i, sub) in entry.subscribers.iter().enumerate() {
            match prepare(&self.host, &plugin, sub).await {
                Ok(swap) => ready.push((i, swap)),
                Err(reason) => {
                    for (_, mut swap) in ready {
                        let _ = swap.instance.close().await;
                    }
                    let reason = format!("action `{}`: {reason}", sub.tag.action);
                    return refuse(entry, &shown, (content, &to), reason);
                }
            }
        }
        let instances = ready.len();
        for (i, swap) in ready {
            let sub = &entry.subscribers[i];
            if let Err(lost) = sub.tx.send(swap).await {
                // The action ended meanwhile: release the instance it will never use.
                let mut swap = lost.0;
                let _ = swap.instance.close().await;
            }
        }
        entry.current = Arc::clone(&plugin);
        entry.refused = None;
        Outcome::Swapped {
            hash: plugin.hash.clone(),
            instances,
        }
    }
}

/// Refuses a build: `build` is its content hash (module and manifest, not tried again) and its
/// version (the module's hash, for the reload history).
fn refuse(entry: &mut Entry, module: &str, build: (String, &str), reason: String) -> Outcome {
    let (content, to) = build;
    entry.refused = Some(content);
    let at = crate::metrics::now_rfc3339();
    tracing::error!(
        module,
        running = %entry.current.hash,
        "new sink build refused, the running one stays: {reason}"
    );
    for sub in &entry.subscribers {
        sub.metrics
            .exceptions
            .record(format!("reload of {module} refused: {reason}"));
        sub.metrics.reload_refusals.add(1);
        sub.metrics.reload_history.push(crate::metrics::Reload {
            at: at.clone(),
            instance: sub.tag.instance,
            from: entry.current.hash.clone(),
            to: to.to_string(),
            pause_us: None,
            refused: Some(reason.clone()),
        });
    }
    Outcome::Refused(reason)
}

async fn prepare(host: &SinkHost, plugin: &Arc<Plugin>, sub: &Subscriber) -> Result<Swap, String> {
    let mut props = sub.raw_props.clone();
    let mut grants = Grants::resolve(&plugin.manifest, &mut props, &sub.base_dir, true)
        .map_err(|e| e.to_string())?;
    grants.limits = sub.limits;
    let props: Arc<str> = Arc::from(Json::Object(props).to_string());
    let phase = |phase: &'static str| move |e: CallFailure| format!("{phase} failed: {e}");
    let mut instance = host
        .instantiate(plugin, sub.tag.clone(), &grants)
        .await
        .map_err(phase("instantiate"))?;
    let mut context = sub.context.clone();
    context.generation = sub.generation.fetch_add(1, Ordering::Relaxed);
    instance
        .configure(&context, &props)
        .await
        .map_err(phase("configure"))?;
    instance
        .open(sub.sequencer.for_open())
        .await
        .map_err(phase("open"))?;
    Ok(Swap {
        plugin: Arc::clone(plugin),
        grants: Arc::new(grants),
        props,
        instance,
    })
}

/// How long a module file must stay quiet before it is loaded (a copy in progress, an editor's
/// write-then-rename).
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// Watches `dir` (the plugins' `sinks/` folder) and reloads modules that change, until the
/// returned guard is dropped.
pub fn watch(dir: &Path, reloader: Arc<Reloader>) -> Result<WatchGuard, String> {
    use notify_debouncer_mini::{DebounceEventResult, new_debouncer, notify::RecursiveMode};

    let (tx, mut rx) = mpsc::unbounded_channel::<PathBuf>();
    let mut debouncer = new_debouncer(DEBOUNCE, move |events: DebounceEventResult| match events {
        Ok(events) => {
            for event in events {
                let _ = tx.send(event.path);
            }
        }
        Err(err) => tracing::warn!("plugin folder watch error: {err}"),
    })
    .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    debouncer
        .watcher()
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    let task = tokio::spawn(async move {
        while let Some(path) = rx.recv().await {
            let is_module = path.extension().is_some_and(|e| e == "wasm" || e == "json");
            if !is_module || !path.exists() {
                continue;
            }
            match reloader.reload_changed(&path).await {
                Outcome::Swapped { hash, instances } => {
                    tracing::info!(module = %path.display(), hash, instances, "new sink build handed to its actions");
                }
                Outcome::Refused(_) | Outcome::Unchanged | Outcome::Unused => {}
            }
        }
    });
    tracing::info!(dir = %dir.display(), "watching sink modules for new builds");
    Ok(WatchGuard {
        _debouncer: Box::new(debouncer),
        task,
    })
}

/// Keeps a watch running; dropping it stops the watch.
pub struct WatchGuard {
    _debouncer: Box<dyn std::any::Any + Send>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reloads every module in use on each SIGHUP, until the returned task is aborted.
#[cfg(unix)]
pub fn on_sighup(reloader: Arc<Reloader>) -> Option<tokio::task::JoinHandle<()>> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()?;
    Some(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: checking sink modules for new builds");
            for (path, outcome) in reloader.reload_all().await {
                if let Outcome::Swapped { hash, instances } = outcome {
                    tracing::info!(module = %path.display(), hash, instances, "new sink build handed to its actions");
                }
            }
        }
    }))
}

#[cfg(not(unix))]
/// SIGHUP does not exist here.
pub fn on_sighup(_reloader: Arc<Reloader>) -> Option<tokio::task::JoinHandle<()>> {
    None
}
