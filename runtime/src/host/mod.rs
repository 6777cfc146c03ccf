//! The wasm sink host: one wasmtime engine, sink components loaded and pre-instantiated once, and
//! one sandboxed instance per rule action (times its `concurrency`).
//!
//! Phases, each its own function so `oort validate` can stop after the ones without side
//! effects: [`SinkHost::load`] reads, compiles (or takes from the artifact cache) and type-checks
//! a component against the `oort:sink` world it targets (0.2.0, or the frozen 0.1.0: the version
//! is read from its exports, and each plugin keeps pre-instantiations for that version only);
//! [`SinkHost::instantiate`] makes a fresh store and instance with the action's grants; the [`WasmInstance`] then runs
//! `configure -> open -> collect* -> close`.
//!
//! Each interface a sink may import lives in its own module, the way wasmtime-wasi splits its
//! own: a context type holding just that interface's state, the interface's `Host` impl on it,
//! a `…View` trait the store implements to hand the context out, and an `add_to_linker`.
//! [`log`] is `oort:sink/host`, [`mqtt`] is `oort:sink/mqtt`, [`http`] gates `wasi:http`, and
//! [`fs_guard`] guards `wasi:filesystem`. The store's data, [`state::InstanceState`], is a
//! plain aggregate of those contexts and wasi's.
//!
//! To add a host interface: declare it in `wit/` (and the guest SDKs); write `host/<name>.rs`
//! with its context, `Host` impl, view trait and `add_to_linker` (and unit tests); then give
//! `InstanceState` a field for the context, its view impl and a line in
//! `InstanceState::add_to_linker`, and build the context in `instance::instantiate` from the
//! action's grants.

pub mod bindings;
mod cache;
mod fs_guard;
mod grants;
mod guest_str;
mod http;
mod instance;
mod linking;
mod log;
mod mqtt;
mod resolver;
mod sockets;
mod state;
mod stdio;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use cache::{ArtifactCache, CacheOutcome};
pub use grants::{
    Effective, ExplicitGrants, FileAccess, FileGrant, GrantKind, Grants, HttpGrant, Limits,
    Manifest, ManifestDefault, ManifestError, NetProp, Origin, SocketGrant, absolute,
    templated_folder,
};
pub use instance::{CallFailure, WasmInstance};
pub use log::InstanceTag;

pub use bindings::WitVersion;
use linking::{Linkers, Linking, Pres, VersionedPre};

/// How often the engine's epoch advances; call deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Default fuel per call: about ten seconds of busy guest code on a current core, so it only
/// catches what the wall-clock deadline would also catch, but deterministically.
pub const DEFAULT_FUEL_PER_CALL: u64 = 20_000_000_000;

/// Engine-wide settings, from the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct HostConfig {
    /// Where compiled components are kept between runs; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Instances that can be alive at once (the size of the pooling allocator); 0 allocates each
    /// instance on demand instead of from a pool.
    pub max_instances: u32,
    /// The most linear memory one instance may grow to, in bytes.
    pub max_memory_bytes: usize,
    /// The longest one call into a sink may run before it is trapped.
    pub call_timeout: Duration,
    /// Fuel (roughly, wasm instructions) one call may burn before it is trapped; 0 turns fuel
    /// metering off for the whole engine (then actions cannot set `fuel` either).
    pub fuel_per_call: u64,
    /// Wall-clock deadlines through epoch interruption. Always on in `oort`; off only to
    /// measure what they cost.
    pub epoch_deadlines: bool,
    /// Descriptors one instance may hold at once: files, sockets, `wasi:http` requests in
    /// flight. Actions may lower or raise each.
    pub descriptors: DescriptorLimits,
}

/// How many files, sockets and in-flight `wasi:http` requests one instance may hold at once;
/// past a cap the guest's call fails with an error (the instance is not trapped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorLimits {
    /// Files opened through `wasi:filesystem` (the preopened folders do not count).
    pub open_files: usize,
    /// TCP sockets.
    pub sockets: usize,
    /// `wasi:http` requests sent and not yet answered in full.
    pub http_requests: usize,
}

impl Default for DescriptorLimits {
    fn default() -> Self {
        Self {
            open_files: 64,
            sockets: 64,
            http_requests: 64,
        }
    }
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            cache_dir: ArtifactCache::default_dir(),
            max_instances: 1000,
            max_memory_bytes: 64 << 20,
            call_timeout: Duration::from_secs(10),
            fuel_per_call: DEFAULT_FUEL_PER_CALL,
            epoch_deadlines: true,
            descriptors: DescriptorLimits::default(),
        }
    }
}

/// The engine could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the wasm engine: {0}")]
pub struct EngineError(String);

