//! The load generator (`dusk-relay-bench`) keeps working: every scenario runs with tiny
//! sizes over TCP (capacity with 50 reservations, churn with 1 s steps at 20 and 40/s,
//! throughput with 3 circuits for fairness, soak for 1 minute sampled every 10 s) and
//! prints its tables and JSON with the expected fields. Checks the shape of the output,
//! never the numbers (no timed assertions).

use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dusk-relay-bench"))
        .args(args)
        .output()
        .expect("run dusk-relay-bench")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs the bench, failing the test unless it succeeds: (stdout, stderr).
fn bench_ok(args: &[&str]) -> (String, String) {
    let output = bench(args);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "bench failed:\n{stderr}");
    (stdout, stderr)
}

/// Runs the bench with `--json` among `args`: its document, and stderr.
fn bench_json(args: &[&str]) -> (serde_json::Value, String) {
    let (stdout, stderr) = bench_ok(args);
    let doc = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stdout}"));
    (doc, stderr)
}

/// Fails the test unless `text` contains every one of `needles`.
fn assert_contains_all(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
}

const TINY: [&str; 10] = [
    "--transport",
    "tcp",
    "--bytes",
    "1MiB",
    "--repeats",
    "1",
    "--pings",
    "20",
    "--slow-read",
    "64",
];

#[test]
fn bench_prints_every_scenario_as_json_with_ratios() {
    let (doc, stderr) = bench_json(&[&["--scenario", "all", "--json"][..], &TINY[..]].concat());
    for field in [
        "command",
        "date_utc",
        "cores",
        "mem_total_mib",
        "load_at_start",
    ] {
        assert!(
            doc["machine"].get(field).is_some(),
            "machine.{field}: {doc}"
        );
    }
    let s = &doc["scenarios"];

    let tcp = &s["throughput"]["transports"][0];
    assert_eq!(tcp["transport"], "tcp");
    for path in ["dusk", "baseline", "direct"] {
        assert!(tcp["mib_per_s"][path].is_number(), "{path}: {tcp}");
    }
    for field in [
        "dusk_over_baseline",
        "dusk_over_direct",
        "cpu_dusk_over_direct",
    ] {
        assert!(tcp.get(field).is_some(), "throughput.{field}: {tcp}");
    }
    for path in ["dusk", "baseline", "direct_endpoints"] {
        assert!(tcp["cpu_s_per_gib"].get(path).is_some(), "{path}: {tcp}");
    }

    let tcp = &s["latency"]["transports"][0];
    for q in ["p50_us", "p99_us"] {
        for path in ["dusk", "baseline", "direct"] {
            assert!(tcp[q][path].is_number(), "latency {q} {path}: {tcp}");
        }
    }
    assert!(tcp["dusk_p50_over_direct"].is_number(), "{tcp}");

    let tcp = &s["memory"]["transports"][0];
    for path in ["dusk", "baseline"] {
        assert!(
            tcp["rss_growth_mib"][path].is_number(),
            "memory {path}: {tcp}"
        );
    }

    for path in ["dusk", "baseline"] {
        assert!(s["startup"]["ms"][path].is_number(), "startup {path}: {s}");
    }
    // Progress on stderr.
    assert!(stderr.contains("[throughput]"), "{stderr}");
}

#[test]
fn bench_prints_a_markdown_table_with_how_it_was_run() {
    let (stdout, _) = bench_ok(&[&["--scenario", "throughput"][..], &TINY[..]].concat());
    assert_contains_all(
        &stdout,
        &[
            "cores",
            "| transport | dusk-relay | baseline | direct | dusk ÷ baseline",
            "\n| tcp | ",
            "dusk ÷ direct (goal ≤ 1.0)",
        ],
    );
}

