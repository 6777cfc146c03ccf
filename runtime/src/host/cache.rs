//! The on-disk cache of compiled components, keyed by the module's content hash and the engine's
//! compatibility hash, so a restart (or a hot reload back to a known build) skips compilation.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a component's compiled code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Compiled now and stored for next time.
    Compiled,
    /// Loaded from the cache: no compilation.
    Hit,
    /// Compiled now; the cache is turned off (or could not be written).
    Disabled,
}

/// A directory of precompiled components.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// `$OORT_CACHE_DIR`, else `$XDG_CACHE_HOME/oort/components`, else
    /// `~/.cache/oort/components`.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("OORT_CACHE_DIR") {
            return Some(PathBuf::from(dir));
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("oort").join("components"))
    }

    /// The cache's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Returns the compiled component for `bytes`, from the cache when it holds one built by a
    /// compatible engine, else compiling it and storing the result.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let path = self.entry(engine, bytes);
        // The artifact is read into memory rather than mapped: a mapped file that someone
        // truncates under a running process would crash it.
        if let Ok(artifact) = std::fs::read(&path) {
            // SAFETY: the file is an artifact this cache wrote with `Component::serialize` for
            // an engine with the same compatibility hash (part of its name), written to a
            // temporary name and renamed into place, so never seen half written. Wasmtime still
            // checks its header and refuses artifacts from another version or configuration;
            // then (or if the file was damaged) the component is compiled again below.
            #[expect(unsafe_code, reason = "loading our own precompiled artifact")]
            let loaded = unsafe { Component::deserialize(engine, &artifact) };
            match loaded {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(err) => {
                    tracing::warn!(path = %path.display(), %err, "unusable cache entry; recompiling");
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        let outcome = match self.store(&path, &component) {
            Ok(()) => CacheOutcome::Compiled,
            Err(err) => {
                tracing::warn!(dir = %self.dir.display(), %err, "cannot write the component cache");
                CacheOutcome::Disabled
            }
        };
        Ok((component, outcome))
    }

    fn entry(&self, engine: &Engine, bytes: &[u8]) -> PathBuf {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let content = blake3::hash(bytes).to_hex();
        self.dir
            .join(format!("{}-{:016x}.cwasm", &content[..32], hasher.finish()))
    }

    fn store(&self, path: &Path, component: &Component) -> std::io::Result<()> {
        let artifact = component
            .serialize()
            .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        std::fs::create_dir_all(&self.dir)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, artifact)?;
        std::fs::rename(&tmp, path)
    }
}
