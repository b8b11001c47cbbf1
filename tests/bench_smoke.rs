//! The load generator (`dusk-relay-bench`) keeps working: every scenario runs with tiny
//! sizes over TCP and prints its tables and JSON with the expected fields. Checks the
//! shape of the output, never the numbers (no timed assertions).

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
    let output = bench(&[&["--scenario", "all", "--json"][..], &TINY[..]].concat());
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "bench failed:\n{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stdout}"));
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
    let output = bench(&[&["--scenario", "throughput"][..], &TINY[..]].concat());
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "bench failed:\n{stderr}");
    assert!(stdout.contains("cores"), "{stdout}");
    assert!(
        stdout.contains("| transport | dusk-relay | baseline | direct | dusk ÷ baseline"),
        "{stdout}"
    );
    assert!(stdout.contains("\n| tcp | "), "{stdout}");
    assert!(stdout.contains("dusk ÷ direct (goal ≤ 1.2)"), "{stdout}");
}

#[test]
fn bench_rejects_bad_flags_with_a_clear_message() {
    for (args, says) in [
        (&["--bytes", "lots"][..], "--bytes \"lots\""),
        (&["--transport", "udp"][..], "--transport \"udp\""),
        (&["--repeats", "0"][..], "--repeats \"0\""),
        (&["--scenario", "speed"][..], "--scenario \"speed\""),
    ] {
        let output = bench(args);
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