#[test]
fn bench_rejects_bad_flags_with_a_clear_message() {
    for (args, says) in [
        (&["--bytes", "lots"][..], "--bytes \"lots\""),
        (&["--transport", "udp"][..], "--transport \"udp\""),
        (&["--repeats", "0"][..], "--repeats \"0\""),
        (&["--scenario", "speed"][..], "--scenario \"speed\""),
        (
            &["--reservations", "10", "--idle-circuits", "6"][..],
            "--idle-circuits 6",
        ),
        (&["--churn-rates", "fast"][..], "--churn-rates \"fast\""),
        (&["--churn-seconds", "0"][..], "--churn-seconds \"0\""),
        (&["--soak-minutes", "0"][..], "--soak-minutes \"0\""),
        (&["--soak-seconds", "soon"][..], "--soak-seconds \"soon\""),
        (&["--soak-sample-secs", "0"][..], "--soak-sample-secs \"0\""),
    ] {
        let output = bench(args);
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn bench_capacity_prints_rss_per_reservation_and_circuit_for_both_relays() {
    let (doc, stderr) = bench_json(&[
        "--scenario",
        "capacity",
        "--reservations",
        "50",
        "--idle-circuits",
        "10",
        "--client-processes",
        "2",
        "--json",
    ]);
    let c = &doc["scenarios"]["capacity"];
    assert_eq!(c["reservations"], 50, "{c}");
    assert_eq!(c["idle_circuits"], 10, "{c}");
    for path in ["dusk", "baseline"] {
        for field in [
            "reservations_held",
            "circuits_open",
            "rss_idle_mib",
            "rss_reserved_mib",
            "rss_total_mib",
            "kib_per_reservation",
            "kib_per_circuit",
        ] {
            assert!(c[path][field].is_number(), "capacity {path}.{field}: {c}");
        }
    }
    assert!(stderr.contains("[capacity]"), "{stderr}");

    let (stdout, _) = bench_ok(&[
        "--scenario",
        "capacity",
        "--reservations",
        "20",
        "--idle-circuits",
        "4",
    ]);
    assert_contains_all(
        &stdout,
        &[
            "| measure | dusk-relay | baseline | dusk ÷ baseline | goal |",
            "| per reservation (KiB) | ",
            "max_reservations",
        ],
    );
}

#[test]
fn bench_churn_prints_the_ramp_saturation_and_latency_at_half_rate() {
    let (doc, stderr) = bench_json(&[
        "--scenario",
        "churn",
        "--churn-seconds",
        "1",
        "--churn-rates",
        "20,40",
        "--json",
    ]);
    let c = &doc["scenarios"]["churn"];
    for path in ["dusk", "baseline"] {
        assert!(c["saturation_per_s"][path].is_number(), "churn {path}: {c}");
        assert!(
            c["p99_ms_at_half_rate"][path].is_number(),
            "churn {path}: {c}"
        );
        let ramp = c["ramp"][path].as_array().expect("a ramp per relay");
        assert!(!ramp.is_empty(), "churn ramp {path}: {c}");
        for field in ["offered_per_s", "accepted_per_s", "p50_ms", "p99_ms"] {
            assert!(ramp[0][field].is_number(), "churn ramp {path}.{field}: {c}");
        }
    }
    assert!(c["half_rate_per_s"].is_number(), "{c}");
    assert!(stderr.contains("[churn]"), "{stderr}");
}

#[test]
fn bench_throughput_with_many_circuits_prints_fairness_and_aggregate() {
    let (doc, _) = bench_json(&[
        "--scenario",
        "throughput",
        "--transport",
        "tcp",
        "--circuits",
        "3",
        "--bytes",
        "256KiB",
        "--repeats",
        "1",
        "--json",
    ]);
    let tcp = &doc["scenarios"]["throughput"]["transports"][0];
    for path in ["dusk", "baseline", "direct"] {
        assert!(
            tcp["fairness_min_over_max"][path].is_number(),
            "fairness {path}: {tcp}"
        );
        assert!(
            tcp["aggregate_mib_per_s"][path].is_number(),
            "aggregate {path}: {tcp}"
        );
        assert!(
            tcp["per_circuit_mib_per_s"][path]["min"].is_number(),
            "per circuit {path}: {tcp}"
        );
    }

    let (stdout, _) = bench_ok(&[
        "--scenario",
        "throughput",
        "--transport",
        "tcp",
        "--circuits",
        "2",
        "--bytes",
        "256KiB",
        "--repeats",
        "1",
    ]);
    assert!(stdout.contains("min ÷ max (goal ≥ 0.5)"), "{stdout}");
}

#[test]
fn bench_soak_samples_the_relay_each_interval_and_judges_growth_gauges_and_refusals() {
    let (doc, stderr) = bench_json(&[
        "--scenario",
        "soak",
        "--soak-seconds",
        "60",
        "--soak-sample-secs",
        "10",
        "--json",
    ]);
    let s = &doc["scenarios"]["soak"];
    assert_eq!(s["relay"], "dusk-relay", "{s}");
    assert!(s["load_seconds"].is_number(), "{s}");
    let samples = s["samples"].as_array().expect("a list of samples");
    // Idle, one every 10 s of the 60 (the last at the end of the load), and after.
    assert!(samples.len() >= 8, "{} samples: {s}", samples.len());
    for phase in ["idle", "load", "after"] {
        assert!(
            samples.iter().any(|x| x["phase"] == phase),
            "no {phase} sample: {s}"
        );
    }
    for sample in samples {
        for field in [
            "elapsed_s",
            "rss_mib",
            "anon_mib",
            "fds",
            "threads",
            "reservations",
            "circuits",
            "connections",
            "registrations",
        ] {
            assert!(sample[field].is_number(), "sample {field}: {sample}");
        }
        // A number, or null where the relay has no task gauge.
        assert!(sample.get("tasks").is_some(), "sample tasks: {sample}");
        for field in [
            "reservations",
            "circuits",
            "bytes",
            "registers",
            "discovers",
            "failures",
        ] {
            assert!(
                sample["done"][field].is_number(),
                "sample done.{field}: {sample}"
            );
        }
    }
    let v = &s["verdict"];
    assert!(v["gauges_back_to_zero"].is_boolean(), "{v}");
    for field in [
        "rss_growth_pct",
        "anon_growth_pct",
        "fds_growth_pct",
        "failures",
        "relay_refusals",
        "fds_idle",
        "fds_after",
    ] {
        assert!(v[field].is_number(), "verdict.{field}: {v}");
    }
    for field in [
        "rss_growth_met",
        "anon_growth_met",
        "fds_growth_met",
        "failures_met",
    ] {
        assert!(v[field].is_boolean(), "verdict.{field}: {v}");
    }
    assert!(s["failures"].is_object(), "{s}");
    assert!(s["relay_refusals"].is_object(), "{s}");
    assert!(stderr.contains("[soak]"), "{stderr}");
}

#[test]
fn bench_fleet_compares_across_and_within_and_weighs_the_directory_or_skips_without_redis() {
    let (doc, stderr) = bench_json(&[
        "--scenario",
        "fleet",
        "--transport",
        "tcp",
        "--bytes",
        "256KiB",
        "--repeats",
        "1",
        "--pings",
        "20",
        "--fleet-reservations",
        "20",
        "--client-processes",
        "2",
        "--json",
    ]);
    let f = &doc["scenarios"]["fleet"];
    if f.get("skipped").is_some() {
        // No redis-server: the scenario says so and succeeds; `./run-tests` (CI) sets
        // DUSK_TEST_REQUIRE_REDIS and installs redis-server, so it never skips there.
        assert!(stderr.contains("SKIPPED: redis-server"), "{stderr}");
        assert!(
            std::env::var_os("DUSK_TEST_REQUIRE_REDIS").is_none(),
            "redis-server is not installed but DUSK_TEST_REQUIRE_REDIS is set: {stderr}"
        );
        return;
    }
    let tcp = &f["transports"][0];
    assert_eq!(tcp["transport"], "tcp", "{f}");
    for path in ["within", "across"] {
        for field in ["mib_per_s", "p50_us", "p99_us", "relays_cpu_s_per_gib"] {
            assert!(tcp[field][path].is_number(), "fleet {field}.{path}: {tcp}");
        }
    }
    for field in ["across_over_within", "p50_across_over_within"] {
        assert!(tcp[field].is_number(), "fleet {field}: {tcp}");
    }
    let d = &f["directory"];
    assert_eq!(d["reservations"], 20, "{d}");
    for field in [
        "bytes_per_reservation",
        "commands_per_reservation",
        "commands_per_release",
    ] {
        assert!(d[field].is_number(), "fleet directory.{field}: {d}");
    }
    assert!(
        f["node_death"]["reach_again_ms"]["median"].is_number(),
        "{f}"
    );
    assert!(stderr.contains("[fleet]"), "{stderr}");
}
