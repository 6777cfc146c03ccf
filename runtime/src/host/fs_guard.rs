//! `wasi:filesystem` with a guard in front: a sink may name only the files it was granted.
//!
//! WASI grants whole directories (preopens). To grant one file, the host preopens the file's
//! folder and this guard lets path-taking calls through only when they are made on that
//! preopened folder and name one of the granted files in it, with the granted access. Listing
//! the folder, creating folders or links, and any path on another descriptor are refused with
//! `not-permitted`. Calls that change an opened file (write, resize, set times) pass only on a
//! descriptor opened for writing from a write grant: wasmtime-wasi checks the folder's
//! permissions, and a folder holding a write grant is preopened read-write even for its
//! read-only files.

use std::collections::{HashMap, HashSet};

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemCtxView};
use wasmtime_wasi::p2::bindings::filesystem::{preopens, types};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, FsError, FsResult};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

use super::grants::{FileAccess, GrantedDir, Grants};
use super::log::InstanceTag;

/// The names one preopened folder lets a sink use.
#[derive(Debug, Default, Clone)]
pub struct Allowed {
    /// Granted file names and their access.
    pub names: Vec<(String, FileAccess)>,
    /// With a folder grant: the access to any plain file name in the folder (no `/`, `.`, `..`).
    pub any: Option<FileAccess>,
}

impl From<Vec<(String, FileAccess)>> for Allowed {
    fn from(names: Vec<(String, FileAccess)>) -> Self {
        Self { names, any: None }
    }
}

impl Allowed {
    /// The access granted to `name`, if any.
    fn access(&self, name: &str) -> Option<FileAccess> {
        if let Some((_, access)) = self.names.iter().find(|(n, _)| n == name) {
            return Some(*access);
        }
        let plain = !name.is_empty() && !name.contains('/') && name != "." && name != "..";
        self.any.filter(|_| plain)
    }
}

/// Which names each preopened folder lets a sink use.
#[derive(Debug, Default)]
pub struct FileGuard {
    /// Per preopen, in the order they were added to the WASI context: allowed file names.
    dirs: Vec<Allowed>,
    /// Descriptor handles the guest holds for preopened folders -> index into `dirs`.
    preopens: HashMap<u32, usize>,
    /// Descriptor handles of files opened for writing from a write grant: the only ones whose
    /// content or metadata a sink may change.
    writable: HashSet<u32>,
    /// Descriptor handles of the files the guest opened and has not dropped.
    open_files: HashSet<u32>,
    /// Descriptor handles of the written files whose I/O runs on the calling thread (see
    /// [`inline_file`]).
    inline: HashSet<u32>,
    /// How many files the guest may hold open at once, and whose refusals are logged.
    max_open_files: (usize, Option<InstanceTag>),
}

impl FileGuard {
    /// A guard for preopens added in this order, each allowing these names.
    pub fn new(dirs: impl IntoIterator<Item = impl Into<Allowed>>) -> Self {
        Self {
            dirs: dirs.into_iter().map(Into::into).collect(),
            preopens: HashMap::new(),
            writable: HashSet::new(),
            open_files: HashSet::new(),
            inline: HashSet::new(),
            max_open_files: (usize::MAX, None),
        }
    }

    /// Lets the guest hold at most `max` files open at once; past it, opening one fails with
    /// `quota` (not counting the preopened folders), logged under `tag`.
    pub fn with_max_open_files(mut self, max: usize, tag: InstanceTag) -> Self {
        self.max_open_files = (max, Some(tag));
        self
    }

    /// Preopens the folder of each file in `grants` in `wasi`, and returns the guard that lets
    /// the sink name just those files in them.
    pub fn preopen(wasi: &mut WasiCtxBuilder, grants: &Grants) -> Result<Self, String> {
        let mut allowed = Vec::new();
        for GrantedDir {
            dir,
            access,
            names,
            any,
        } in grants.by_dir()
        {
            let perms = match access {
                FileAccess::Read => FsPerms::ReadOnly,
                FileAccess::Write => FsPerms::ReadWrite,
            };
            wasi.preopened_dir(&dir, dir.to_string_lossy(), perms)
                .map_err(|e| format!("cannot open granted folder {}: {e:#}", dir.display()))?;
            allowed.push(Allowed { names, any });
        }
        Ok(Self::new(allowed))
    }

