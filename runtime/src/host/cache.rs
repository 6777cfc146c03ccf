//! The on-disk cache of compiled components, keyed by the module's content hash and the engine's
//! compatibility hash, so a restart (or a hot reload back to a known build) skips compilation.
//!
//! A cached artifact is native code that runs outside the sandbox, so the cache trusts only
//! what this user wrote: the folder is created 0700 and refused (the cache is then not used,
//! with a warning) when another user owns it or group or others may write to it; and every
//! artifact carries a blake3 keyed hash under a per-user key kept 0600 in the folder, checked
//! before the artifact is loaded. An artifact that fails the check is compiled again.

use std::fs::{File, OpenOptions};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// The bytes of the keyed hash in front of each artifact, and of the key.
const MAC_LEN: usize = blake3::OUT_LEN;
/// The file holding the per-user key, in the cache folder.
const KEY_FILE: &str = "key";

/// Where a component's compiled code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Compiled now and stored for next time.
    Compiled,
    /// Loaded from the cache: no compilation.
    Hit,
    /// Compiled now; the cache is turned off (or could not be used or written).
    Disabled,
}

/// Why the cache folder (or its key) cannot be trusted or used.
#[derive(Debug, thiserror::Error)]
pub enum CacheDirError {
    /// The folder or the key could not be created or read.
    #[error("{path}: {source}")]
    Io {
        /// The folder or key file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// Another user owns the folder or the key.
    #[error("{path} is owned by uid {owner}, not by this user (uid {uid})")]
    NotOwned {
        /// The folder or key file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// This process's effective user.
        uid: u32,
    },
    /// Group or others may write to the folder, or read or write the key.
    #[error(
        "{path} has mode {mode:o}: open to group or others (the folder must not be writable by them, the key must be 0600)"
    )]
    OpenToOthers {
        /// The folder or key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is not a key.
    #[error("{path} is not a {MAC_LEN}-byte key")]
    BadKey {
        /// The key file.
        path: PathBuf,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> CacheDirError + '_ {
    move |source| CacheDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A directory of precompiled components.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    /// A cache in `dir` (created on first use).
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

    /// Returns the compiled component for `bytes`, from the cache when it holds one this user
    /// built with a compatible engine, else compiling it and storing the result. A cache folder
    /// that cannot be trusted is not used: the component is compiled and a warning says why.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        what: &Path,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let key = match self.key() {
            Ok(key) => key,
            Err(err) => {
                tracing::warn!(%err, "component cache not used");
                let component = compile(engine, bytes, what, "the component cache is not used")?;
                return Ok((component, CacheOutcome::Disabled));
            }
        };
        let (name, path) = self.entry(engine, bytes);
        // The artifact is read into memory rather than mapped: a mapped file that someone
        // truncates under a running process would crash it.
        if let Ok(stored) = std::fs::read(&path) {
            match verified(&key, &name, &stored) {
                Some(artifact) => {
                    // SAFETY: the artifact carries a keyed hash only this user's key makes, in
                    // a folder only this user may write: it is one this cache wrote with
                    // `Component::serialize` for an engine with the same compatibility hash
                    // (part of its name), to a temporary name renamed into place, so never seen
                    // half written. Wasmtime still checks its header and refuses artifacts from
                    // another version or configuration; then it is compiled again below.
                    #[expect(unsafe_code, reason = "loading our own precompiled artifact")]
                    let loaded = unsafe { Component::deserialize(engine, artifact) };
                    match loaded {
                        Ok(component) => return Ok((component, CacheOutcome::Hit)),
                        Err(err) => {
                            tracing::warn!(path = %path.display(), %err, "unusable cache entry; recompiling");
                        }
                    }
                }
                None => tracing::warn!(
                    path = %path.display(),
                    "cache entry fails its integrity check (not written by this user's oort); recompiling"
                ),
            }
        }
        let component = compile(
            engine,
            bytes,
            what,
            "first load of this build; cached afterwards",
        )?;
        let outcome = match self.store(&key, &name, &path, &component) {
            Ok(()) => CacheOutcome::Compiled,
            Err(err) => {
                tracing::warn!(dir = %self.dir.display(), %err, "cannot write the component cache");
                CacheOutcome::Disabled
            }
        };
        Ok((component, outcome))
    }

    /// The entry's file name and path.
    fn entry(&self, engine: &Engine, bytes: &[u8]) -> (String, PathBuf) {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let content = blake3::hash(bytes).to_hex();
        let name = format!("{}-{:016x}.cwasm", &content[..32], hasher.finish());
        let path = self.dir.join(&name);
        (name, path)
    }

    fn store(
        &self,
        key: &[u8; MAC_LEN],
        name: &str,
        path: &Path,
        component: &Component,
    ) -> io::Result<()> {
        let artifact = component
            .serialize()
            .map_err(|e| io::Error::other(format!("{e:#}")))?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut file = private_file(&tmp)?;
        file.write_all(mac(key, name, &artifact).as_bytes())?;
        file.write_all(&artifact)?;
        drop(file);
        std::fs::rename(&tmp, path)
    }

    /// Creates the folder (0700) if needed, checks that only this user may write to it, and
    /// returns the per-user key kept in it, making one the first time.
    fn key(&self) -> Result<[u8; MAC_LEN], CacheDirError> {
        let dir = &self.dir;
        create_private_dir(dir).map_err(io_error(dir))?;
        let meta = std::fs::metadata(dir).map_err(io_error(dir))?;
        check_owner(dir, &meta, 0o022)?;
        let path = dir.join(KEY_FILE);
        match read_key(&path) {
            Err(CacheDirError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            // A damaged key of ours is replaced: the entries it signed are compiled again.
            Err(err @ CacheDirError::BadKey { .. }) => {
                tracing::warn!(%err, "making a new cache key");
                std::fs::remove_file(&path).map_err(io_error(&path))?;
            }
            read => return read,
        }
        // Written under a temporary name and linked into place, which fails if another
        // process was first: then its key is the one everyone uses.
        let tmp = dir.join(format!("{KEY_FILE}.tmp{}", std::process::id()));
        let key: [u8; MAC_LEN] = rand::random();
        let made = private_file(&tmp)
            .and_then(|mut file| file.write_all(&key))
            .and_then(|()| std::fs::hard_link(&tmp, &path));
        let _ = std::fs::remove_file(&tmp);
        match made {
            Ok(()) => Ok(key),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => read_key(&path),
            Err(err) => Err(io_error(&path)(err)),
        }
    }
}

