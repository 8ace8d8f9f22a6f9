//! Checks of the deploy stack (`deploy/`) that need no Docker and no cluster: the alert
//! rules and the Prometheus config pass `promtool`, the alert rules' unit tests pass, the
//! dashboard's queries parse as PromQL, every metric the dashboard and the alerts name is
//! one the code exports, and the compose file, the Kubernetes manifests, the Dockerfile and
//! the mounted market configuration say what deploy/README.md promises.
//!
//! promtool comes with Debian's `prometheus` package (scripts/test.sh installs it); without
//! it the promtool checks print a note and pass, except under CI, where they fail.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use leadrouter::domain::geo::PostalTable;
use leadrouter::domain::market::Market;
use leadrouter::server::FileConfig;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap_or_else(|e| panic!("reading {relative}: {e}"))
}

/// Runs `promtool` with `args` in `dir` and asserts it succeeds. Returns false (after a
/// note) when promtool is not installed, which fails the test under CI.
fn promtool(dir: &Path, args: &[&str]) -> bool {
    let Ok(output) = Command::new("promtool").args(args).current_dir(dir).output() else {
        assert!(std::env::var("CI").is_err(), "promtool must be installed in CI");
        eprintln!("promtool not installed; skipping `promtool {}`", args.join(" "));
        return false;
    };
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "promtool {} failed:\n{report}", args.join(" "));
    true
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let dir = root().join("deploy/prometheus");
    if promtool(&dir, &["check", "rules", "alerts.yml"]) {
        // alerts.test.yml feeds series to each rule and states what fires, with which labels.
        promtool(&dir, &["test", "rules", "alerts.test.yml"]);
    }
}

#[test]
fn prometheus_config_passes_promtool_and_scrapes_every_node_and_the_worker() {
    promtool(&root().join("deploy/prometheus"), &["check", "config", "prometheus.yml"]);
    let config = read("deploy/prometheus/prometheus.yml");
    for target in ["router-1:9090", "router-2:9090", "router-3:9090", "billing:9191"] {
        assert!(config.contains(&format!("- {target}")), "prometheus.yml does not scrape {target}");
    }
    assert!(config.contains("rule_files:\n  - alerts.yml"), "prometheus.yml must load alerts.yml");
}

/// The dashboard's PromQL, with Grafana's variables replaced by values, as recording rules:
/// `promtool check rules` then parses every query.
#[test]
fn dashboard_queries_parse_as_promql() {
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (index, expr) in dashboard_exprs(&dashboard()).iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "1m")
            .replace("$__range", "1h")
            .replace("$__interval", "15s")
            .replace("$vertical", ".*");
        assert!(!expr.contains('$'), "a Grafana variable the test does not know: {expr}");
        // A JSON string is a valid YAML double-quoted scalar.
        rules
            .push_str(&format!("      - record: dashboard:query_{index}\n        expr: {}\n", serde_json::json!(expr)));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dashboard-rules.yml"), rules).unwrap();
    promtool(dir.path(), &["check", "rules", "dashboard-rules.yml"]);
}

#[test]
fn every_metric_the_dashboard_and_the_alerts_name_is_exported_by_the_code() {
    let defined = defined_metrics();
    for name in [
        "leadrouter_pings_total",
        "leadrouter_decision_duration_seconds",
        "leadrouter_outbox_pending",
        "leadrouter_billing_ledger_lag",
        "leadrouter_billing_notifications_pending",
    ] {
        assert!(defined.contains(name), "the scan of the code misses {name}: {defined:?}");
    }
    for file in [
        "deploy/grafana/dashboards/leadrouter.json",
        "deploy/prometheus/alerts.yml",
        "deploy/prometheus/alerts.test.yml",
    ] {
        let used = used_metrics(&read(file));
        assert!(used.len() >= 3, "{file} names hardly any metric: {used:?}");
        let unknown: Vec<&String> = used.difference(&defined).collect();
        assert!(unknown.is_empty(), "{file} names metrics the code does not export: {unknown:?}");
    }
}