    /// The guarded view of the filesystem of `wasi`, whose preopens this guard was made for.
    pub fn view<'a>(
        &'a mut self,
        wasi: &'a mut WasiCtx,
        table: &'a mut ResourceTable,
    ) -> Guarded<'a> {
        Guarded {
            inner: WasiFilesystemCtxView {
                ctx: wasi.filesystem(),
                table,
            },
            guard: self,
        }
    }

    /// Refuses a call that changes the file behind `fd` unless it was opened for writing from
    /// a write grant.
    fn check_writable(&self, fd: &Resource<Descriptor>) -> FsResult<()> {
        if self.writable.contains(&fd.rep()) {
            Ok(())
        } else {
            tracing::debug!(
                fd = fd.rep(),
                "sink change to a read-only descriptor refused"
            );
            denied()
        }
    }

    fn check(&self, fd: &Resource<Descriptor>, path: &str, write: bool) -> FsResult<()> {
        let name = path.strip_prefix("./").unwrap_or(path);
        let allowed = self
            .preopens
            .get(&fd.rep())
            .and_then(|&dir| self.dirs.get(dir))
            .and_then(|allowed| allowed.access(name))
            .is_some_and(|access| !write || access == FileAccess::Write);
        if allowed {
            Ok(())
        } else {
            tracing::debug!(path, write, "sink filesystem access refused");
            Err(FsError::from(types::ErrorCode::NotPermitted))
        }
    }
}

fn denied<T>() -> FsResult<T> {
    Err(FsError::from(types::ErrorCode::NotPermitted))
}

/// Of a file a sink opened for writing from a write grant: a descriptor of its own for it when
/// its I/O may run on the thread that runs the sink's call instead of a trip through the
/// blocking pool each (wasmtime-wasi's `allow_blocking_current_thread`, for this file alone),
/// `None` when it must keep the pool.
///
/// Only a regular file on a local disk or memory filesystem (ext2/3/4, XFS, Btrfs, F2FS, ZFS,
/// bcachefs, tmpfs, ramfs, overlayfs) qualifies: a write there copies into the page cache and
/// returns, waiting on nobody but the local disk (at worst the kernel's throttling of dirty
/// pages). Each write of the guest is at most wasmtime-wasi's write budget (64 KiB), and
/// between two the guest runs wasm code, which the call's epoch deadline bounds (it yields
/// every tick and traps past the deadline), so a sink looping over writes holds its thread no
/// longer than one looping over anything else. What could block for good in the kernel keeps
/// the pool, where the call's timeout still reaches it: a FIFO or socket without a reader, a
/// device, a file on NFS, SMB, FUSE or any filesystem not named here.
fn inline_file(file: &std::fs::File) -> Option<std::fs::File> {
    if !file.metadata().ok()?.is_file() || !on_local_filesystem(file) {
        return None;
    }
    file.try_clone().ok()
}

/// Whether `file` lies on a filesystem kept on a local disk or in memory (see [`inline_file`]).
#[cfg(target_os = "linux")]
fn on_local_filesystem(file: &std::fs::File) -> bool {
    /// `statfs` magic numbers: ext2/3/4, XFS, Btrfs, F2FS, ZFS, bcachefs, tmpfs, ramfs, overlayfs.
    const LOCAL: [u32; 9] = [
        0xEF53,
        0x5846_5342,
        0x9123_683E,
        0xF2F5_2010,
        0x2FC1_2FC1,
        0xCA45_1A4E,
        0x0102_1994,
        0x8584_58F6,
        0x794C_7630,
    ];
    // The magic numbers are 32 bits, held in a wider signed field on some targets.
    rustix::fs::fstatfs(file).is_ok_and(|fs| LOCAL.contains(&(fs.f_type as u32)))
}

/// Elsewhere every file keeps the blocking pool.
#[cfg(not(target_os = "linux"))]
fn on_local_filesystem(_file: &std::fs::File) -> bool {
    false
}