/// The artifact in `stored` when its keyed hash is right.
fn verified<'a>(key: &[u8; MAC_LEN], name: &str, stored: &'a [u8]) -> Option<&'a [u8]> {
    let (tag, artifact) = stored.split_first_chunk::<MAC_LEN>()?;
    // `blake3::Hash` compares in constant time.
    (mac(key, name, artifact) == blake3::Hash::from_bytes(*tag)).then_some(artifact)
}

/// The keyed hash of an artifact stored under `name`: moving an artifact to another entry's
/// name breaks it too.
fn mac(key: &[u8; MAC_LEN], name: &str, artifact: &[u8]) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new_keyed(key);
    hasher.update(&(name.len() as u64).to_le_bytes());
    hasher.update(name.as_bytes());
    hasher.update(artifact);
    hasher.finalize()
}

fn read_key(path: &Path) -> Result<[u8; MAC_LEN], CacheDirError> {
    let mut file = File::open(path).map_err(io_error(path))?;
    let meta = file.metadata().map_err(io_error(path))?;
    check_owner(path, &meta, 0o077)?;
    let mut key = [0u8; MAC_LEN];
    let mut rest = Vec::new();
    file.read_exact(&mut key)
        .and_then(|()| file.read_to_end(&mut rest))
        .map_err(|_| CacheDirError::BadKey {
            path: path.to_path_buf(),
        })?;
    if !rest.is_empty() {
        return Err(CacheDirError::BadKey {
            path: path.to_path_buf(),
        });
    }
    Ok(key)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// A new file only this user may read or write.
fn private_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Refuses `path` unless this user owns it and none of the `forbidden` permission bits is set.
#[cfg(unix)]
fn check_owner(path: &Path, meta: &std::fs::Metadata, forbidden: u32) -> Result<(), CacheDirError> {
    use std::os::unix::fs::MetadataExt;
    let uid = rustix::process::geteuid().as_raw();
    if meta.uid() != uid {
        return Err(CacheDirError::NotOwned {
            path: path.to_path_buf(),
            owner: meta.uid(),
            uid,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & forbidden != 0 {
        return Err(CacheDirError::OpenToOthers {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_owner(_: &Path, _: &std::fs::Metadata, _: u32) -> Result<(), CacheDirError> {
    Ok(())
}

/// Compiles a component, saying so before and after: a large component (a Python or JavaScript
/// sink) takes seconds, which a run should not spend in silence.
pub fn compile(
    engine: &Engine,
    bytes: &[u8],
    what: &Path,
    why: &str,
) -> wasmtime::Result<Component> {
    tracing::info!("compiling {} ({why})", what.display());
    let started = std::time::Instant::now();
    let component = Component::new(engine, bytes)?;
    tracing::info!(
        "compiled {} in {:.1} s",
        what.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(component)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyed_hash_binds_the_artifact_to_its_key_and_name() {
        let key = [7u8; MAC_LEN];
        let mut stored = mac(&key, "a.cwasm", b"code").as_bytes().to_vec();
        stored.extend_from_slice(b"code");
        assert_eq!(verified(&key, "a.cwasm", &stored), Some(&b"code"[..]));
        assert_eq!(verified(&[8u8; MAC_LEN], "a.cwasm", &stored), None);
        assert_eq!(verified(&key, "b.cwasm", &stored), None);
        let mut tampered = stored.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(verified(&key, "a.cwasm", &tampered), None);
        assert_eq!(verified(&key, "a.cwasm", b"short"), None);
    }

    #[cfg(unix)]
    #[test]
    fn the_folder_is_made_private_and_refused_when_others_may_write() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::new(root.path().join("a").join("components"));
        let key = cache.key().unwrap();
        assert_eq!(cache.key().unwrap(), key, "the key is kept");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(cache.dir()), 0o700);
        assert_eq!(mode(&cache.dir().join(KEY_FILE)), 0o600);

        for open in [0o770, 0o707] {
            std::fs::set_permissions(cache.dir(), std::fs::Permissions::from_mode(open)).unwrap();
            let err = cache.key().unwrap_err();
            assert!(
                matches!(err, CacheDirError::OpenToOthers { mode, .. } if mode == open),
                "{err}"
            );
        }
        std::fs::set_permissions(cache.dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let key_file = cache.dir().join(KEY_FILE);
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            cache.key().unwrap_err(),
            CacheDirError::OpenToOthers { .. }
        ));
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&key_file, b"short").unwrap();
        assert_ne!(cache.key().unwrap(), key, "a damaged key is replaced");
    }
}
