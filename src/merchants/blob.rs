//! The blob store for merchant documents: a local directory by default; the `BlobStore` trait is the
//! seam for an S3-compatible store.

use std::path::PathBuf;

/// Stores and returns opaque bytes under keys chosen by the caller.
pub trait BlobStore: Send + Sync {
    /// # Errors
    /// A message when the bytes cannot be stored.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), String>;
    /// # Errors
    /// A message when the key is unknown or unreadable.
    fn get(&self, key: &str) -> Result<Vec<u8>, String>;
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
