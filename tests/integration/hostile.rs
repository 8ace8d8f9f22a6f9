//! DESIGN §8.5 as a property: arbitrary JSON and arbitrary bytes at every endpoint that
//! reads a body never get a 5xx, never sell, never hold.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

use crate::harness::*;

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        prop_oneof![Just("solar"), Just("80331"), Just("DE"), Just("089 1234567"), Just("a@b.de"), Just("38.00")]
            .prop_map(|s| Value::String(s.to_string())),
    ];
    let keys = prop_oneof![
        Just("vertical"),
        Just("zip"),
        Just("country"),
        Just("state"),
        Just("fields"),
        Just("email"),
        Just("phone"),
        Just("first_name"),
        Just("last_name"),
        Just("lead"),
        Just("ping_id"),
        Just("consent"),
        Just("external_id"),
        Just("amount"),
        Just("reference"),
        Just("pricing"),
        Just("filters"),
        Just("x")
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(keys.clone().prop_map(str::to_string), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn arbitrary_bodies_never_get_a_5xx_or_change_state() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (server, sink) = runtime.block_on(async {
        let sink = mock_buyer(|_, _| accept()).await;
        let server = start(json!({
            "verticals": [vertical("solar", "ping_post")],
            "suppliers": [supplier("s1", SUPPLIER_KEY)],
            "buyers": [buyer("b1")],
            "campaigns": [fixed_campaign("c1", "b1", "solar", "38.00", &sink.post_url())],
            "topups": [topup("b1", "100.00")],
        }))
        .await;
        (server, sink)
    });
    let supplier_routes = ["/v1/ping", "/v1/post", "/v1/leads"];
    let admin_routes =
        ["/admin/v1/campaigns/c9", "/admin/v1/buyers/b9", "/admin/v1/verticals/v9", "/admin/v1/suppliers/s9"];
    let mut runner = TestRunner::new(Config { cases: 300, failure_persistence: None, ..Config::default() });
    let outcome = runner.run(
        &(arbitrary_json(), proptest::collection::vec(any::<u8>(), 0..200), 0usize..8),
        |(body, bytes, route)| {
            runtime.block_on(async {
                let supplier_auth = format!("Bearer {SUPPLIER_KEY}");
                let admin_auth = format!("Bearer {ADMIN_TOKEN}");
                let (url, auth, method) = match route {
                    0..=2 => (format!("{}{}", server.base, supplier_routes[route]), supplier_auth.as_str(), "POST"),
                    3 => (format!("{}/admin/v1/buyers/b1/topups", server.ops), admin_auth.as_str(), "POST"),
                    _ => (format!("{}{}", server.ops, admin_routes[route - 4]), admin_auth.as_str(), "PUT"),
                };
                let headers = [("authorization", auth), ("content-type", "application/json")];
                for payload in [body.to_string().into_bytes(), bytes.clone()] {
                    let before = (server.balance(&buyer_key("b1")).await, server.running.router.sales().len());
                    let answer = server.send(method, &url, &headers, payload).await;
                    prop_assert!(answer.status < 500, "{url} answered {}: {}", answer.status, answer.json);
                    if answer.status >= 400 {
                        prop_assert!(answer.json["error"]["code"].is_string(), "error JSON missing: {}", answer.json);
                        let after = (server.balance(&buyer_key("b1")).await, server.running.router.sales().len());
                        prop_assert_eq!(&before, &after, "a refused request changed state");
                    }
                }
                Ok(())
            })
        },
    );
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    runtime.block_on(async {
        assert_eq!(sink.count("/post"), server.running.router.sales().len(), "every delivery is a recorded sale");
    });
}
