//! The registry's bytes on disk, content-addressed:
//!
//! ```text
//! <registry dir>/blobs/sha256/<first two hex digits>/<hex>   one file per blob, however many
//!                                                            repositories use it
//! <registry dir>/uploads/<session id>                        an upload's bytes so far
//! ```
//!
//! Uploads stream to their file while a SHA-256 of everything received is kept beside them, so
//! a finished upload is checked against its digest without reading it again. Only a verified
//! upload is moved (renamed) into `blobs/`: a bad upload is never served.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use uuid::Uuid;

use super::path::Digest;

/// Writes are gathered into buffers this big before they go to the file.
const WRITE_BUFFER: usize = 1024 * 1024;

pub struct Storage {
    dir: PathBuf,
    /// The running hash of each upload session this process has seen, behind a lock per
    /// session that also keeps two requests from appending to one upload at once.
    sessions: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<Option<Running>>>>>,
    /// Uploads commit blobs under the shared side; garbage collection deletes them under the
    /// exclusive side, so a blob stored again while it runs is not deleted under it.
    commits: tokio::sync::RwLock<()>,
}

/// An upload's bytes so far and their hash.
#[derive(Clone)]
pub struct Running {
    pub size: u64,
    hasher: Sha256,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").field("size", &self.size).finish()
    }
}

impl Running {
    pub fn digest(&self) -> Digest {
        Digest::from_sha256(&self.hasher.clone().finalize())
    }
}

/// Why an append stopped. The upload is left as it was before the append.
#[derive(Debug)]
pub enum AppendError {
    /// The upload would exceed the limit it was given.
    TooLarge,
    /// The client's body broke off.
    Body(String),
    Io(std::io::Error),
}

impl From<std::io::Error> for AppendError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

impl Storage {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            sessions: Mutex::new(HashMap::new()),
            commits: tokio::sync::RwLock::new(()),
        }
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.dir.join("blobs/sha256").join(&hex[..2]).join(hex)
    }

    fn upload_path(&self, id: Uuid) -> PathBuf {
        self.dir.join("uploads").join(id.to_string())
    }

    /// Creates the empty file of a new upload session.
    pub async fn start_upload(&self, id: Uuid) -> std::io::Result<()> {
        let path = self.upload_path(id);
        tokio::fs::create_dir_all(path.parent().expect("uploads/<id> has a parent")).await?;
        tokio::fs::File::create(&path).await?;
        Ok(())
    }

    /// The lock of one upload session; holding it, a request may read and extend the upload.
    pub fn session(&self, id: Uuid) -> Arc<tokio::sync::Mutex<Option<Running>>> {
        self.sessions
            .lock()
            .expect("upload sessions poisoned")
            .entry(id)
            .or_default()
            .clone()
    }

    /// The upload's state: kept in memory, or (after a restart) rebuilt from its file, which
    /// `recorded_size` (what the database acknowledged) truncates: bytes past it were never
    /// acknowledged.
    pub async fn running(
        &self,
        id: Uuid,
        held: &mut Option<Running>,
        recorded_size: u64,
    ) -> std::io::Result<Running> {
        if let Some(running) = held.as_ref().filter(|r| r.size == recorded_size) {
            return Ok(running.clone());
        }
        let path = self.upload_path(id);
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .await?;
        file.set_len(recorded_size).await?;
        drop(file);
        let mut file = tokio::fs::File::open(&path).await?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; WRITE_BUFFER];
        loop {
            let n = file.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let running = Running {
            size: recorded_size,
            hasher,
        };
        *held = Some(running.clone());
        Ok(running)
    }

    /// Appends the body to the upload, hashing as it streams, up to `limit` bytes in all.
    /// On any error the file is cut back to where it was.
    pub async fn append(
        &self,
        id: Uuid,
        from: Running,
        body: Body,
        limit: u64,
    ) -> Result<Running, AppendError> {
        let path = self.upload_path(id);
        let file = tokio::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .await?;
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut running = from.clone();
        let mut stream = body.into_data_stream();
        let result: Result<(), AppendError> = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| AppendError::Body(e.to_string()))?;
                running.size += chunk.len() as u64;
                if running.size > limit {
                    return Err(AppendError::TooLarge);
                }
                running.hasher.update(&chunk);
                out.write_all(&chunk).await?;
            }
            out.flush().await?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            drop(out);
            let file = tokio::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .await?;
            file.set_len(from.size).await?;
            return Err(e);
        }
        Ok(running)
    }

    /// Moves a verified upload into the blob store (a blob already there stays as it is).
    pub async fn commit(&self, id: Uuid, digest: &Digest) -> std::io::Result<()> {
        let target = self.blob_path(digest);
        tokio::fs::create_dir_all(target.parent().expect("blob path has a parent")).await?;
        tokio::fs::rename(self.upload_path(id), &target).await?;
        self.forget(id);
        Ok(())
    }

    /// Held while a blob is moved into the store and recorded.
    pub async fn committing(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.commits.read().await
    }

    /// Held while unused blobs are deleted.
    pub async fn collecting(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.commits.write().await
    }

    /// Removes a blob's file (garbage collection, after its row went).
    pub async fn delete_blob(&self, digest: &Digest) -> std::io::Result<()> {
        match tokio::fs::remove_file(self.blob_path(digest)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Deletes an upload's file (cancelled, failed, expired).
    pub async fn discard(&self, id: Uuid) -> std::io::Result<()> {
        self.forget(id);
        match tokio::fs::remove_file(self.upload_path(id)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn forget(&self, id: Uuid) {
        self.sessions
            .lock()
            .expect("upload sessions poisoned")
            .remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunks_hash_as_one_and_a_failed_append_leaves_the_upload_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let store = Storage::new(dir.path().to_path_buf());
        let id = Uuid::new_v4();
        store.start_upload(id).await.unwrap();
        let lock = store.session(id);
        let mut held = lock.lock().await;
        let start = store.running(id, &mut held, 0).await.unwrap();
        let one = store
            .append(id, start, Body::from("hello "), 100)
            .await
            .unwrap();
        let two = store
            .append(id, one.clone(), Body::from("world"), 100)
            .await
            .unwrap();
        assert_eq!(two.size, 11);
        assert_eq!(
            two.digest(),
            Digest::from_sha256(&Sha256::digest(b"hello world"))
        );

        // Over the limit: refused, and the file is cut back.
        let err = store
            .append(id, two.clone(), Body::from("x".repeat(200)), 100)
            .await
            .unwrap_err();
        assert!(matches!(err, AppendError::TooLarge));
        assert_eq!(std::fs::metadata(store.upload_path(id)).unwrap().len(), 11);

        // After a restart the hash is rebuilt from the file, cut to the acknowledged size.
        let mut forgotten = None;
        let rebuilt = store.running(id, &mut forgotten, 6).await.unwrap();
        assert_eq!(
            rebuilt.digest(),
            Digest::from_sha256(&Sha256::digest(b"hello "))
        );

        store.commit(id, &rebuilt.digest()).await.unwrap();
        let stored = std::fs::read(store.blob_path(&rebuilt.digest())).unwrap();
        assert_eq!(stored, b"hello ");
    }
}