/// A sink component could not be loaded. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: cannot read the sink module: {source}")]
    Read {
        /// The module's path.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not WebAssembly at all.
    #[error("{path}: not a WebAssembly file (it does not start with the `\\0asm` magic)")]
    NotWasm {
        /// The module's path.
        path: PathBuf,
    },
    /// The file is a core module, not a component.
    #[error(
        "{path}: a core WebAssembly module, not a component: build the sink with \
         `--target wasm32-wasip2` (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule {
        /// The module's path.
        path: PathBuf,
    },
    /// The component is malformed or uses features the engine does not support.
    #[error("{path}: invalid component: {reason}")]
    Compile {
        /// The module's path.
        path: PathBuf,
        /// What wasmtime said.
        reason: String,
    },
    /// The component does not fit the `oort:sink` world.
    #[error("{path}: not an oort:sink component: {reason}")]
    WrongWorld {
        /// The module's path.
        path: PathBuf,
        /// What is missing or mistyped.
        reason: String,
    },
    /// The manifest beside the module is wrong.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// A sink component, compiled and type-checked, ready to instantiate any number of times.
pub struct Plugin {
    /// Where it was loaded from.
    pub path: PathBuf,
    /// The first 16 hex digits of the BLAKE3 hash of the file: the version an action runs.
    pub hash: String,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    /// Whether the compiled artifact came from the cache.
    pub cache: CacheOutcome,
    /// How long loading took (compiling or deserializing, and type-checking).
    pub load_time: Duration,
    /// What the manifest beside the module declares.
    pub manifest: Manifest,
    /// The version of `oort:sink` the component targets.
    pub version: WitVersion,
    pres: Pres,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("path", &self.path)
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

/// The wasm engine and everything shared by the instances it runs.
#[derive(Clone)]
pub struct SinkHost {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linkers: Linkers,
    cache: Option<ArtifactCache>,
    config: HostConfig,
    resolutions: resolver::Resolutions,
    /// The components loaded, by path: a module every rule of a server uses is compiled (or
    /// mapped from the cache) once, not once per rule.
    loaded: std::sync::Mutex<std::collections::HashMap<PathBuf, std::sync::Weak<Plugin>>>,
}

/// The hosts alive in this process, by their settings (see [`SinkHost::shared`]).
static SHARED: std::sync::Mutex<Vec<(HostConfig, std::sync::Weak<Inner>)>> =
    std::sync::Mutex::new(Vec::new());

impl Drop for Inner {
    fn drop(&mut self) {
        tracing::trace!("sink host dropped");
    }
}

impl SinkHost {
    /// Builds the engine (with a pooling allocator unless `max_instances` is 0), the linkers
    /// (WASI p2 with nothing granted, gated `wasi:http` and `wasi:sockets` for the actions
    /// granted them, a guarded filesystem, the `oort:sink` imports) and starts the epoch
    /// ticker that enforces call deadlines.
    pub fn new(config: HostConfig) -> Result<Self, EngineError> {
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(config.epoch_deadlines)
            // Component-model async is not used; without it every call is cheaper.
            .concurrency_support(false)
            .consume_fuel(config.fuel_per_call > 0)
            .max_wasm_stack(1 << 20)
            .async_stack_size(2 << 20);
        if config.max_instances > 0 {
            let mut pool = PoolingAllocationConfig::new();
            let n = config.max_instances;
            pool.total_component_instances(n)
                .total_core_instances(n.saturating_mul(4))
                .total_memories(n.saturating_mul(2))
                .total_tables(n.saturating_mul(4))
                .total_stacks(n)
                .max_memory_size(config.max_memory_bytes)
                .max_core_instances_per_component(16)
                .max_memories_per_component(4)
                .max_tables_per_component(16);
            wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&wasm).map_err(|e| EngineError(format!("{e:#}")))?;

        let linkers = Linkers::new(&engine).map_err(|e| EngineError(format!("{e:#}")))?;

        if config.epoch_deadlines {
            spawn_epoch_ticker(&engine);
        }
        let cache = config.cache_dir.clone().map(ArtifactCache::new);
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                linkers,
                cache,
                config,
                resolutions: resolver::Resolutions::default(),
                loaded: std::sync::Mutex::default(),
            }),
        })
    }

    /// The host of this process with these settings, built on first use. Every rule a server
    /// runs shares one engine: one instance pool (`max_instances` is then the server's bound,
    /// not each rule's), one epoch thread, and one copy of each loaded component. A host
    /// lives while some rule holds it.
    pub fn shared(config: HostConfig) -> Result<Self, EngineError> {
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        shared.retain(|(_, inner)| inner.strong_count() > 0);
        if let Some(inner) = shared
            .iter()
            .find(|(known, _)| *known == config)
            .and_then(|(_, inner)| inner.upgrade())
        {
            return Ok(Self { inner });
        }
        let host = Self::new(config.clone())?;
        shared.push((config, Arc::downgrade(&host.inner)));
        Ok(host)
    }

    /// The settings the host was built with.
    pub fn config(&self) -> &HostConfig {
        &self.inner.config
    }

    /// The host's resolutions of the granted socket names.
    pub(crate) fn resolutions(&self) -> &resolver::Resolutions {
        &self.inner.resolutions
    }

    /// Reads, compiles (or loads from the artifact cache) and type-checks a sink component, and
    /// reads its manifest. Blocking and CPU-heavy: call it off the async runtime's threads.
    pub fn load(&self, path: &Path) -> Result<Arc<Plugin>, LoadError> {
        let started = Instant::now();
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        if !bytes.starts_with(b"\0asm") {
            return Err(LoadError::NotWasm {
                path: path.to_owned(),
            });
        }
        // Byte 4..8 is the version: 1 for core modules, 0x0d (layer 1) for components.
        if bytes.get(4..8) == Some(&[1, 0, 0, 0]) {
            return Err(LoadError::CoreModule {
                path: path.to_owned(),
            });
        }
        let manifest = Manifest::beside(path)?;
        let hash = blake3::hash(&bytes).to_hex()[..16].to_string();
        if let Some(plugin) = self.already_loaded(path, &hash, &manifest) {
            tracing::debug!(path = %path.display(), hash, "sink component already loaded");
            return Ok(plugin);
        }
        let compile_err = |e: wasmtime::Error| LoadError::Compile {
            path: path.to_owned(),
            reason: format!("{e:#}"),
        };
        let (component, cache) = match &self.inner.cache {
            Some(cache) => cache
                .load_or_compile(&self.inner.engine, &bytes, path)
                .map_err(compile_err)?,
            None => (
                cache::compile(
                    &self.inner.engine,
                    &bytes,
                    path,
                    "the component cache is off",
                )
                .map_err(compile_err)?,
                CacheOutcome::Disabled,
            ),
        };
        let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
            path: path.to_owned(),
            reason: format!("{e:#}"),
        };
        // Type-checked against every interface a sink may be granted, then pre-instantiated
        // for each set of them an action's grants may link (see `linking`).
        // The version is the one of the `sink` interface it exports; a component that exports
        // neither is checked against the current world, which says what is missing.
        let engine = &self.inner.engine;
        let version = WitVersion::detect(
            component
                .component_type()
                .exports(engine)
                .map(|(name, _)| name),
        )
        .unwrap_or(WitVersion::V0_2);
        let pre = self
            .inner
            .linkers
            .get(Linking::ALL)
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        let pre = VersionedPre::new(version, pre).map_err(wrong_world)?;
        let pres = Pres::new(&self.inner.linkers, &component, version, pre).map_err(wrong_world)?;
        let plugin = Plugin {
            path: path.to_owned(),
            hash,
            loaded_at: SystemTime::now(),
            cache,
            load_time: started.elapsed(),
            manifest,
            version,
            pres,
        };
        tracing::debug!(
            path = %plugin.path.display(),
            hash = %plugin.hash,
            wit = %plugin.version,
            cache = ?plugin.cache,
            load_ms = plugin.load_time.as_secs_f64() * 1e3,
            "sink component loaded"
        );
        let plugin = Arc::new(plugin);
        self.inner
            .loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.to_owned(), Arc::downgrade(&plugin));
        Ok(plugin)
    }

    /// The component loaded from `path` earlier, if some action still runs it and neither the
    /// module nor its manifest changed since.
    fn already_loaded(&self, path: &Path, hash: &str, manifest: &Manifest) -> Option<Arc<Plugin>> {
        let mut loaded = self.inner.loaded.lock().unwrap_or_else(|e| e.into_inner());
        loaded.retain(|_, plugin| plugin.strong_count() > 0);
        let plugin = loaded.get(path)?.upgrade()?;
        (plugin.hash == hash && plugin.manifest == *manifest).then_some(plugin)
    }

    /// Creates a fresh, sandboxed instance of `plugin`: its own store, memory limit, deadline,
    /// and the grants given. Nothing is called in it yet.
    pub async fn instantiate(
        &self,
        plugin: &Arc<Plugin>,
        tag: InstanceTag,
        grants: &Grants,
    ) -> Result<WasmInstance, CallFailure> {
        instance::instantiate(self, plugin, tag, grants).await
    }

    fn engine(&self) -> &Engine {
        &self.inner.engine
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] for as long as the engine lives.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("oort-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(err) = spawned {
        tracing::error!(%err, "cannot start the epoch thread: sink calls will have no deadline");
    }
}