#[test]
fn the_dashboard_is_grafana_json_with_the_panels_operators_need() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "leadrouter");
    let schema = dashboard["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut boxes = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(ids.insert(panel["id"].as_u64().expect("panel id")), "duplicate panel id in {title}");
        let grid = &panel["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| grid[k].as_u64().unwrap_or_else(|| panel_error(title, k)));
        assert!(x + w <= 24 && w > 0 && h > 0, "{title}: gridPos out of the 24 columns");
        for &(other, ox, oy, ow, oh) in &boxes {
            let overlap = x < ox + ow && ox < x + w && y < oy + oh && oy < y + h;
            assert!(!overlap, "{title} overlaps {other}");
        }
        boxes.push((title, x, y, w, h));
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "prometheus", "{title}: datasource");
        let targets =
            panel["targets"].as_array().filter(|t| !t.is_empty()).unwrap_or_else(|| panel_error(title, "targets"));
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "prometheus", "{title}: target datasource");
            assert!(target["expr"].as_str().is_some_and(|e| !e.trim().is_empty()), "{title}: empty query");
        }
    }
    for variable in dashboard["templating"]["list"].as_array().expect("templating") {
        assert_eq!(variable["datasource"]["uid"], "prometheus", "variable {}", variable["name"]);
    }

    // What the dashboard must show (issue 6): each is a fragment of some panel's query.
    let exprs = dashboard_exprs(&dashboard).join("\n");
    for needed in [
        "rate(leadrouter_pings_total",
        "rate(leadrouter_posts_total",
        "rate(leadrouter_leads_total",
        "histogram_quantile(0.5, sum by (le) (rate(leadrouter_decision_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(leadrouter_decision_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (le, route) (rate(leadrouter_http_request_duration_seconds_bucket",
        "sum by (buyer) (rate(leadrouter_buyer_requests_total{outcome=\"bid\"}",
        "sum by (buyer) (rate(leadrouter_buyer_requests_total{outcome=\"timeout\"}",
        "sum by (currency) (increase(leadrouter_revenue_total",
        "by (buyer) (leadrouter_buyer_available_balance)",
        "leadrouter_ledger_sequence",
        "leadrouter_billing_ledger_lag",
        "leadrouter_outbox_pending",
    ] {
        assert!(exprs.contains(needed), "no dashboard query contains {needed}");
    }

    // Grafana finds it: the datasource uid and the provisioned path match the compose mounts.
    let datasource = read("deploy/grafana/provisioning/datasources/prometheus.yaml");
    assert!(datasource.contains("uid: prometheus") && datasource.contains("url: http://prometheus:9090"));
    let provider = read("deploy/grafana/provisioning/dashboards/dashboards.yaml");
    assert!(provider.contains("path: /etc/grafana/dashboards"));
    let compose = read("deploy/compose.yaml");
    assert!(compose.contains("./grafana/dashboards:/etc/grafana/dashboards:ro"));
    assert!(compose.contains("./grafana/provisioning:/etc/grafana/provisioning:ro"));
}

#[test]
fn compose_runs_three_routers_on_redis_behind_nginx_with_billing_and_monitoring() {
    let compose = read("deploy/compose.yaml");
    let services = compose_services(&compose);
    let names: Vec<&str> = services.iter().map(|(name, _)| name.as_str()).collect();
    for name in ["router-1", "router-2", "router-3", "nginx", "redis", "billing", "prometheus", "grafana"] {
        assert!(names.contains(&name), "compose.yaml has no service {name}: {names:?}");
    }
    let service = |name: &str| services.iter().find(|(n, _)| n == name).map(|(_, block)| block.as_str()).unwrap();
    for router in ["router-1", "router-2", "router-3"] {
        let block = service(router);
        for flag in [
            "--listen 0.0.0.0:8080",
            "--ops-listen 0.0.0.0:9090",
            "--grpc-listen 0.0.0.0:50051",
            "--data-dir /data",
            "--redis redis://redis:6379",
            "--config /etc/leadrouter/market.toml",
            "--admin-token ${LEADROUTER_ADMIN_TOKEN",
        ] {
            assert!(block.contains(flag), "{router} is not started with {flag}");
        }
        assert!(block.contains("./market.toml:/etc/leadrouter/market.toml:ro"), "{router} lacks the market");
        assert!(block.contains(&format!("{router}-data:/data")), "{router} lacks its own data volume");
    }
    // The shared router settings: image and the /healthz + /readyz healthcheck.
    let anchor = compose.split("\nservices:").next().unwrap();
    assert!(anchor.contains("http://127.0.0.1:9090/healthz") && anchor.contains("http://127.0.0.1:9090/readyz"));
    assert!(anchor.contains("LEADROUTER_DEDUP_SECRET: ${LEADROUTER_DEDUP_SECRET:?"), "one dedup secret for all nodes");
    assert!(read("deploy/.env.example").contains("\nLEADROUTER_DEDUP_SECRET="));
    let redis = service("redis");
    assert!(redis.contains("image: redis:7"), "Redis 7");
    assert!(redis.contains("--appendonly yes") && redis.contains("--appendfsync always"), "Redis without AOF fsync");
    assert!(redis.contains("redis-data:/data"), "Redis without a volume");
    let billing = service("billing");
    assert!(billing.contains(
        "leadrouter-billing serve --ledger http://router-1:50051 --db /data/billing.db --listen 0.0.0.0:9191"
    ));
    assert!(billing.contains("http://127.0.0.1:9191/healthz"));
    assert!(service("prometheus").contains("./prometheus:/etc/prometheus:ro"));
    let nginx = service("nginx");
    assert!(nginx.contains("./nginx.conf:/etc/nginx/nginx.conf:ro") && nginx.contains("\"8080:8080\""));

    // nginx balances the public API over the three nodes.
    let nginx_conf = read("deploy/nginx.conf");
    for router in ["router-1", "router-2", "router-3"] {
        assert!(nginx_conf.contains(&format!("server {router}:8080")), "nginx.conf lacks {router}:8080");
    }
    assert!(nginx_conf.contains("proxy_pass http://leadrouter_public;"));
    let directives = nginx_conf.lines().map(str::trim).filter(|line| line.starts_with("proxy_next_upstream "));
    for directive in directives {
        assert!(!directive.contains("non_idempotent"), "nginx must never re-send a POST to another node");
    }

    // Every variable compose interpolates is in the example env file.
    let example = read("deploy/.env.example");
    for variable in compose.split("${").skip(1).map(|rest| rest.split([':', '}', '-']).next().unwrap()) {
        assert!(example.contains(&format!("\n{variable}=")), "{variable} is not in deploy/.env.example");
    }
}

