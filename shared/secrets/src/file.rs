//! A secret store in one local JSON file (`{"name": "value", ...}`): for a single machine, the CLI and
//! tests. The file is private to its owner (0600), replaced atomically on every write, and guarded by an
//! advisory lock so that two processes sharing it never lose each other's writes.

use crate::redact;
use async_trait::async_trait;
use azs_core::ports::{SecretStore, SecretStoreError};
use azs_core::{Secret, StampId};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The file's name when `AZS_USAGE_SECRETS=file` gives no path.
pub const DEFAULT_PATH: &str = "azs-usage-secrets.json";

type Entries = BTreeMap<String, String>;

/// Secrets in a JSON file. Every call reads the file under a lock, so several stores (in this process or
/// others) may share one file.
#[derive(Debug, Clone)]
pub struct FileSecretStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    lock_path: PathBuf,
    prefix: String,
    /// Serialises this store's own calls so they queue here instead of each parking a blocking thread
    /// on the file lock. Other stores and processes are kept out by the file lock alone.
    local: tokio::sync::Mutex<()>,
}

impl FileSecretStore {
    /// A store at `path` (created on the first write). Its lock is the sibling file `PATH.lock`: the
    /// data file itself cannot carry the lock because every write replaces it with a new inode.
    pub fn new(path: impl Into<PathBuf>, prefix: impl Into<String>) -> Self {
        let path = path.into();
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".lock");
        Self {
            inner: Arc::new(Inner {
                path,
                lock_path: lock_path.into(),
                prefix: prefix.into(),
                local: tokio::sync::Mutex::new(()),
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Checks now what the first call would otherwise find out: that an existing file is private.
    pub fn verify(&self) -> Result<(), SecretStoreError> {
        check_private(&self.inner.path).map_err(|e| e.into_store_error(None))
    }

    /// Runs `f` on the file's entries under the process mutex and the file lock, off the async threads.
    async fn with_entries<T: Send + 'static>(
        &self,
        exclusive: bool,
        secret: Option<&Secret>,
        f: impl FnOnce(&Inner, &mut Entries) -> Result<T, FileError> + Send + 'static,
    ) -> Result<T, SecretStoreError> {
        let _local = self.inner.local.lock().await;
        let inner = Arc::clone(&self.inner);
        let result = tokio::task::spawn_blocking(move || {
            let _lock = FileLock::acquire(&inner.lock_path, exclusive)?;
            let mut entries = read_entries(&inner.path)?;
            f(&inner, &mut entries)
        })
        .await
        .map_err(|e| SecretStoreError::Unavailable(format!("secret file task failed: {e}")))?;
        result.map_err(|e| e.into_store_error(secret))
    }
}

#[async_trait]
impl SecretStore for FileSecretStore {
    async fn put_secret(&self, name: &str, value: &Secret) -> Result<(), SecretStoreError> {
        check_name(name)?;
        let (name, plain) = (name.to_owned(), value.expose().to_owned());
        self.with_entries(true, Some(value), move |inner, entries| {
            entries.insert(name, plain);
            write_entries(&inner.path, entries)
        })
        .await
    }

    async fn get_secret(&self, name: &str) -> Result<Option<Secret>, SecretStoreError> {
        check_name(name)?;
        let name = name.to_owned();
        self.with_entries(false, None, move |_, entries| Ok(entries.remove(&name).map(Secret::new))).await
    }

    async fn delete_secret(&self, name: &str) -> Result<(), SecretStoreError> {
        check_name(name)?;
        let name = name.to_owned();
        self.with_entries(true, None, move |inner, entries| {
            if entries.remove(&name).is_some() { write_entries(&inner.path, entries) } else { Ok(()) }
        })
        .await
    }

    fn credential_name(&self, stamp: &StampId) -> String {
        format!("{}{}", self.inner.prefix, stamp)
    }
}

fn check_name(name: &str) -> Result<(), SecretStoreError> {
    if name.is_empty() {
        return Err(SecretStoreError::Refused("a secret name must not be empty".into()));
    }
    Ok(())
}

#[derive(Debug)]
enum FileError {
    Io { action: &'static str, path: PathBuf, source: io::Error },
    NotPrivate { path: PathBuf, mode: u32 },
    Corrupt { path: PathBuf, source: serde_json::Error },
}

impl FileError {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FileError {
        let path = path.to_owned();
        move |source| FileError::Io { action, path, source }
    }

    /// Permission problems and a damaged file need an operator; other I/O errors may pass.
    fn into_store_error(self, secret: Option<&Secret>) -> SecretStoreError {
        match self {
            FileError::Io { action, path, source } => {
                let message = redact(&format!("cannot {action} {}: {source}", path.display()), secret);
                match source.kind() {
                    io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                        SecretStoreError::Refused(message)
                    }
                    _ => SecretStoreError::Unavailable(message),
                }
            }
            FileError::NotPrivate { path, mode } => SecretStoreError::Refused(format!(
                "secret file {p} has mode {mode:04o}: group or others can access it; \
                 make it private to its owner with `chmod 600 {p}`",
                p = path.display()
            )),
            // serde_json's messages give a line and column, never the text.
            FileError::Corrupt { path, source } => SecretStoreError::Refused(format!(
                "secret file {} is not a JSON object of names to strings: {source}",
                path.display()
            )),
        }
    }
}

/// Refuses a file that anyone but its owner may read or write.
fn check_private(path: &Path) -> Result<(), FileError> {
    match fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(FileError::NotPrivate { path: path.to_owned(), mode });
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FileError::io("inspect", path)(e)),
    }
}

fn read_entries(path: &Path) -> Result<Entries, FileError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Entries::new()),
        Err(e) => return Err(FileError::io("open", path)(e)),
    };
    // Checked on the open handle, so the mode belongs to the very file that is read.
    let mode = file.metadata().map_err(FileError::io("inspect", path))?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(FileError::NotPrivate { path: path.to_owned(), mode });
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(FileError::io("read", path))?;
    if text.trim().is_empty() {
        return Ok(Entries::new());
    }
    serde_json::from_str(&text).map_err(|source| FileError::Corrupt { path: path.to_owned(), source })
}

/// Writes a temporary file (0600) beside the target, syncs it, renames it over the target and syncs the
/// directory: a crash leaves either the old file or the new one, never half of one.
fn write_entries(path: &Path, entries: &Entries) -> Result<(), FileError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = parent_dir(path);
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!(
        ".{file_name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let json = serde_json::to_vec_pretty(entries).expect("a map of strings always serialises");
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(FileError::io("create", &temp))?;
        file.write_all(&json).map_err(FileError::io("write", &temp))?;
        file.sync_all().map_err(FileError::io("sync", &temp))?;
        fs::rename(&temp, path).map_err(FileError::io("replace", path))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written?;
    File::open(&dir).and_then(|d| d.sync_all()).map_err(FileError::io("sync the directory of", path))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// An advisory `flock` on the lock file, released when dropped (closing the file releases it too).
struct FileLock(File);

impl FileLock {
    fn acquire(lock_path: &Path, exclusive: bool) -> Result<Self, FileError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(lock_path)
            .map_err(FileError::io("open the lock file", lock_path))?;
        if exclusive { file.lock() } else { file.lock_shared() }.map_err(FileError::io("lock", lock_path))?;
        Ok(Self(file))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}
