//! The one parser of list queries (`?status=...&limit=...`) for the native
//! API and every dialect: each surface states its spelling as a
//! [`ListSyntax`], and gets back the domain's [`LinkFilter`] and a page.
//! An unknown parameter is refused (naming it), never ignored.

use jiff::Timestamp;

use super::error::ApiError;
use crate::domain::{LinkFilter, LinkStatus};

/// Links per page unless the caller says otherwise.
pub const DEFAULT_LIMIT: usize = 20;
/// Most links per page.
pub const MAX_LIMIT: usize = 100;

/// How a surface reads its status words.
pub type StatusWords = fn(&str) -> Option<LinkStatus>;

/// How one surface spells a list query.
pub struct ListSyntax {
    /// The `status` filter: its words (for the error message) and how
    /// they read; `None` when the surface has no status filter.
    pub status: Option<(&'static str, StatusWords)>,
    /// `created_before` and `created_after` (RFC 3339).
    pub created_range: bool,
    /// `order_reference`, `product_id` and `metadata[KEY]=VALUE`.
    pub native_filters: bool,
    /// The paging parameters' names (`limit` and the last id seen), when
    /// the query is paged.
    pub paging: Option<(&'static str, &'static str)>,
}

impl ListSyntax {
    /// The native API's list: every filter, paged.
    pub const NATIVE: ListSyntax = ListSyntax {
        status: Some((
            "active, processing, paid, expired or cancelled",
            LinkStatus::parse,
        )),
        created_range: true,
        native_filters: true,
        paging: Some(("limit", "starting_after")),
    };

    /// The native filters without paging (bulk cancel, stats).
    pub const NATIVE_FILTERS: ListSyntax = ListSyntax {
        paging: None,
        ..Self::NATIVE
    };
}

#[derive(Debug)]
pub struct ListQuery {
    pub filter: LinkFilter,
    pub limit: usize,
    pub starting_after: Option<String>,
}

pub fn parse(raw: Option<&str>, syntax: &ListSyntax) -> Result<ListQuery, ApiError> {
    let mut query = ListQuery {
        filter: LinkFilter::default(),
        limit: DEFAULT_LIMIT,
        starting_after: None,
    };
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let value = value.into_owned();
        let key = key.as_ref();
        match (key, syntax) {
            (
                "status",
                ListSyntax {
                    status: Some((words, read)),
                    ..
                },
            ) => {
                query.filter.status = Some(read(&value).ok_or_else(|| {
                    ApiError::invalid("status", format!("`{value}` is not a status; use {words}."))
                })?);
            }
            (
                "created_after",
                ListSyntax {
                    created_range: true,
                    ..
                },
            ) => {
                query.filter.created_after = Some(timestamp(key, &value)?);
            }
            (
                "created_before",
                ListSyntax {
                    created_range: true,
                    ..
                },
            ) => {
                query.filter.created_before = Some(timestamp(key, &value)?);
            }
            (
                "order_reference",
                ListSyntax {
                    native_filters: true,
                    ..
                },
            ) => {
                query.filter.order_reference = Some(value);
            }
            (
                "product_id",
                ListSyntax {
                    native_filters: true,
                    ..
                },
            ) => {
                query.filter.product_id = Some(value);
            }
            (
                _,
                ListSyntax {
                    paging: Some((limit, _)),
                    ..
                },
            ) if key == *limit => {
                query.limit = page_limit(&value).ok_or_else(|| {
                    ApiError::invalid(
                        key,
                        format!("`{key}` must be an integer from 1 to {MAX_LIMIT}."),
                    )
                })?;
            }
            (
                _,
                ListSyntax {
                    paging: Some((_, after)),
                    ..
                },
            ) if key == *after => {
                query.starting_after = Some(value);
            }
            (
                _,
                ListSyntax {
                    native_filters: true,
                    ..
                },
            ) if metadata_key(key).is_some() => {
                let meta_key = metadata_key(key).unwrap_or_default();
                query.filter.metadata.push((meta_key.to_owned(), value));
            }
            _ => {
                return Err(ApiError::invalid(
                    key,
                    format!("Unknown query parameter `{key}`."),
                ));
            }
        }
    }
    Ok(query)
}

/// A list's `limit`: an integer from 1 to [`MAX_LIMIT`].
pub fn page_limit(value: &str) -> Option<usize> {
    value
        .parse()
        .ok()
        .filter(|limit| (1..=MAX_LIMIT).contains(limit))
}

/// `KEY` of `metadata[KEY]`, when not empty.
fn metadata_key(param: &str) -> Option<&str> {
    param
        .strip_prefix("metadata[")
        .and_then(|rest| rest.strip_suffix(']'))
        .filter(|key| !key.is_empty())
}

fn timestamp(param: &str, value: &str) -> Result<Timestamp, ApiError> {
    value.parse::<Timestamp>().map_err(|_| {
        ApiError::invalid(
            param,
            format!("`{param}` must be an RFC 3339 time, like 2026-01-31T12:00:00Z."),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_surface_s_spelling_and_refuses_the_rest() {
        let native = parse(
            Some("status=paid&limit=5&starting_after=plink_x&metadata[cart]=42&created_after=2026-01-01T00:00:00Z"),
            &ListSyntax::NATIVE,
        )
        .unwrap();
        assert_eq!(native.filter.status, Some(LinkStatus::Paid));
        assert_eq!(native.limit, 5);
        assert_eq!(native.starting_after.as_deref(), Some("plink_x"));
        assert_eq!(
            native.filter.metadata,
            [("cart".to_owned(), "42".to_owned())]
        );
        assert!(native.filter.created_after.is_some());

        let unpaged = parse(Some("limit=5"), &ListSyntax::NATIVE_FILTERS).unwrap_err();
        assert_eq!(unpaged.param.as_deref(), Some("limit"));

        let camel = ListSyntax {
            status: None,
            created_range: false,
            native_filters: false,
            paging: Some(("limit", "startingAfter")),
        };
        let page = parse(Some("startingAfter=plink_y&limit=100"), &camel).unwrap();
        assert_eq!(
            (page.limit, page.starting_after.as_deref()),
            (100, Some("plink_y"))
        );
        for refused in [
            "status=paid",
            "metadata[a]=b",
            "limit=0",
            "limit=101",
            "starting_after=x",
        ] {
            assert!(parse(Some(refused), &camel).is_err(), "{refused}");
        }
        let status = parse(Some("status=pending"), &ListSyntax::NATIVE).unwrap_err();
        assert_eq!(
            status.message,
            "`pending` is not a status; use active, processing, paid, expired or cancelled."
        );
    }
}
