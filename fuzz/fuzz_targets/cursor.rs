//! Cursors and list query strings of the router's API: `api::http::list_query` (`after`,
//! `limit` and filters of `GET /v1/returns`, `/v1/supplier/returns`, `/v1/buyer/leads`,
//! the admin lists; names and values percent-decoded) and `api::http::numeric_cursor` (the
//! `after` of the returns lists and the pull endpoint).
//!
//! Laws: never panics; a refused query is a 422 naming at least one parameter; an
//! accepted one has a limit within bounds, only known filters and a non-empty `after`,
//! and the query written back (percent-encoded again) from what was read reads the same;
//! an accepted cursor, printed, reads back to itself. Pure: a refusal leaves nothing
//! behind.

#![no_main]

use leadrouter::api::http::{list_query, numeric_cursor};
use libfuzzer_sys::fuzz_target;

/// (filters, default limit, largest limit) of the list endpoints.
const LISTS: [(&[&str], usize, usize); 4] =
    [(&["status"], 100, 1_000), (&["status"], 50, 500), (&[], 50, 500), (&[], 100, 1_000)];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for (filters, default, max) in LISTS {
        let list = match list_query(Some(text), filters, default, max) {
            Ok(list) => list,
            Err(error) => {
                assert_eq!(error.status, 422);
                assert!(!error.details.is_empty());
                continue;
            }
        };
        assert!((1..=max).contains(&list.limit));
        assert!(list.after.as_ref().is_none_or(|after| !after.is_empty()));
        assert!(list.filters.iter().all(|(name, _)| filters.contains(&name.as_str())));

        let mut written = vec![("limit".to_string(), list.limit.to_string())];
        written.extend(list.after.clone().map(|after| ("after".to_string(), after)));
        written.extend(list.filters.iter().cloned());
        let written = serde_urlencoded::to_string(&written).expect("pairs of strings encode");
        let again = list_query(Some(&written), filters, default, max).expect("a query written back reads");
        assert_eq!(again, list);

        if let Ok(cursor) = numeric_cursor(list.after.as_deref()) {
            assert_eq!(numeric_cursor(Some(&cursor.to_string())), Ok(cursor));
        }
    }
    match numeric_cursor(Some(text)) {
        Ok(cursor) => assert_eq!(numeric_cursor(Some(&cursor.to_string())), Ok(cursor)),
        Err(error) => assert_eq!(error.status, 422),
    }
    assert_eq!(numeric_cursor(None), Ok(0));
});
