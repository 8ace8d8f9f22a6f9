//! Cursors and list query strings of the router's API: `api::http::list_query` (`after`,
//! `limit` and filters of `GET /v1/returns`, `/v1/supplier/returns`, the admin lists) and
//! `api::http::numeric_cursor` (the `after` of the returns lists; `GET /v1/buyer/leads`
//! reads its `after` with the same `u64` grammar inline, in `api::public::pull_leads`,
//! which is not reachable from here).
//!
//! Laws: never panics; a refused query is a 422 naming at least one parameter; an
//! accepted one has a limit within bounds, only known filters and a non-empty `after`,
//! and the query written back from what was read reads the same; an accepted cursor,
//! printed, reads back to itself. Pure: a refusal leaves nothing behind.

#![no_main]

use leadrouter::api::http::{list_query, numeric_cursor};
use libfuzzer_sys::fuzz_target;

/// (filters, default limit, largest limit) of the list endpoints.
const LISTS: [(&[&str], usize, usize); 3] = [(&["status"], 100, 1_000), (&["status"], 50, 500), (&[], 50, 500)];

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
        assert!(list.after.is_none_or(|after| !after.is_empty()));
        assert!(list.filters.iter().all(|(name, _)| filters.contains(name)));

        let mut written = vec![format!("limit={}", list.limit)];
        written.extend(list.after.map(|after| format!("after={after}")));
        written.extend(list.filters.iter().map(|(name, value)| format!("{name}={value}")));
        let written = written.join("&");
        let again = list_query(Some(&written), filters, default, max).expect("a query written back reads");
        assert_eq!((again.after, again.limit, &again.filters), (list.after, list.limit, &list.filters));

        if let Ok(cursor) = numeric_cursor(list.after) {
            assert_eq!(numeric_cursor(Some(&cursor.to_string())), Ok(cursor));
        }
    }
    match numeric_cursor(Some(text)) {
        Ok(cursor) => assert_eq!(numeric_cursor(Some(&cursor.to_string())), Ok(cursor)),
        Err(error) => assert_eq!(error.status, 422),
    }
    assert_eq!(numeric_cursor(None), Ok(0));
});