#[test]
fn k8s_router_deployment_probes_healthz_and_readyz_on_the_ops_port() {
    let manifests = read("deploy/k8s/20-router.yaml");
    let deployment = manifests
        .split("\n---\n")
        .find(|document| document.contains("\nkind: Deployment\n"))
        .expect("a Deployment in 20-router.yaml");
    assert!(deployment.contains("  replicas: 3\n"));
    assert_eq!(probe(deployment, "livenessProbe"), ("/healthz".to_string(), "ops".to_string()));
    assert_eq!(probe(deployment, "readinessProbe"), ("/readyz".to_string(), "ops".to_string()));
    assert!(deployment.contains("- name: ops\n              containerPort: 9090\n"), "ops is port 9090");
    for needed in [
        "- --redis=redis://redis:6379",
        "- --config=/etc/leadrouter/market.toml",
        "- --data-dir=/data",
        "runAsNonRoot: true",
        "runAsUser: 10001",
        "readOnlyRootFilesystem: true",
        "emptyDir:",
        "name: leadrouter-secrets\n                  key: admin-token",
        "name: LEADROUTER_DEDUP_SECRET",
        "name: leadrouter-secrets\n                  key: dedup-secret",
        "name: leadrouter-config",
        "resources:",
    ] {
        assert!(deployment.contains(needed), "the router Deployment lacks {needed}");
    }
    assert!(manifests.contains("\n  name: leadrouter-ops\n") && manifests.contains("clusterIP: None"));

    // What the Deployments refer to exists: the Secret's keys, the ConfigMap, the Redis Service.
    let secret = read("deploy/k8s/01-secret.yaml");
    assert!(secret.contains("\n  admin-token: ") && secret.contains("\n  billing-admin-token: "));
    assert!(secret.contains("\n  dedup-secret: "));
    assert!(read("deploy/k8s/02-configmap.yaml").contains("\n  name: leadrouter-config\n"));
    let redis = read("deploy/k8s/10-redis.yaml");
    for needed in
        ["kind: StatefulSet", "appendonly yes", "appendfsync always", "volumeClaimTemplates:", "\n  name: redis\n"]
    {
        assert!(redis.contains(needed), "10-redis.yaml lacks {needed}");
    }
    let billing = read("deploy/k8s/30-billing.yaml");
    for needed in [
        "kind: PersistentVolumeClaim",
        "kind: Deployment",
        "kind: Service",
        "- --ledger=http://leadrouter:50051",
        "key: billing-admin-token",
        "path: /healthz",
    ] {
        assert!(billing.contains(needed), "30-billing.yaml lacks {needed}");
    }
}

#[test]
fn the_mounted_market_loads_and_the_configmap_carries_the_same_text() {
    let market = read("deploy/market.toml");
    let config = FileConfig::parse(&market).unwrap_or_else(|e| panic!("deploy/market.toml: {e}"));
    Market::build(config.market, PostalTable::bundled()).unwrap_or_else(|e| panic!("deploy/market.toml: {e:?}"));
    // Only comments differ from the demo market.
    let parsed = |text: &str| text.parse::<toml::Table>().unwrap();
    assert_eq!(parsed(&market), parsed(&read("config/demo.toml")), "deploy/market.toml strays from the demo");

    let configmap = read("deploy/k8s/02-configmap.yaml");
    let (_, block) = configmap.split_once("\n  market.toml: |\n").expect("market.toml in the ConfigMap");
    let embedded: String =
        block.lines().map(|line| format!("{}\n", line.strip_prefix("    ").unwrap_or(line))).collect();
    assert_eq!(embedded, market, "deploy/k8s/02-configmap.yaml differs from deploy/market.toml");
}