/// The output stream of a file written on the calling thread (see [`inline_file`]): each write
/// the guest makes is one positioned write, done before the call returns, so the stream is
/// always ready and a flush has nothing left to wait for.
struct InlineWrites {
    file: std::sync::Arc<std::fs::File>,
    /// Where the next write goes.
    position: u64,
    /// After a failed write the stream is closed, as wasmtime-wasi's file streams are.
    closed: bool,
}

/// Bytes one write may carry (`check-write`): wasmtime-wasi's own budget for file streams.
const INLINE_WRITE_BUDGET: usize = 64 * 1024;

impl InlineWrites {
    /// The stream writing `file` from `offset` on (`None` where files keep the blocking pool).
    #[cfg(unix)]
    fn at(file: std::sync::Arc<std::fs::File>, offset: u64) -> Option<DynOutputStream> {
        Some(Box::new(Self {
            file,
            position: offset,
            closed: false,
        }))
    }

    #[cfg(not(unix))]
    fn at(_file: std::sync::Arc<std::fs::File>, _offset: u64) -> Option<DynOutputStream> {
        None
    }
}

impl wasmtime_wasi_io::streams::OutputStream for InlineWrites {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi_io::streams::StreamResult<()> {
        use wasmtime_wasi_io::streams::StreamError;
        if self.closed {
            return Err(StreamError::Closed);
        }
        if bytes.len() > INLINE_WRITE_BUDGET {
            return Err(StreamError::trap(
                "write not permitted: more bytes than check-write allowed",
            ));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            if let Err(e) = self.file.write_all_at(&bytes, self.position) {
                self.closed = true;
                return Err(StreamError::LastOperationFailed(e.into()));
            }
        }
        self.position += bytes.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> wasmtime_wasi_io::streams::StreamResult<()> {
        if self.closed {
            return Err(wasmtime_wasi_io::streams::StreamError::Closed);
        }
        Ok(())
    }

    fn check_write(&mut self) -> wasmtime_wasi_io::streams::StreamResult<usize> {
        if self.closed {
            return Err(wasmtime_wasi_io::streams::StreamError::Closed);
        }
        Ok(INLINE_WRITE_BUDGET)
    }
}

impl wasmtime_wasi_io::poll::Pollable for InlineWrites {
    /// Always ready: every write is done when it returns.
    fn ready<'a, 'b>(&'a mut self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(std::future::ready(()))
    }
}

/// The guarded view handed to the filesystem bindings.
pub struct Guarded<'a> {
    inner: WasiFilesystemCtxView<'a>,
    guard: &'a mut FileGuard,
}

/// A store whose filesystem is guarded: gives the filesystem bindings the guarded view.
pub trait FileGuardView: Send {
    /// The guarded view (see [`FileGuard::view`]).
    fn guarded_fs(&mut self) -> Guarded<'_>;
}

/// The [`HasData`] of the guarded filesystem: its bindings see only a [`Guarded`] view.
pub struct GuardedFs;

impl HasData for GuardedFs {
    type Data<'a> = Guarded<'a>;
}

/// Links the guarded `wasi:filesystem/{types,preopens}`, replacing wasmtime-wasi's: the linker
/// must allow shadowing when wasmtime-wasi's own are already in it.
pub fn add_to_linker<T: FileGuardView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    types::add_to_linker::<T, GuardedFs>(linker, T::guarded_fs)?;
    preopens::add_to_linker::<T, GuardedFs>(linker, T::guarded_fs)?;
    Ok(())
}

impl preopens::Host for Guarded<'_> {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
        let dirs = preopens::Host::get_directories(&mut self.inner)?;
        for (index, (fd, _)) in dirs.iter().enumerate() {
            self.guard.preopens.insert(fd.rep(), index);
        }
        Ok(dirs)
    }
}

impl types::Host for Guarded<'_> {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<types::ErrorCode> {
        types::Host::convert_error_code(&mut self.inner, err)
    }

    fn filesystem_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<types::ErrorCode>> {
        types::Host::filesystem_error_code(&mut self.inner, err)
    }
}

