//! A directory on a local disk as an object store: the embedded default.
//!
//! Writes go to a temporary file in the target's directory, are fsynced,
//! then renamed over the target, so a reader never sees a half-written
//! object, even after a crash.

use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    check_key, ListOptions, ListPage, ObjectMeta, ObjectStore, StorageError, StorageErrorKind,
    StorageResult,
};

const TMP_MARKER: &str = ".skidder-tmp-";
const DEFAULT_PAGE: usize = 1000;

/// A directory as an object store: each key is a file path under the root.
///
/// Where a directory cannot do what S3 does (Skidder's layout needs none of
/// it):
/// - a key cannot also be a folder of another key: with `a/b` stored, a put
///   of `a` fails, and with `a` stored, a put of `a/b` fails (S3 holds
///   both);
/// - a file whose name is not UTF-8, or starts with `.skidder-tmp-` (a
///   write in progress, or one a crash interrupted), is never listed;
/// - each page of a listing walks every file under the prefix's deepest
///   folder.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

fn io_err(key: &str, e: std::io::Error) -> StorageError {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound => StorageErrorKind::NotFound,
        std::io::ErrorKind::AlreadyExists => StorageErrorKind::AlreadyExists,
        std::io::ErrorKind::PermissionDenied => StorageErrorKind::Unauthorized,
        std::io::ErrorKind::InvalidInput => StorageErrorKind::InvalidRequest,
        _ => StorageErrorKind::Io,
    };
    StorageError {
        kind,
        key: key.to_owned(),
        message: e.to_string(),
        source: Some(Box::new(e)),
    }
}

impl LocalStore {
    /// The store in the directory `root`, created with its parents if
    /// missing. Keys are paths relative to it.
    pub fn new(root: impl AsRef<Path>) -> StorageResult<Self> {
        let root = root.as_ref().to_path_buf();
        std::fs::create_dir_all(&root).map_err(|e| io_err(&root.display().to_string(), e))?;
        Ok(LocalStore { root })
    }

    fn path(&self, key: &str) -> StorageResult<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    /// Writes `body` to a temp file next to `path` and fsyncs it.
    fn write_temp(path: &Path, body: &[u8]) -> std::io::Result<PathBuf> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!("{TMP_MARKER}{:016x}", rand::random::<u64>()));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
        Ok(tmp)
    }

    fn sync_dir(path: &Path) {
        if let Some(dir) = path.parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
    }

    fn put_blocking(path: &Path, body: &[u8], if_absent: bool) -> std::io::Result<()> {
        let tmp = Self::write_temp(path, body)?;
        let result = if if_absent {
            // link() fails if the target exists: an atomic create-if-absent.
            std::fs::hard_link(&tmp, path).and_then(|()| std::fs::remove_file(&tmp))
        } else {
            std::fs::rename(&tmp, path)
        };
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result?;
        Self::sync_dir(path);
        Ok(())
    }

    /// All keys under `dir` (recursively), relative to the root, sorted.
    fn walk(&self, dir: &Path, out: &mut Vec<ObjectMeta>) -> std::io::Result<()> {
        // A folder or file deleted since its parent was read is left out:
        // as on S3, an object deleted during a listing may be missing from it.
        let Some(entries) = unless_gone(std::fs::read_dir(dir))? else {
            return Ok(());
        };
        for entry in entries {
            let Some(entry) = unless_gone(entry)? else {
                continue;
            };
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(TMP_MARKER) {
                continue;
            }
            let ft = entry.file_type()?;
            if ft.is_dir() {
                self.walk(&entry.path(), out)?;
            } else if ft.is_file() {
                let path = entry.path();
                let Ok(rel) = path.strip_prefix(&self.root) else {
                    continue;
                };
                let Some(key) = rel.to_str() else { continue };
                let Some(meta) = unless_gone(entry.metadata())? else {
                    continue;
                };
                out.push(ObjectMeta {
                    key: key.to_owned(),
                    size: meta.len(),
                    modified_ns: modified_ns(&meta),
                });
            }
        }
        Ok(())
    }
}

/// `None` where the file or folder does not exist (any more).
fn unless_gone<T>(r: std::io::Result<T>) -> std::io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

