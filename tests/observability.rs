//! What deploy/ promises operators about monitoring: the alert rules and the Prometheus
//! configuration pass `promtool`, the dashboard's queries are valid PromQL, every metric
//! the dashboard and the rules name is exported by a running relay, and "Redis
//! unreachable" shows in the gauges the alert watches.
//!
//! `promtool` comes from Debian's `prometheus` package (`./run-tests` installs it); a
//! missing promtool fails these tests rather than skipping them.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::fleet::{self, FleetFiles};
use support::redis::RedisServer;
use support::*;

const RULES: &str = "deploy/prometheus/dusk-relay.rules.yml";
const PROMETHEUS_CONFIG: &str = "deploy/prometheus/prometheus.yml";
const DASHBOARD: &str = "deploy/grafana/dusk-relay.json";

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// Runs `promtool args…`; fails with its output unless it succeeds.
fn promtool(args: &[&std::ffi::OsStr]) {
    let output = Command::new("promtool")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): apt-get install -y prometheus (./run-tests does)")
        });
    assert!(
        output.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every PromQL expression of the dashboard: panel targets and variable queries.
fn dashboard_exprs(dashboard: &serde_json::Value) -> Vec<String> {
    fn walk(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr", serde_json::Value::String(expr)) => out.push(expr.clone()),
                        _ => walk(value, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out
}

/// Every `dusk_relay_*` name in `text`: the PromQL of the rules and the dashboard, and
/// their descriptions (an annotation naming a metric that does not exist misleads as
/// much as a query). Names as PromQL sees them: a counter's `_total`, a histogram's
/// `_bucket`, `_sum` and `_count` included.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let is_name = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_';
    let mut at = 0;
    while let Some(found) = text[at..].find("dusk_relay_") {
        let start = at + found;
        let mut end = start + "dusk_relay_".len();
        while end < bytes.len() && is_name(bytes[end]) {
            end += 1;
        }
        // Part of a longer identifier (`x_dusk_relay_…`) is not a metric name, nor is
        // the bare prefix (`dusk_relay_*` in a comment).
        let standalone = start == 0 || !is_name(bytes[start - 1]);
        if standalone && end > start + "dusk_relay_".len() {
            names.insert(text[start..end].to_owned());
        }
        at = end;
    }
    names
}

/// The sample names of an exposition, as PromQL sees them (`x_total`, `x_bucket`, …).
fn exported_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

fn missing(wanted: &BTreeSet<String>, exported: &BTreeSet<String>) -> Vec<String> {
    wanted.difference(exported).cloned().collect()
}

#[test]
fn alert_rules_and_the_prometheus_config_pass_promtool() {
    promtool(&[
        "check".as_ref(),
        "rules".as_ref(),
        repo_file(RULES).as_os_str(),
    ]);
    // Also loads the rule files the configuration names, so a wrong path fails here.
    promtool(&[
        "check".as_ref(),
        "config".as_ref(),
        repo_file(PROMETHEUS_CONFIG).as_os_str(),
    ]);
}

#[test]
fn every_dashboard_query_is_valid_promql() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON");
    let exprs = dashboard_exprs(&dashboard);
    assert!(exprs.len() > 20, "found only {} queries", exprs.len());
    // promtool parses PromQL only in rule files: each query becomes a recording rule,
    // with Grafana's variables replaced by what they expand to.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "1m")
            .replace("$job", ".*")
            .replace("$instance", ".*");
        let quoted = serde_json::to_string(&expr).expect("a JSON string is a YAML string");
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {quoted}\n"
        ));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("dashboard.rules.yml");
    std::fs::write(&file, rules).expect("write the rules");
    promtool(&["check".as_ref(), "rules".as_ref(), file.as_os_str()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_dashboard_and_alerts_query_is_exported_by_a_running_relay() {
    let dashboard = read(DASHBOARD);
    let rules = read(RULES);
    let mut wanted = metric_names(&dashboard);
    wanted.extend(metric_names(&rules));
    // The extraction itself: it finds names in both files, and what it finds is checked.
    assert!(metric_names(&rules).contains("dusk_relay_tls_certificate_not_after_timestamp_seconds"));
    assert!(wanted.len() > 20, "found only {wanted:?}");

    // Fleet mode with a Redis store: the configuration that exports every family.
    let redis = RedisServer::start();
    let files = FleetFiles::new();
    let relay = match &redis {
        Some(redis) => fleet::node(redis, &files).await,
        None => TestRelay::start().await,
    };
    if redis.is_none() {
        // Without redis-server (RedisServer::start said so loudly) only fleet mode's
        // own gauge cannot be checked.
        wanted.remove("dusk_relay_fleet_directory_up");
    }
    let (status, body) = http(
        relay.handle.http_addr.expect("metrics on"),
        "GET",
        "/metrics",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let exported = exported_names(&body);

    // A name that is not exported is reported: the check can fail.
    let bogus = BTreeSet::from(["dusk_relay_connections_refused".to_owned()]);
    assert_eq!(
        missing(&bogus, &exported),
        ["dusk_relay_connections_refused"]
    );

    let missing = missing(&wanted, &exported);
    assert!(
        missing.is_empty(),
        "the dashboard or the alert rules query metrics the relay does not export: \
         {missing:?}\nexported: {exported:?}"
    );
}

/// The value of the sample `name` (without labels) in the relay's `/metrics`, if any.
async fn gauge(relay: &TestRelay, name: &str) -> Option<f64> {
    let scrape = scrape(relay.handle.http_addr.expect("metrics on")).await;
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name)
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: unexpected {other:?}"),
        })
}