impl types::HostDirectoryEntryStream for Guarded<'_> {
    async fn read_directory_entry(
        &mut self,
        stream: Resource<types::DirectoryEntryStream>,
    ) -> FsResult<Option<types::DirectoryEntry>> {
        self.inner.read_directory_entry(stream).await
    }

    fn drop(&mut self, stream: Resource<types::DirectoryEntryStream>) -> wasmtime::Result<()> {
        types::HostDirectoryEntryStream::drop(&mut self.inner, stream)
    }
}

impl types::HostDescriptor for Guarded<'_> {
    // `advise`, `sync` and `sync-data` change neither the content nor the metadata of a file:
    // they pass on read-only descriptors too.
    async fn advise(
        &mut self,
        fd: Resource<Descriptor>,
        offset: types::Filesize,
        len: types::Filesize,
        advice: types::Advice,
    ) -> FsResult<()> {
        self.inner.advise(fd, offset, len, advice).await
    }

    async fn sync_data(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        self.inner.sync_data(fd).await
    }

    async fn get_flags(&mut self, fd: Resource<Descriptor>) -> FsResult<types::DescriptorFlags> {
        self.inner.get_flags(fd).await
    }

    async fn get_type(&mut self, fd: Resource<Descriptor>) -> FsResult<types::DescriptorType> {
        self.inner.get_type(fd).await
    }

    async fn set_size(&mut self, fd: Resource<Descriptor>, size: types::Filesize) -> FsResult<()> {
        self.guard.check_writable(&fd)?;
        self.inner.set_size(fd, size).await
    }

    async fn set_times(
        &mut self,
        fd: Resource<Descriptor>,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        // Also refuses the preopened folders, which are never in `writable`.
        self.guard.check_writable(&fd)?;
        self.inner.set_times(fd, atim, mtim).await
    }

    async fn read(
        &mut self,
        fd: Resource<Descriptor>,
        len: types::Filesize,
        offset: types::Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        self.inner.read(fd, len, offset).await
    }

    async fn write(
        &mut self,
        fd: Resource<Descriptor>,
        buf: Vec<u8>,
        offset: types::Filesize,
    ) -> FsResult<types::Filesize> {
        self.guard.check_writable(&fd)?;
        self.inner.write(fd, buf, offset).await
    }

    async fn read_directory(
        &mut self,
        _fd: Resource<Descriptor>,
    ) -> FsResult<Resource<types::DirectoryEntryStream>> {
        // Listing a granted folder would reveal the files that were not granted.
        denied()
    }

    async fn sync(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        self.inner.sync(fd).await
    }

    async fn create_directory_at(
        &mut self,
        _fd: Resource<Descriptor>,
        _path: String,
    ) -> FsResult<()> {
        denied()
    }

    async fn stat(&mut self, fd: Resource<Descriptor>) -> FsResult<types::DescriptorStat> {
        self.inner.stat(fd).await
    }

    async fn stat_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::DescriptorStat> {
        self.guard.check(&fd, &path, false)?;
        self.inner.stat_at(fd, path_flags, path).await
    }

    async fn set_times_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: types::PathFlags,
        path: String,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        self.guard.check(&fd, &path, true)?;
        self.inner
            .set_times_at(fd, path_flags, path, atim, mtim)
            .await
    }

    async fn link_at(
        &mut self,
        _fd: Resource<Descriptor>,
        _old_path_flags: types::PathFlags,
        _old_path: String,
        _new_descriptor: Resource<Descriptor>,
        _new_path: String,
    ) -> FsResult<()> {
        denied()
    }

    async fn open_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: types::PathFlags,
        path: String,
        oflags: types::OpenFlags,
        flags: types::DescriptorFlags,
    ) -> FsResult<Resource<Descriptor>> {
        let write = oflags.intersects(types::OpenFlags::CREATE | types::OpenFlags::TRUNCATE)
            || flags.intersects(
                types::DescriptorFlags::WRITE | types::DescriptorFlags::MUTATE_DIRECTORY,
            );
        if oflags.contains(types::OpenFlags::DIRECTORY) {
            return denied();
        }
        self.guard.check(&fd, &path, write)?;
        // A granted name is a file: never follow a link it may have become. (`symlink-follow`
        // is the only path flag.)
        let _ = path_flags;
        if let (max, tag) = &self.guard.max_open_files
            && self.guard.open_files.len() >= *max
        {
            let tag = tag.as_ref();
            tracing::warn!(
                rule = tag.map(|t| &*t.rule),
                action = tag.map(|t| &*t.action),
                instance = tag.map(|t| t.instance),
                "sink: opening {path:?} refused: it holds {max} open files, its limit \
                 (`maxOpenFiles`, `--max-open-files`)"
            );
            return Err(FsError::from(types::ErrorCode::Quota));
        }
        let file = self
            .inner
            .open_at(fd, types::PathFlags::empty(), path, oflags, flags)
            .await?;
        self.guard.open_files.insert(file.rep());
        // `check` let a write through only on a write grant.
        if write {
            self.guard.writable.insert(file.rep());
            if let Ok(Descriptor::File(opened)) = self.inner.table.get_mut(&file) {
                let shared = std::sync::Arc::clone(&opened.file);
                // Looked at on the blocking pool: even `fstat` can hang on a network mount.
                let inline = tokio::task::spawn_blocking(move || inline_file(&shared))
                    .await
                    .ok()
                    .flatten();
                if let Some(own) = inline {
                    *opened = wasmtime_wasi::filesystem::File::new(
                        own,
                        opened.perms,
                        opened.open_mode,
                        true,
                    );
                    self.guard.inline.insert(file.rep());
                }
            }
        }
        Ok(file)
    }

    fn drop(&mut self, fd: Resource<Descriptor>) -> wasmtime::Result<()> {
        self.guard.preopens.remove(&fd.rep());
        self.guard.writable.remove(&fd.rep());
        self.guard.open_files.remove(&fd.rep());
        self.guard.inline.remove(&fd.rep());
        types::HostDescriptor::drop(&mut self.inner, fd)
    }

    async fn readlink_at(&mut self, _fd: Resource<Descriptor>, _path: String) -> FsResult<String> {
        denied()
    }

    async fn remove_directory_at(
        &mut self,
        _fd: Resource<Descriptor>,
        _path: String,
    ) -> FsResult<()> {
        denied()
    }

    async fn rename_at(
        &mut self,
        fd: Resource<Descriptor>,
        old_path: String,
        new_fd: Resource<Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        self.guard.check(&fd, &old_path, true)?;
        self.guard.check(&new_fd, &new_path, true)?;
        self.inner.rename_at(fd, old_path, new_fd, new_path).await
    }

    async fn symlink_at(
        &mut self,
        _fd: Resource<Descriptor>,
        _src_path: String,
        _dest_path: String,
    ) -> FsResult<()> {
        denied()
    }

    async fn unlink_file_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        self.guard.check(&fd, &path, true)?;
        self.inner.unlink_file_at(fd, path).await
    }

    fn read_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
        offset: types::Filesize,
    ) -> FsResult<Resource<DynInputStream>> {
        self.inner.read_via_stream(fd, offset)
    }

    fn write_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
        offset: types::Filesize,
    ) -> FsResult<Resource<DynOutputStream>> {
        self.guard.check_writable(&fd)?;
        let inline = match self.inner.table.get(&fd) {
            Ok(Descriptor::File(f)) if self.guard.inline.contains(&fd.rep()) => {
                Some(std::sync::Arc::clone(&f.file))
            }
            _ => None,
        };
        // wasmtime-wasi's stream checks the descriptor; its writes would each take a trip
        // through the blocking pool even for a file allowed to block (only its
        // `blocking-write-and-flush` of at most 4 KiB runs in place), so it is swapped for one
        // that writes in place.
        let stream = self.inner.write_via_stream(fd, offset)?;
        match inline.and_then(|file| InlineWrites::at(file, offset)) {
            Some(writes) => {
                self.inner.table.delete(stream)?;
                Ok(self.inner.table.push(writes)?)
            }
            None => Ok(stream),
        }
    }

    fn append_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
    ) -> FsResult<Resource<DynOutputStream>> {
        self.guard.check_writable(&fd)?;
        self.inner.append_via_stream(fd)
    }

    async fn is_same_object(
        &mut self,
        a: Resource<Descriptor>,
        b: Resource<Descriptor>,
    ) -> wasmtime::Result<bool> {
        self.inner.is_same_object(a, b).await
    }

    async fn metadata_hash(
        &mut self,
        fd: Resource<Descriptor>,
    ) -> FsResult<types::MetadataHashValue> {
        self.inner.metadata_hash(fd).await
    }

    async fn metadata_hash_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::MetadataHashValue> {
        self.guard.check(&fd, &path, false)?;
        self.inner.metadata_hash_at(fd, path_flags, path).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> FileGuard {
        let mut guard = FileGuard::new(vec![
            vec![
                ("in.csv".to_string(), FileAccess::Read),
                ("out.txt".to_string(), FileAccess::Write),
            ],
            vec![("other.txt".to_string(), FileAccess::Write)],
        ]);
        // The guest was handed the folders as descriptors 7 and 9.
        guard.preopens.insert(7, 0);
        guard.preopens.insert(9, 1);
        guard
    }

    fn fd(rep: u32) -> Resource<Descriptor> {
        Resource::new_borrow(rep)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn only_a_regular_file_on_a_local_filesystem_is_written_inline() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("out.jsonl");
        let file = std::fs::File::create(&plain).unwrap();
        assert!(
            inline_file(&file).is_some(),
            "a regular file in the temporary folder, on a local filesystem"
        );
        // A FIFO without a reader would block a write for good: it keeps the blocking pool.
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Read-write: an open that does not wait for a reader.
        let pipe = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .unwrap();
        assert!(inline_file(&pipe).is_none());
        let device = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .unwrap();
        assert!(inline_file(&device).is_none());
        // procfs is no disk filesystem.
        let proc_file = std::fs::File::open("/proc/self/status").unwrap();
        assert!(!on_local_filesystem(&proc_file));
    }

    #[test]
    fn a_folder_grant_lets_plain_names_in_that_folder_only() {
        let mut guard = FileGuard::new([Allowed {
            names: Vec::new(),
            any: Some(FileAccess::Write),
        }]);
        guard.preopens.insert(7, 0);
        assert!(guard.check(&fd(7), "a.csv", true).is_ok());
        assert!(guard.check(&fd(7), "./b.csv.seq", true).is_ok());
        for path in ["../a.csv", "sub/a.csv", ".", "..", ""] {
            assert!(guard.check(&fd(7), path, true).is_err(), "{path}");
        }
        assert!(guard.check(&fd(8), "a.csv", false).is_err());
    }

    #[test]
    fn granted_names_pass_with_their_access() {
        let guard = guard();
        assert!(guard.check(&fd(7), "in.csv", false).is_ok());
        assert!(guard.check(&fd(7), "./in.csv", false).is_ok());
        assert!(guard.check(&fd(7), "out.txt", true).is_ok());
        assert!(guard.check(&fd(7), "out.txt", false).is_ok());
        assert!(guard.check(&fd(9), "other.txt", true).is_ok());
    }

    #[test]
    fn other_names_folders_and_writes_to_read_grants_are_refused() {
        let guard = guard();
        for (rep, path, write) in [
            (7, "in.csv", true),
            (7, "other.txt", false),
            (9, "in.csv", false),
            (7, "../in.csv", false),
            (7, "sub/in.csv", false),
            (7, ".", false),
            (8, "in.csv", false),
        ] {
            let refused = guard.check(&fd(rep), path, write).unwrap_err();
            assert!(
                matches!(refused.downcast_ref(), Some(types::ErrorCode::NotPermitted)),
                "{rep} {path} {write}: {refused:?}"
            );
        }
    }

    #[test]
    fn only_descriptors_opened_for_writing_may_change_their_file() {
        let mut guard = guard();
        // 11 was opened for writing from `out.txt`; 12 read-only from `in.csv`.
        guard.writable.insert(11);
        assert!(guard.check_writable(&fd(11)).is_ok());
        for rep in [12, 7, 9] {
            let refused = guard.check_writable(&fd(rep)).unwrap_err();
            assert!(
                matches!(refused.downcast_ref(), Some(types::ErrorCode::NotPermitted)),
                "{rep}: {refused:?}"
            );
        }
    }
}