async fn blocking<T: Send + 'static>(
    key: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> StorageResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| io_err(key, e)),
        Err(e) => Err(StorageError::new(
            StorageErrorKind::Io,
            key,
            format!("I/O task failed: {e}"),
        )),
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put(&self, key: &str, body: Bytes) -> StorageResult<()> {
        let path = self.path(key)?;
        blocking(key, move || Self::put_blocking(&path, &body, false)).await
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> StorageResult<()> {
        let path = self.path(key)?;
        blocking(key, move || Self::put_blocking(&path, &body, true)).await
    }

    async fn put_file(&self, key: &str, source: &Path) -> StorageResult<u64> {
        let path = self.path(key)?;
        let source = source.to_path_buf();
        blocking(key, move || {
            // The source's own failures are I/O, never the key's NotFound.
            let mut src = std::fs::File::open(&source)
                .map_err(|e| std::io::Error::other(format!("reading {}: {e}", source.display())))?;
            let dir = path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir)?;
            let tmp = dir.join(format!("{TMP_MARKER}{:016x}", rand::random::<u64>()));
            let copied = std::fs::File::create(&tmp)
                .and_then(|mut f| {
                    std::io::copy(&mut src, &mut f)?;
                    f.sync_all()
                })
                .and_then(|()| std::fs::rename(&tmp, &path));
            if copied.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            copied?;
            Self::sync_dir(&path);
            Ok(1)
        })
        .await
    }

    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        let path = self.path(key)?;
        blocking(key, move || std::fs::read(path).map(Bytes::from)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StorageResult<Bytes> {
        let path = self.path(key)?;
        let k = key.to_owned();
        let r = range.clone();
        blocking(key, move || {
            use std::io::{Read, Seek, SeekFrom};
            let mut f = std::fs::File::open(path)?;
            let len = f.metadata()?.len();
            // Past the end is refused, as S3 answers 416; an empty object
            // has one readable range, `0..`, which reads nothing.
            if r.start > r.end || (r.start >= len && r.start > 0) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("range {r:?} outside object {k} of {len} bytes"),
                ));
            }
            let end = r.end.min(len);
            f.seek(SeekFrom::Start(r.start))?;
            let mut buf = vec![0; (end - r.start) as usize];
            f.read_exact(&mut buf)?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn head(&self, key: &str) -> StorageResult<ObjectMeta> {
        let path = self.path(key)?;
        let k = key.to_owned();
        blocking(key, move || {
            let m = std::fs::metadata(path)?;
            if !m.is_file() {
                return Err(std::io::ErrorKind::NotFound.into());
            }
            Ok(ObjectMeta {
                key: k,
                size: m.len(),
                modified_ns: modified_ns(&m),
            })
        })
        .await
    }

    async fn list(&self, prefix: &str, opts: ListOptions<'_>) -> StorageResult<ListPage> {
        // Walk only the deepest directory the prefix names.
        let dir_part = prefix.rfind('/').map(|i| &prefix[..i]).unwrap_or("");
        if !dir_part.is_empty() {
            check_key(dir_part)?;
        }
        let start = self.root.join(dir_part);
        let this = self.clone();
        let mut all = blocking(prefix, move || {
            let mut v = Vec::new();
            this.walk(&start, &mut v)?;
            Ok(v)
        })
        .await?;
        all.retain(|m| m.key.starts_with(prefix));
        all.sort_by(|a, b| a.key.cmp(&b.key));

        let after = match (opts.page_token, opts.start_after) {
            (Some(t), Some(s)) => t.max(s.to_owned()),
            (t, s) => t.or(s.map(str::to_owned)).unwrap_or_default(),
        };
        let max = opts.max_keys.unwrap_or(DEFAULT_PAGE).max(1);
        let mut page = ListPage::default();
        let mut last_entry = String::new();
        let mut count = 0;
        for m in all.into_iter().filter(|m| m.key > after) {
            if let Some(d) = opts.delimiter {
                if let Some(pos) = m.key[prefix.len()..].find(d) {
                    let cp = &m.key[..prefix.len() + pos + d.len()];
                    if page.common_prefixes.last().map(String::as_str) == Some(cp) {
                        continue;
                    }
                    if count == max {
                        page.next_token = Some(last_entry);
                        return Ok(page);
                    }
                    page.common_prefixes.push(cp.to_owned());
                    // Resume past every key under this common prefix.
                    last_entry = format!("{cp}\u{10FFFF}");
                    count += 1;
                    continue;
                }
            }
            if count == max {
                page.next_token = Some(last_entry);
                return Ok(page);
            }
            last_entry = m.key.clone();
            page.objects.push(m);
            count += 1;
        }
        Ok(page)
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        let path = self.path(key)?;
        blocking(key, move || {
            unless_gone(std::fs::remove_file(path)).map(drop)
        })
        .await
    }

    fn url(&self) -> String {
        format!("file://{}", self.root.display())
    }
}

/// A file's modification time in nanoseconds since the Unix epoch.
fn modified_ns(meta: &std::fs::Metadata) -> Option<i64> {
    let since = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    i64::try_from(since.as_nanos()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Objects deleted while a listing walks their folder (another
    /// indexer pruning its ledger) are left out of it, never an error.
    #[test]
    fn a_listing_survives_objects_deleted_under_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let keys: Vec<String> = (0..400).map(|i| format!("f/o{i:04}")).collect();
        let churn = |store: LocalStore, keys: Vec<String>| async move {
            for _ in 0..20 {
                for k in &keys {
                    store.put(k, Bytes::from_static(b"x")).await.unwrap();
                }
                for k in &keys {
                    store.delete(k).await.unwrap();
                }
            }
        };
        rt.block_on(async {
            let writer = tokio::spawn(churn(store.clone(), keys));
            let mut listed = 0;
            while !writer.is_finished() {
                let page = store
                    .list("f/", ListOptions::default())
                    .await
                    .expect("a listing racing deletes must not fail");
                listed += page.objects.len();
            }
            writer.await.unwrap();
            assert!(
                listed > 0,
                "no listing overlapped the writer: proved nothing"
            );
        });
    }
}
