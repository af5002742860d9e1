//! The blob store for merchant documents: the `document_blobs` table by default (shared by every
//! replica, no writable disk needed), a local directory as the alternative; the `BlobStore` trait is
//! the seam for an S3-compatible store.

use std::path::PathBuf;

use diesel::prelude::*;

use crate::config::{DocumentStore, MerchantSettings};
use crate::storage::schema::{document_blobs, merchant_documents};
use crate::storage::PgPool;

/// Stores and returns opaque bytes under keys chosen by the caller.
pub trait BlobStore: Send + Sync {
    /// # Errors
    /// A message when the bytes cannot be stored.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), String>;
    /// # Errors
    /// A message when the key is unknown or unreadable.
    fn get(&self, key: &str) -> Result<Vec<u8>, String>;
}

/// The configured store (`merchants.document_store`).
pub fn from_settings(settings: &MerchantSettings, pool: &PgPool) -> std::sync::Arc<dyn BlobStore> {
    match settings.document_store {
        DocumentStore::Postgres => {
            std::sync::Arc::new(Postgres::new(pool.clone()).with_legacy_dir(&settings.document_dir))
        }
        DocumentStore::Dir => std::sync::Arc::new(LocalDir::new(&settings.document_dir)),
    }
}

/// Blobs in the `document_blobs` table. Documents uploaded while the store was a directory are read
/// from `legacy` (when set and present) until `payd documents import` has copied them.
pub struct Postgres {
    pool: PgPool,
    legacy: Option<LocalDir>,
}

impl Postgres {
    pub fn new(pool: PgPool) -> Self {
        Self { pool, legacy: None }
    }

    /// Falls back to files under `dir` for keys the table does not have.
    pub fn with_legacy_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.legacy = Some(LocalDir::new(dir));
        self
    }
}

impl BlobStore for Postgres {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), String> {
        let mut conn = self.pool.get().map_err(|e| e.to_string())?;
        diesel::insert_into(document_blobs::table)
            .values((document_blobs::key.eq(key), document_blobs::bytes.eq(bytes)))
            .on_conflict(document_blobs::key)
            .do_update()
            .set(document_blobs::bytes.eq(bytes))
            .execute(&mut conn)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, String> {
        let mut conn = self.pool.get().map_err(|e| e.to_string())?;
        let found = document_blobs::table
            .find(key)
            .select(document_blobs::bytes)
            .first::<Vec<u8>>(&mut conn)
            .optional()
            .map_err(|e| e.to_string())?;
        match (found, &self.legacy) {
            (Some(bytes), _) => Ok(bytes),
            (None, Some(dir)) => dir.get(key).map_err(|e| format!("document {key} is in neither store: {e}")),
            (None, None) => Err(format!("document {key} not found")),
        }
    }
}

/// What `payd documents import` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Copied from the directory into the table.
    pub imported: usize,
    /// Already in the table.
    pub present: usize,
    /// No file under the directory.
    pub missing: Vec<String>,
    /// The file's SHA-256 differs from the one recorded at upload (not imported).
    pub corrupt: Vec<String>,
}

/// Copies every document whose bytes are not yet in `document_blobs` from `dir` into the table,
/// checking each file against the SHA-256 recorded at upload. Idempotent.
///
/// # Errors
/// A diesel error when the documents cannot be listed or a blob cannot be stored.
pub fn import_dir(conn: &mut PgConnection, dir: &std::path::Path) -> Result<ImportReport, diesel::result::Error> {
    use sha2::{Digest, Sha256};
    let rows: Vec<(String, String, Option<String>)> = merchant_documents::table
        .left_join(document_blobs::table.on(document_blobs::key.eq(merchant_documents::storage_key)))
        .select((merchant_documents::storage_key, merchant_documents::sha256, document_blobs::key.nullable()))
        .order(merchant_documents::id.asc())
        .load(conn)?;
    let local = LocalDir::new(dir);
    let mut report = ImportReport::default();
    for (key, sha, present) in rows {
        if present.is_some() {
            report.present += 1;
            continue;
        }
        let Ok(bytes) = local.get(&key) else {
            report.missing.push(key);
            continue;
        };
        if hex::encode(Sha256::digest(&bytes)) != sha {
            report.corrupt.push(key);
            continue;
        }
        diesel::insert_into(document_blobs::table)
            .values((document_blobs::key.eq(&key), document_blobs::bytes.eq(&bytes)))
            .on_conflict_do_nothing()
            .execute(conn)?;
        report.imported += 1;
    }
    Ok(report)
}

/// Writes every blob in the table to `dir` under its key (before reverting the migration); returns
/// how many were written.
///
/// # Errors
/// A message when the table cannot be read or a file cannot be written.
pub fn export_dir(conn: &mut PgConnection, dir: &std::path::Path) -> Result<usize, String> {
    let keys: Vec<String> = document_blobs::table
        .select(document_blobs::key)
        .order(document_blobs::key.asc())
        .load(conn)
        .map_err(|e| e.to_string())?;
    let local = LocalDir::new(dir);
    for key in &keys {
        let bytes: Vec<u8> =
            document_blobs::table.find(key).select(document_blobs::bytes).first(conn).map_err(|e| e.to_string())?;
        local.put(key, &bytes)?;
    }
    Ok(keys.len())
}

/// Files under a root directory; keys are flat, generated names (never user input).
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, key: &str) -> Result<PathBuf, String> {
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err("invalid blob key".into());
        }
        Ok(self.root.join(key))
    }
}

impl BlobStore for LocalDir {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), String> {
        let path = self.path(key)?;
        std::fs::create_dir_all(&self.root).map_err(|e| e.to_string())?;
        // Write then rename, so a crash never leaves a half-written document under its key.
        let tmp = self.root.join(format!(".{key}.tmp"));
        std::fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, &path).map_err(|e| e.to_string())
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, String> {
        std::fs::read(self.path(key)?).map_err(|e| e.to_string())
    }
}

/// The content type a file really has, from its first bytes: PDF, PNG or JPEG only.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sniffs_and_stores() {
        assert_eq!(sniff(b"%PDF-1.7 ..."), Some("application/pdf"));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(sniff(b"GIF89a"), None);
        let dir = std::env::temp_dir().join(format!("payd-blob-{}", uuid::Uuid::new_v4()));
        let store = LocalDir::new(&dir);
        store.put("abc-1", b"hello").unwrap();
        assert_eq!(store.get("abc-1").unwrap(), b"hello");
        assert!(store.put("../escape", b"x").is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