#[test]
fn the_image_builds_both_binaries_and_runs_the_router_as_non_root() {
    let dockerfile = read("deploy/Dockerfile");
    for needed in [
        "FROM rust:1-bookworm AS builder",
        "cargo build --release --locked -p leadrouter -p leadrouter-billing",
        "FROM debian:bookworm-slim",
        "ca-certificates",
        "--uid 10001",
        "USER 10001:10001",
        "VOLUME [\"/data\"]",
        "EXPOSE 8080 9090 50051 9191",
        "\"--listen\", \"0.0.0.0:8080\"",
        "\"--ops-listen\", \"0.0.0.0:9090\"",
        "\"--grpc-listen\", \"0.0.0.0:50051\"",
        "\"--data-dir\", \"/data\"",
    ] {
        assert!(dockerfile.contains(needed), "deploy/Dockerfile lacks {needed}");
    }
    let ignore = read("deploy/Dockerfile.dockerignore");
    let patterns: Vec<&str> = ignore.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    assert!(patterns.contains(&"**/target/") && patterns.contains(&".git/"), "{patterns:?}");
    // Nothing the build reads may be excluded.
    for needed in
        ["Cargo.toml", "Cargo.lock", "build.rs", "src", "proto", "config", "assets", "benches", "billing", "loadtest"]
    {
        assert!(root().join(needed).exists(), "{needed} moved: update deploy/Dockerfile.dockerignore");
        let excluded = patterns.iter().any(|p| p.trim_end_matches('/') == needed || *p == format!("{needed}/*"));
        assert!(!excluded, "deploy/Dockerfile.dockerignore excludes {needed}, which the build needs");
    }
}

// ------------------------------------------------------------------------------ helpers

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read("deploy/grafana/dashboards/leadrouter.json")).expect("the dashboard is JSON")
}

/// Every query of the dashboard: panel targets and query variables.
fn dashboard_exprs(dashboard: &serde_json::Value) -> Vec<String> {
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.extend(target["expr"].as_str().map(String::from));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        // label_values(metric, label) is Grafana's, not PromQL: its metric is what counts.
        if let Some(query) = variable["query"]["query"].as_str() {
            let inner = query.strip_prefix("label_values(").and_then(|q| q.split(',').next()).unwrap_or(query);
            exprs.push(inner.trim().to_string());
        }
    }
    exprs
}

/// Metric names the code exports: string literals starting with `leadrouter_` in the
/// router's and the worker's metric modules.
fn defined_metrics() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in ["src/telemetry.rs", "billing/src/telemetry.rs", "billing/src/notify.rs"] {
        let source = read(file);
        for rest in source.split("\"leadrouter_").skip(1) {
            let name = format!("leadrouter_{}", rest.split('"').next().unwrap());
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{file}: a string starting with leadrouter_ that is no metric name: {name}"
            );
            names.insert(name);
        }
    }
    names
}

/// Tokens starting with `leadrouter_` in `text`, histogram series suffixes stripped.
fn used_metrics(text: &str) -> BTreeSet<String> {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    for (start, _) in text.match_indices("leadrouter_") {
        if text[..start].chars().next_back().is_some_and(is_name_char) {
            continue;
        }
        let token: String = text[start..].chars().take_while(|&c| is_name_char(c)).collect();
        let name = ["_bucket", "_sum", "_count"].iter().find_map(|s| token.strip_suffix(s)).unwrap_or(&token);
        names.insert(name.to_string());
    }
    names
}

/// Services of a compose file: each name under `services:` with the text of its block.
fn compose_services(compose: &str) -> Vec<(String, String)> {
    let section = compose.split("\nservices:\n").nth(1).expect("a services: section");
    let section = section.split("\nvolumes:\n").next().unwrap();
    let mut services: Vec<(String, String)> = Vec::new();
    for line in section.lines() {
        let is_service = line.starts_with("  ") && !line.starts_with("   ") && line.trim_end().ends_with(':');
        if is_service && !line.trim_start().starts_with('#') {
            services.push((line.trim().trim_end_matches(':').to_string(), String::new()));
        } else if let Some((_, block)) = services.last_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    services
}

/// The `path` and `port` of an httpGet probe of a Kubernetes container spec.
fn probe(spec: &str, probe: &str) -> (String, String) {
    let (_, rest) = spec.split_once(&format!("{probe}:\n")).unwrap_or_else(|| panic!("no {probe}"));
    let field = |key: &str| {
        let line = rest.lines().find(|l| l.trim_start().starts_with(key)).unwrap_or_else(|| panic!("{probe}: {key}"));
        line.trim_start()[key.len()..].trim().to_string()
    };
    assert!(rest.trim_start().starts_with("httpGet:"), "{probe} is not an httpGet probe");
    (field("path:"), field("port:"))
}

fn panel_error<T>(title: &str, what: &str) -> T {
    panic!("panel {title}: missing or invalid {what}")
}
