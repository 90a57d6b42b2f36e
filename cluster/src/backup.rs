//! `protonn backup` and `protonn restore` of the embedded store. The process that holds the
//! store (a run-mode node, or the leading coordinator) keeps every other process out with its
//! file lock, so it serves backups itself, on a Unix socket in its data directory: reachable
//! only from the same machine (or pod, by `kubectl exec`) by whoever may open that directory.
//! With no process running, `protonn backup` opens the store itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use protonn_storage::{EmbeddedStore, StorageError};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// The socket's name in the data directory.
const SOCKET: &str = "protonn.backup.sock";
/// The store's file in the data directory (the storage crate's name for it).
const STORE_FILE: &str = "protonn.redb";

/// Why a backup or a restore did not happen.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("no embedded store in {0}")]
    NoStore(PathBuf),
    #[error(
        "{0} is in use by a running process; stop it first (a restore replaces what it serves)"
    )]
    InUse(PathBuf),
    #[error("the process holding {dir} did not answer on {socket}: {source}")]
    Unreachable {
        dir: PathBuf,
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("backup by the running process failed: {0}")]
    Remote(String),
    #[error("cannot resolve {path}: {source}")]
    Path {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Serves backups of `store` on the data directory's socket until stopped or dropped.
pub(crate) struct BackupServer {
    task: tokio::task::JoinHandle<()>,
    socket: PathBuf,
}

impl BackupServer {
    /// None (logged) when the socket cannot be made, e.g. a path longer than a socket
    /// address allows: backups then need the process stopped.
    pub(crate) fn start(store: Arc<EmbeddedStore>, data_dir: &Path) -> Option<Self> {
        let socket = data_dir.join(SOCKET);
        // This process holds the store's lock, so a socket left here is a crashed
        // predecessor's.
        let _ = std::fs::remove_file(&socket);
        let listener = match UnixListener::bind(&socket) {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(socket = %socket.display(), error = %err, "no backup socket: `protonn backup` needs the process stopped");
                return None;
            }
        };
        if let Err(err) =
            std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        {
            tracing::warn!(error = %err, "cannot restrict the backup socket to its owner");
        }
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    if let Err(err) = answer(stream, &store).await {
                        tracing::warn!(error = %err, "backup request failed");
                    }
                });
            }
        });
        Some(Self { task, socket })
    }

    /// Stops serving and waits until the store is let go.
    pub(crate) async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for BackupServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// One request: the destination path on a line; the answer `ok ROWS` or `error MESSAGE`.
async fn answer(stream: UnixStream, store: &EmbeddedStore) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let answer = match store.backup(Path::new(line.trim_end_matches('\n'))).await {
        Ok(rows) => {
            tracing::info!(dest = line.trim_end(), rows, "backup written");
            format!("ok {rows}\n")
        }
        Err(err) => format!("error {err}\n"),
    };
    write.write_all(answer.as_bytes()).await
}

/// Writes a consistent copy of the store in `data_dir` to `dest` (which must not exist),
/// through the running process if one holds it; answers the rows copied.
pub async fn backup(data_dir: &Path, dest: &Path) -> Result<u64, BackupError> {
    if !data_dir.join(STORE_FILE).exists() {
        return Err(BackupError::NoStore(data_dir.to_owned()));
    }
    let dest = absolute(dest)?;
    match EmbeddedStore::open(data_dir) {
        Ok(store) => Ok(store.backup(&dest).await?),
        Err(StorageError::Locked(_)) => ask(data_dir, &dest).await,
        Err(err) => Err(err.into()),
    }
}

/// Replaces the store in `data_dir` with the backup at `file`; refused while a process has
/// the store open.
pub fn restore(data_dir: &Path, file: &Path) -> Result<u64, BackupError> {
    match EmbeddedStore::restore(file, data_dir) {
        Err(StorageError::Locked(dir)) => Err(BackupError::InUse(dir)),
        other => Ok(other?),
    }
}

/// The running process writes the file: its path must mean the same there, so absolute.
fn absolute(path: &Path) -> Result<PathBuf, BackupError> {
    std::path::absolute(path).map_err(|source| BackupError::Path {
        path: path.to_owned(),
        source,
    })
}

async fn ask(data_dir: &Path, dest: &Path) -> Result<u64, BackupError> {
    let socket = data_dir.join(SOCKET);
    let unreachable = |source| BackupError::Unreachable {
        dir: data_dir.to_owned(),
        socket: socket.clone(),
        source,
    };
    let stream = UnixStream::connect(&socket).await.map_err(unreachable)?;
    let (read, mut write) = stream.into_split();
    write
        .write_all(format!("{}\n", dest.display()).as_bytes())
        .await
        .map_err(unreachable)?;
    let mut answer = String::new();
    BufReader::new(read)
        .read_line(&mut answer)
        .await
        .map_err(unreachable)?;
    let answer = answer.trim_end();
    match answer.split_once(' ') {
        Some(("ok", rows)) => rows
            .parse()
            .map_err(|_| BackupError::Remote(format!("unexpected answer `{answer}`"))),
        Some(("error", message)) => Err(BackupError::Remote(message.to_owned())),
        _ => Err(BackupError::Remote(format!("unexpected answer `{answer}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protonn_storage::{GuildConfig, GuildConfigRepo};

    fn config(prefix: &str) -> GuildConfig {
        GuildConfig {
            prefix: prefix.to_owned(),
            ..GuildConfig::default()
        }
    }

    #[tokio::test]
    async fn a_running_store_is_backed_up_through_its_process_and_restored_once_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        store.save(5, 0, &config("!")).await.unwrap();
        let server = BackupServer::start(Arc::clone(&store), dir.path()).unwrap();

        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("b.redb");
        let rows = backup(dir.path(), &file).await.unwrap();
        assert!(rows > 0);
        let err = backup(dir.path(), &file).await.unwrap_err();
        assert!(
            matches!(&err, BackupError::Remote(m) if m.contains("already exists")),
            "{err}"
        );

        // The store moves on; a restore while it runs is refused.
        store.save(5, 1, &config("?")).await.unwrap();
        let err = restore(dir.path(), &file).unwrap_err();
        assert!(matches!(err, BackupError::InUse(_)), "{err}");

        server.stop().await;
        drop(store);
        assert_eq!(restore(dir.path(), &file).unwrap(), rows);
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.load(5).await.unwrap().unwrap().config.prefix, "!");

        // Stopped, the CLI opens the store itself.
        drop(store);
        let offline = out.path().join("offline.redb");
        assert_eq!(backup(dir.path(), &offline).await.unwrap(), rows);
        let empty = tempfile::tempdir().unwrap();
        let err = backup(empty.path(), &out.path().join("x"))
            .await
            .unwrap_err();
        assert!(matches!(err, BackupError::NoStore(_)), "{err}");
    }
}
