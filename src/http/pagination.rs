//! Cursor pagination: `limit` (1–100, default 20) and an opaque `cursor`; pages answer
//! `{"items": [...], "next_cursor": "..."|null}`.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::http::error::ApiError;

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;

#[derive(Debug, Deserialize, Default, Clone)]
pub struct PageQuery {
    /// Kept as text so the query can be `#[serde(flatten)]`ed into list filters (serde_urlencoded
    /// cannot parse numbers through flatten); parsed in [`PageQuery::resolve`].
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The page size and the decoded cursor (the last id seen).
    ///
    /// # Errors
    /// `ApiError` 422 naming `limit` or `cursor` when out of range or malformed.
    pub fn resolve(&self) -> Result<(i64, Option<i64>), ApiError> {
        let limit = match self.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(l) => l.parse().map_err(|_| ApiError::validation("limit", "limit must be an integer"))?,
        };
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::validation("limit", format!("limit must be between 1 and {MAX_LIMIT}")));
        }
        let cursor = match &self.cursor {
            None => None,
            Some(c) if c.is_empty() => None,
            Some(c) => Some(decode_cursor(c).ok_or_else(|| ApiError::validation("cursor", "cursor is malformed"))?),
        };
        Ok((limit, cursor))
    }
}

pub fn encode_cursor(id: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("c1:{id}"))
}

fn decode_cursor(c: &str) -> Option<i64> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c).ok()?;
    let s = String::from_utf8(raw).ok()?;
    s.strip_prefix("c1:")?.parse().ok()
}

#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` fetched rows: the extra row only tells that more exist.
    pub fn from_rows(mut rows: Vec<T>, limit: i64, id: impl Fn(&T) -> i64) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|r| encode_cursor(id(r)))
        } else {
            None
        };
        Self { items: rows, next_cursor }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cursor_round_trip_and_limits() {
        let q = PageQuery { limit: Some("5".into()), cursor: Some(encode_cursor(42)) };
        assert_eq!(q.resolve().unwrap(), (5, Some(42)));
        assert!(PageQuery { limit: Some("101".into()), cursor: None }.resolve().is_err());
        assert!(PageQuery { limit: Some("0".into()), cursor: None }.resolve().is_err());
        // An empty limit is not an integer (the documented type): 422, not the default.
        assert_eq!(
            PageQuery { limit: Some(String::new()), cursor: None }.resolve().unwrap_err().field.as_deref(),
            Some("limit")
        );
        assert_eq!(
            PageQuery { limit: None, cursor: Some("zz!".into()) }.resolve().unwrap_err().field.as_deref(),
            Some("cursor")
        );
    }

    #[test]
    fn page_has_cursor_only_when_more_rows_exist() {
        let p = Page::from_rows(vec![3, 2, 1], 2, |x| *x);
        assert_eq!(p.items, vec![3, 2]);
        assert_eq!(p.next_cursor, Some(encode_cursor(2)));
        let p = Page::from_rows(vec![3, 2], 2, |x| *x);
        assert!(p.next_cursor.is_none());
    }
}
