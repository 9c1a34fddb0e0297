//! Cursor pagination over a list ordered by a time, then an id (both
//! descending): a page's cursor names the place of its last item, and the
//! next page is everything after that place. Items added meanwhile at the
//! top never shift a later page.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use mongodb::bson::{doc, DateTime, Document};

use crate::ApiError;

/// An item's place in the order: its time (ms) and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub ms: i64,
    pub id: String,
}

/// The longest cursor [`Place::parse`] reads.
const MAX_CURSOR: usize = 512;

impl Place {
    pub fn new(at: DateTime, id: &str) -> Self {
        Self {
            ms: at.timestamp_millis(),
            id: id.to_owned(),
        }
    }

    /// The cursor a client sends back: `<ms>:<id>`, base64url, so that it is
    /// opaque and safe in a query string.
    pub fn cursor(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}", self.ms, self.id))
    }

    /// `None` for anything [`Self::cursor`] did not make.
    pub fn parse(cursor: &str) -> Option<Self> {
        if cursor.len() > MAX_CURSOR {
            return None;
        }
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
        let (ms, id) = text.split_once(':')?;
        if id.is_empty() || ms.is_empty() || !ms.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self {
            ms: ms.parse().ok()?,
            id: id.to_owned(),
        })
    }

    /// The filter for "after this place" in an order by `time_field` then
    /// `_id`, both descending.
    pub fn after(&self, time_field: &str) -> Document {
        let at = DateTime::from_millis(self.ms);
        doc! { "$or": [
            { time_field: { "$lt": at } },
            { time_field: at, "_id": { "$lt": &self.id } },
        ] }
    }
}

/// A page request's `limit` (1-100, default 50) and `before` cursor, or the
/// 422 naming the one that is wrong.
pub fn request(
    limit: Option<i64>,
    before: Option<&str>,
) -> Result<(usize, Option<Place>), ApiError> {
    let limit = limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::validation("limit", "must be between 1 and 100"));
    }
    let before = match before {
        Some(cursor) => Some(
            Place::parse(cursor)
                .ok_or_else(|| ApiError::validation("before", "not a cursor of this list"))?,
        ),
        None => None,
    };
    Ok((usize::try_from(limit).unwrap_or(50), before))
}

/// `limit` of `found` (fetched with `limit + 1`), and the cursor of the next
/// page when there is one.
pub fn split<T>(
    mut found: Vec<T>,
    limit: usize,
    place: impl Fn(&T) -> Place,
) -> (Vec<T>, Option<String>) {
    let more = found.len() > limit;
    found.truncate(limit);
    let next = if more {
        found.last().map(|last| place(last).cursor())
    } else {
        None
    };
    (found, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_names_its_place_and_nothing_else_parses() {
        let place = Place {
            ms: 1_767_000_000_123,
            id: "0190b5c8e0007000:u1".into(),
        };
        assert_eq!(Place::parse(&place.cursor()), Some(place));
        for junk in ["", "abc", "!!!", "MTIz", "OnU", &"A".repeat(600)] {
            assert_eq!(Place::parse(junk), None, "{junk}");
        }
    }

    #[test]
    fn a_page_has_a_next_cursor_only_when_more_follow() {
        let place = |n: &i64| Place {
            ms: *n,
            id: n.to_string(),
        };
        let (page, next) = split(vec![5, 4, 3], 2, place);
        assert_eq!(page, [5, 4]);
        assert_eq!(next.as_deref().and_then(Place::parse), Some(place(&4)));
        let (page, next) = split(vec![5, 4], 2, place);
        assert_eq!((page, next), (vec![5, 4], None));
    }
}