/// Waits until both Redis gauges read `value`. The store is checked every 10 s and
/// each check gives up after 1.5 s; the directory every second.
async fn redis_gauges_read(relay: &TestRelay, value: f64) {
    const WITHIN: Duration = Duration::from_secs(30);
    let deadline = Instant::now() + WITHIN;
    loop {
        let store = gauge(relay, "dusk_relay_rendezvous_store_up").await;
        let directory = gauge(relay, "dusk_relay_fleet_directory_up").await;
        if store == Some(value) && directory == Some(value) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "within {WITHIN:?}: store {store:?}, directory {directory:?}, wanted {value}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_going_away_and_coming_back_shows_in_the_gauges_the_alert_watches() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let files = FleetFiles::new();
    let relay = fleet::node(&redis, &files).await;
    redis_gauges_read(&relay, 1.0).await;
    redis.stop();
    redis_gauges_read(&relay, 0.0).await;
    redis.start_again();
    redis_gauges_read(&relay, 1.0).await;
}

#[tokio::test]
async fn a_relay_with_the_memory_store_and_no_fleet_reports_its_store_up_and_no_directory() {
    let relay = TestRelay::start().await;
    let deadline = Instant::now() + EVENT_TIMEOUT;
    // The first count runs as the relay starts.
    while gauge(&relay, "dusk_relay_rendezvous_store_up").await != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "the memory store never reported up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gauge(&relay, "dusk_relay_fleet_directory_up").await, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_and_descriptors_are_exported_with_their_ceilings() {
    const MAX_MEMORY: usize = 512 * 1024 * 1024;
    let relay =
        TestRelay::start_with(|c| c.connection_limits.max_memory_bytes = Some(MAX_MEMORY)).await;
    let resident = gauge(&relay, "dusk_relay_memory_resident_bytes").await;
    let limit = gauge(&relay, "dusk_relay_memory_limit_bytes").await;
    assert!(resident.is_some_and(|r| r > 1e6), "{resident:?}");
    assert_eq!(limit, Some(MAX_MEMORY as f64));
    // This process is the relay's: the test's own descriptors count too, and the
    // relay's listeners alone are more than ten.
    let open = gauge(&relay, "dusk_relay_file_descriptors_open").await;
    let limit = gauge(&relay, "dusk_relay_file_descriptors_limit").await;
    assert!(open.is_some_and(|o| o > 10.0), "{open:?}");
    assert!(
        matches!((open, limit), (Some(o), Some(l)) if o < l),
        "{open:?} of {limit:?}"
    );

    let relay = TestRelay::start_with(|c| c.connection_limits.max_memory_bytes = None).await;
    assert_eq!(
        gauge(&relay, "dusk_relay_memory_limit_bytes").await,
        None,
        "no ceiling, no limit series (an alert would divide by it)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_and_draining_follow_the_drain() {
    let relay = TestRelay::start_with(|c| c.drain_timeout = Duration::from_secs(60)).await;
    assert_eq!(gauge(&relay, "dusk_relay_ready").await, Some(1.0));
    assert_eq!(gauge(&relay, "dusk_relay_draining").await, Some(0.0));
    // An open circuit keeps the drain, and the endpoint, going.
    let (_a, _b) = open_circuit(&relay, Transport::Tcp).await;
    let mut events = relay.subscribe();
    relay.handle.signal();
    relay_event(&mut events, |e| {
        matches!(e, dusk_relay::RelayEvent::Draining).then_some(())
    })
    .await;
    assert_eq!(gauge(&relay, "dusk_relay_ready").await, Some(0.0));
    assert_eq!(gauge(&relay, "dusk_relay_draining").await, Some(1.0));
}
