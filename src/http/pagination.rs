//! Cursor pagination: `limit` (1–100, default 20) and an opaque `cursor`; pages answer
//! `{"items": [...], "next_cursor": "..."|null}`. Lists that can count cheaply also take
//! `include_total=true` and then answer `"total": N` (no count is run without it); the free-text
//! `search` parameter of lists is checked and escaped here once.

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
    /// `true` asks for `"total"` on lists that count (see [`PageQuery::resolve_with_total`]).
    pub include_total: Option<String>,
}

/// The longest free-text `search` a list accepts (characters).
pub const MAX_SEARCH: usize = 100;

/// The `ILIKE` pattern for a free-text `search`: a substring match where `%`, `_` and `\` are matched
/// literally.
///
/// # Errors
/// 422 naming `search` when longer than [`MAX_SEARCH`] characters.
pub fn search_pattern(s: &str) -> Result<String, ApiError> {
    if s.chars().count() > MAX_SEARCH {
        return Err(ApiError::validation("search", format!("search must be at most {MAX_SEARCH} characters")));
    }
    let escaped = s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    Ok(format!("%{escaped}%"))
}

/// [`search_pattern`] of an optional, possibly empty `search` (empty means no search).
///
/// # Errors
/// As [`search_pattern`].
pub fn search_opt(s: Option<&str>) -> Result<Option<String>, ApiError> {
    s.filter(|s| !s.is_empty()).map(search_pattern).transpose()
}

impl PageQuery {
    /// The page size and the decoded cursor (the last id seen).
    ///
    /// # Errors
    /// `ApiError` 422 naming `limit` or `cursor` when out of range or malformed.
    pub fn resolve(&self) -> Result<(i64, Option<i64>), ApiError> {
        if self.total_requested()? {
            return Err(ApiError::validation("include_total", "this list does not count its rows; omit include_total"));
        }
        self.resolve_page()
    }

    /// As [`PageQuery::resolve`], for lists that can count: also whether `include_total=true` was asked.
    ///
    /// # Errors
    /// As [`PageQuery::resolve`]; 422 naming `include_total` when it is not `true` or `false`.
    pub fn resolve_with_total(&self) -> Result<(i64, Option<i64>, bool), ApiError> {
        let total = self.total_requested()?;
        let (limit, cursor) = self.resolve_page()?;
        Ok((limit, cursor, total))
    }

    fn total_requested(&self) -> Result<bool, ApiError> {
        match self.include_total.as_deref() {
            None | Some("" | "false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(ApiError::validation("include_total", "include_total must be true or false")),
        }
    }

    fn resolve_page(&self) -> Result<(i64, Option<i64>), ApiError> {
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
    /// Every row matching the filters (all pages); only when `include_total=true` was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` fetched rows: the extra row only tells that more exist.
    /// The page with its total.
    #[must_use]
    pub fn with_total(mut self, total: Option<i64>) -> Self {
        self.total = total;
        self
    }

    pub fn from_rows(mut rows: Vec<T>, limit: i64, id: impl Fn(&T) -> i64) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|r| encode_cursor(id(r)))
        } else {
            None
        };
        Self { items: rows, next_cursor, total: None }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cursor_round_trip_and_limits() {
        let q = PageQuery { limit: Some("5".into()), cursor: Some(encode_cursor(42)), include_total: None };
        assert_eq!(q.resolve().unwrap(), (5, Some(42)));
        let page = |l: &str| PageQuery { limit: Some(l.into()), ..PageQuery::default() };
        assert!(page("101").resolve().is_err());
        assert!(page("0").resolve().is_err());
        // An empty limit is not an integer (the documented type): 422, not the default.
        assert_eq!(page("").resolve().unwrap_err().field.as_deref(), Some("limit"));
        assert_eq!(
            PageQuery { cursor: Some("zz!".into()), ..PageQuery::default() }.resolve().unwrap_err().field.as_deref(),
            Some("cursor")
        );
        let total = |t: &str| PageQuery { include_total: Some(t.into()), ..PageQuery::default() };
        assert_eq!(total("true").resolve().unwrap_err().field.as_deref(), Some("include_total"));
        assert_eq!(total("true").resolve_with_total().unwrap(), (DEFAULT_LIMIT, None, true));
        assert!(!total("false").resolve_with_total().unwrap().2);
        assert_eq!(total("yes").resolve_with_total().unwrap_err().field.as_deref(), Some("include_total"));
    }

    #[test]
    fn search_is_escaped_and_bounded() {
        assert_eq!(search_pattern("50%_a\\b").unwrap(), "%50\\%\\_a\\\\b%");
        assert_eq!(search_pattern(&"x".repeat(10_000)).unwrap_err().field.as_deref(), Some("search"));
        assert_eq!(search_opt(Some("")).unwrap(), None);
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
