//! Operator accounts (DESIGN §15) and the list of admin changes: `leadrouter operator add`
//! against the real binary with the password piped, accounts listed without their hashes
//! and kept over restarts (clean and `kill -9`), sign-ins verified against the stored hash,
//! and every change listed with who made it and when.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use leadrouter::domain::market::ConfigChange;
use leadrouter::domain::operator::{Actor, OperatorName, PasswordHash};
use serde_json::{json, Value};

use crate::durability::toml_of;
use crate::harness::*;

const BINARY: &str = env!("CARGO_BIN_EXE_leadrouter");
const PASSWORD: &str = "correct horse battery staple";

fn market() -> Value {
    json!({
        "verticals": [vertical("solar", "ping_post")],
        "suppliers": [supplier("s1", SUPPLIER_KEY)],
        "buyers": [buyer("b1")],
        "campaigns": [fixed_campaign("c1", "b1", "solar", "30.00", "http://127.0.0.1:9/leads")],
        "topups": [topup("b1", "100.00")],
    })
}

/// The router binary serving `config` on `data`, with the admin token it generates there.
struct Served {
    child: Child,
    ops: u16,
}

impl Served {
    async fn start(config: &Path, data: &Path) -> Served {
        let (public, ops) = (free_port(), free_port());
        let child = Command::new(BINARY)
            .args(["--config", config.to_str().unwrap(), "--data-dir", data.to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{public}"), "--ops-listen", &format!("127.0.0.1:{ops}")])
            .args(["--grpc-listen", "127.0.0.1:0"])
            .env_remove("LEADROUTER_ADMIN_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_ready(ops).await;
        Served { child, ops }
    }

    fn terminate(mut self) {
        assert!(Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    async fn admin(&self, data: &Path, method: &str, path: &str, body: Option<&Value>) -> Answer {
        let token = std::fs::read_to_string(data.join("admin-token")).unwrap().trim().to_string();
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{}{path}", self.ops))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json");
        let body = body.map(|b| bytes::Bytes::from(b.to_string())).unwrap_or_default();
        let response = client().request(request.body(http_body_util::Full::new(body)).unwrap()).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let raw = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
        let json = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Answer { status, headers, json, raw }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `leadrouter operator ARGS --data-dir DATA --ops-listen 127.0.0.1:OPS` with `stdin` piped.
fn operator(args: &[&str], data: &Path, ops: u16, stdin: &str) -> Output {
    let mut child = Command::new(BINARY)
        .arg("operator")
        .args(args)
        .args(["--data-dir", data.to_str().unwrap(), "--ops-listen", &format!("127.0.0.1:{ops}")])
        .env_remove("LEADROUTER_ADMIN_TOKEN")
        .env_remove("LEADROUTER_OPS_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn said(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// (kind, object, by) of each change listed, newest first.
fn listed(changes: &Value) -> Vec<(String, String, String)> {
    changes["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let text = |key: &str| c[key].as_str().unwrap_or_default().to_string();
            (text("kind"), text("object"), text("by"))
        })
        .collect()
}

fn entry(kind: &str, object: &str, by: &str) -> (String, String, String) {
    (kind.to_string(), object.to_string(), by.to_string())
}

#[tokio::test]
async fn operators_added_by_the_cli_are_listed_without_hashes_kept_over_restarts_and_every_change_says_who() {
    let files = tempfile::tempdir().unwrap();
    let config = files.path().join("leadrouter.toml");
    std::fs::write(&config, toml_of(&market())).unwrap();
    let data = tempfile::tempdir().unwrap();
    let node = Served::start(&config, data.path()).await;
    let ops = node.ops;

    // The password piped on stdin, hashed by the CLI, the hash sent with the token the node
    // wrote into its data dir.
    let added = operator(&["add", "alice"], data.path(), ops, &format!("{PASSWORD}\n"));
    assert_eq!(added.status.code(), Some(0), "{}", said(&added));
    assert!(said(&added).contains("operator alice added"), "{}", said(&added));

    // Refused here, before anything is sent.
    let short = operator(&["add", "bob"], data.path(), ops, "too short\n");
    assert_eq!(short.status.code(), Some(65), "{}", said(&short));
    assert!(said(&short).contains("at least 12 characters"), "{}", said(&short));
    let nothing = operator(&["add", "bob"], data.path(), ops, "");
    assert_eq!(nothing.status.code(), Some(65), "{}", said(&nothing));
    let badly_named = operator(&["add", "Bob"], data.path(), ops, &format!("{PASSWORD}\n"));
    assert_eq!(badly_named.status.code(), Some(65), "{}", said(&badly_named));
    assert!(said(&badly_named).contains("only a-z"), "{}", said(&badly_named));
    // Refused by the node, or no node at all.
    let wrong_token = operator(
        &["add", "bob", "--admin-token", "not-the-admin-token-at-all"],
        data.path(),
        ops,
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(wrong_token.status.code(), Some(77), "{}", said(&wrong_token));
    assert!(said(&wrong_token).contains("401"), "{}", said(&wrong_token));
    let nobody_there = format!("http://127.0.0.1:{}", free_port());
    let unreachable = operator(&["add", "bob", "--ops-url", &nobody_there], data.path(), ops, &format!("{PASSWORD}\n"));
    assert_eq!(unreachable.status.code(), Some(69), "{}", said(&unreachable));
    assert!(said(&unreachable).contains("cannot reach the node"), "{}", said(&unreachable));

    // A second add sets a new password.
    let replaced = operator(&["add", "alice"], data.path(), ops, "another long password\r\n");
    assert_eq!(replaced.status.code(), Some(0), "{}", said(&replaced));
    assert!(said(&replaced).contains("password replaced"), "{}", said(&replaced));

    let operators = node.admin(data.path(), "GET", "/admin/v1/operators", None).await;
    assert_eq!(operators.status, 200);
    let list = operators.json["operators"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1, "{}", operators.json);
    assert_eq!(list[0]["name"], "alice");
    let time = |key: &str| chrono::DateTime::parse_from_rfc3339(list[0][key].as_str().unwrap()).unwrap();
    assert!(time("changed_at") > time("added_at"), "{}", operators.json);
    let raw = String::from_utf8_lossy(&operators.raw).to_string();
    assert!(!raw.contains("argon2") && !raw.contains("hash"), "never a hash: {raw}");
    let one = node.admin(data.path(), "GET", "/admin/v1/operators/alice", None).await;
    assert_eq!((one.status, &one.json), (200, &list[0]));
    assert_eq!(node.admin(data.path(), "GET", "/admin/v1/operators/bob", None).await.status, 404);

    // The admin API refuses what is not an Argon2id PHC string, naming the field.
    let bcrypt = json!({"password_hash": "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"});
    let refused = node.admin(data.path(), "PUT", "/admin/v1/operators/bob", Some(&bcrypt)).await;
    assert_eq!(refused.status, 422, "{}", refused.json);
    assert_eq!(refused.json["error"]["details"][0]["field"], "password_hash", "{}", refused.json);
    let missing = node.admin(data.path(), "PUT", "/admin/v1/operators/bob", Some(&json!({}))).await;
    assert_eq!((missing.status, &missing.json["error"]["details"][0]["field"]), (422, &json!("password_hash")));
    let hash = PasswordHash::create(PASSWORD, *b"fixed-salt-16byt").unwrap();
    let good = json!({"password_hash": hash.as_stored()});
    let bad_name = node.admin(data.path(), "PUT", "/admin/v1/operators/Bob", Some(&good)).await;
    assert_eq!((bad_name.status, &bad_name.json["error"]["details"][0]["field"]), (422, &json!("name")));
    assert_eq!(node.admin(data.path(), "DELETE", "/admin/v1/operators/bob", None).await.status, 404);

    // A campaign change and a top-up, made with the admin token.
    let mut repriced = fixed_campaign("c1", "b1", "solar", "32.00", "http://127.0.0.1:9/leads");
    repriced["active"] = json!(true);
    assert_eq!(node.admin(data.path(), "PUT", "/admin/v1/campaigns/c1", Some(&repriced)).await.status, 200);
    let top_up = json!({"amount": "50.00", "reference": "wire-1"});
    assert_eq!(node.admin(data.path(), "POST", "/admin/v1/buyers/b1/topups", Some(&top_up)).await.status, 201);

    let changes = node.admin(data.path(), "GET", "/admin/v1/changes", None).await;
    assert_eq!(changes.status, 200, "{}", changes.json);
    assert_eq!(
        listed(&changes.json),
        [
            entry("top_up", "buyer b1", "admin-token"),
            entry("put_campaign", "campaign c1", "admin-token"),
            entry("put_operator", "operator alice", "admin-token"),
            entry("put_operator", "operator alice", "admin-token"),
            entry("top_up", "buyer b1", "config-file"),
        ],
        "{}",
        changes.json
    );
    let newest = &changes.json["changes"][0];
    assert_eq!(newest["summary"], "50.00 EUR, reference \"wire-1\"");
    assert!(newest["at"].as_str().is_some_and(|at| at.starts_with("20")), "{newest}");
    assert_eq!(
        changes.json["changes"][1]["summary"],
        "buyer b1, vertical solar, active, fixed 32.00, webhook delivery"
    );
    let raw = String::from_utf8_lossy(&changes.raw).to_string();
    for secret in ["argon2", WEBHOOK_SECRET, &buyer_key("b1"), SUPPLIER_KEY] {
        assert!(!raw.contains(secret), "{secret} in the list of changes: {raw}");
    }
    // Pages, newest first.
    let first = node.admin(data.path(), "GET", "/admin/v1/changes?limit=2", None).await;
    assert_eq!(listed(&first.json), listed(&changes.json)[..2]);
    let next = first.json["next"].as_str().unwrap().to_string();
    let second = node.admin(data.path(), "GET", &format!("/admin/v1/changes?limit=10&before={next}"), None).await;
    assert_eq!(listed(&second.json), listed(&changes.json)[2..]);
    assert_eq!(second.json["next"], Value::Null, "the last page");
    let bad_before = node.admin(data.path(), "GET", "/admin/v1/changes?before=yesterday", None).await;
    assert_eq!((bad_before.status, &bad_before.json["error"]["details"][0]["field"]), (422, &json!("before")));

    // A clean restart (from the checkpoint it writes as it stops): the same operator and the
    // same list, ids included.
    node.terminate();
    let node = Served::start(&config, data.path()).await;
    let again = node.admin(data.path(), "GET", "/admin/v1/operators", None).await;
    assert_eq!(again.json["operators"], json!(list));
    let changes_again = node.admin(data.path(), "GET", "/admin/v1/changes", None).await;
    assert_eq!(changes_again.json, changes.json, "the opening top-up is not booked (nor listed) twice");

    // A crash (from the journal): what was added after the checkpoint is there too.
    let added = operator(&["add", "carol"], data.path(), node.ops, &format!("{PASSWORD}\n"));
    assert_eq!(added.status.code(), Some(0), "{}", said(&added));
    node.kill();
    let node = Served::start(&config, data.path()).await;
    let names: Vec<Value> = node.admin(data.path(), "GET", "/admin/v1/operators", None).await.json["operators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].clone())
        .collect();
    assert_eq!(names, [json!("alice"), json!("carol")]);
    let after_crash = node.admin(data.path(), "GET", "/admin/v1/changes", None).await;
    assert_eq!(listed(&after_crash.json)[0], entry("put_operator", "operator carol", "admin-token"));
    assert_eq!(after_crash.json["changes"].as_array().unwrap()[1..], changes.json["changes"].as_array().unwrap()[..]);

    // Removed, and once only.
    let removed = operator(&["remove", "alice"], data.path(), node.ops, "");
    assert_eq!(removed.status.code(), Some(0), "{}", said(&removed));
    let gone = operator(&["remove", "alice"], data.path(), node.ops, "");
    assert_eq!(gone.status.code(), Some(67), "{}", said(&gone));
    let operators = node.admin(data.path(), "GET", "/admin/v1/operators", None).await;
    assert_eq!(operators.json["operators"].as_array().unwrap().len(), 1);
    let changes = node.admin(data.path(), "GET", "/admin/v1/changes?limit=1", None).await;
    assert_eq!(listed(&changes.json), [entry("delete_operator", "operator alice", "admin-token")]);
    node.terminate();
}

/// The console's sign-in: right password, wrong one, unknown name; and changes made in an
/// operator's name are listed as theirs.
#[tokio::test]
async fn a_sign_in_is_verified_against_the_stored_hash_and_changes_say_which_operator_made_them() {
    let server = start(market()).await;
    let hash = PasswordHash::create(PASSWORD, *b"fixed-salt-16byt").unwrap();
    let put = server.admin("PUT", "/admin/v1/operators/alice", Some(&json!({"password_hash": hash.as_stored()}))).await;
    assert_eq!(put.status, 201, "{}", put.json);
    let mut keys: Vec<&String> = put.json.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["added_at", "changed_at", "name"], "never the hash");
    let again =
        server.admin("PUT", "/admin/v1/operators/alice", Some(&json!({"password_hash": hash.as_stored()}))).await;
    assert_eq!(again.status, 200, "a replacement");

    let accounts = server.running.router.accounts();
    let alice = OperatorName::parse("alice", "name").unwrap();
    assert_eq!(accounts.verify_operator("alice", PASSWORD).await, Some(alice.clone()));
    assert_eq!(accounts.verify_operator("alice", "correct horse battery stapler").await, None);
    assert_eq!(accounts.verify_operator("alice", "").await, None);
    assert_eq!(accounts.verify_operator("nobody", PASSWORD).await, None);
    assert_eq!(accounts.verify_operator("Alice", PASSWORD).await, None);

    // An unknown name costs a verification too (the fastest of three of each, so a busy
    // machine's pauses do not decide it).
    let mut known = Duration::MAX;
    let mut unknown = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        accounts.verify_operator("alice", "not the password at all").await;
        known = known.min(started.elapsed());
        let started = Instant::now();
        accounts.verify_operator("mallory", "not the password at all").await;
        unknown = unknown.min(started.elapsed());
    }
    assert!(unknown * 4 > known, "an unknown name answers in {unknown:?}, a known one in {known:?}");

    // The console passes the signed-in operator as the actor.
    let by = Actor::Operator(alice);
    accounts.configure(ConfigChange::DeleteCampaign("c1".into()), &by).await.unwrap();
    accounts.top_up("b1", "5.00".parse().unwrap(), "console-1", &by).await.unwrap();
    let changes = server.admin("GET", "/admin/v1/changes?limit=3", None).await;
    assert_eq!(
        listed(&changes.json),
        [
            entry("top_up", "buyer b1", "operator:alice"),
            entry("delete_campaign", "campaign c1", "operator:alice"),
            entry("put_operator", "operator alice", "admin-token"),
        ]
    );

    // Removed: no sign-in any more.
    assert_eq!(server.admin("DELETE", "/admin/v1/operators/alice", None).await.status, 204);
    assert_eq!(accounts.verify_operator("alice", PASSWORD).await, None);
    assert_eq!(server.admin("DELETE", "/admin/v1/operators/alice", None).await.status, 404);
    server.stop().await;
}
