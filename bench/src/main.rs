//! `dusk-relay-bench`: the load generator. It starts dusk-relay and a baseline relay
//! (libp2p's stock relay behaviour on the same transports) as child processes of itself,
//! drives real libp2p client swarms through them over loopback, and prints every figure
//! next to the baseline's and a direct connection's from the same run, as markdown
//! tables (or JSON with `--json`). Progress goes to stderr.
//!
//!     cargo run --release -p dusk-relay-bench -- --scenario throughput,latency
//!
//! `--scenario soak` is the odd one out: dusk-relay alone under a steady mixed load for
//! `--soak-minutes`, a leak check rather than a comparison.
//!
//! `--scenario fleet` needs redis-server (it skips, saying so, without it): two
//! dusk-relay nodes of one identity, a circuit across them against one within a node,
//! the reservation directory's cost in Redis, and the time to reach a dead node's client.
//!
//! `--serve dusk|baseline` (hidden) is the relay child mode (`--fleet <redis URL>` makes
//! a dusk child a fleet node); `--serve reservers` the child holding lightweight
//! reservers for the capacity scenario and the fleet's directory cost.

mod capacity;
mod fleet;
mod fleet_directory;
mod memory;
mod peers;
mod redis_child;
mod relay_child;
mod report;
mod reserver;
mod scenarios;
mod serve;
mod soak;
mod startup;
mod throughput;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Arg, ArgAction, ArgMatches, Command};

use peers::{BenchEnv, Transport};
use scenarios::Opts;

const SCENARIOS: [&str; 8] = [
    "throughput",
    "latency",
    "memory",
    "startup",
    "capacity",
    "churn",
    "soak",
    "fleet",
];
/// What `--scenario all` runs: capacity (20,000 sockets, minutes) and churn (a ramp to
/// saturation) are heavy and TCP-only, soak runs for half an hour by default, fleet
/// needs redis-server and takes minutes at the default sizes; name them.
const ALL: [&str; 4] = ["throughput", "latency", "memory", "startup"];

fn command() -> Command {
    Command::new("dusk-relay-bench")
        .about(
            "Load generator for dusk-relay: every figure next to a baseline libp2p relay's \
             and a direct connection's, measured side by side in one run",
        )
        .after_help(
            "Profiling: DUSK_BENCH_RELAY_WRAPPER=<command line> runs each relay child under \
             it, e.g. a script doing `exec heaptrack -o /tmp/relay.$$ \"$@\"` (one output per \
             relay); the relay CPU and memory figures of such a run are the wrapper's. \
             Logs: RUST_LOG (e.g. info, or warn,libp2p_swarm=debug) logs the clients and both \
             relay children to stderr.",
        )
        .arg(
            Arg::new("scenario")
                .long("scenario")
                .value_name("LIST")
                .default_value("throughput")
                .help(
                    "comma-separated: throughput (includes CPU per byte and, with --circuits \
                     above 1, fairness), latency, memory, startup, capacity, churn, soak, \
                     fleet; or all (the first four; capacity, churn and soak run over TCP \
                     only, and soak against dusk-relay alone: a leak check, not a \
                     comparison; fleet needs redis-server and compares a circuit across two \
                     dusk-relay nodes with one within a node)",
                ),
        )
        .arg(
            Arg::new("transport")
                .long("transport")
                .value_name("LIST")
                .default_value("tcp,quic,ws,wss")
                .help("comma-separated transports: tcp, quic, ws, wss; or all"),
        )
        .arg(
            Arg::new("bytes")
                .long("bytes")
                .value_name("SIZE")
                .default_value("256MiB")
                .help("bytes each way per circuit (throughput) or sent to the slow reader (memory): 1048576, 64KiB, 256MiB, 1GiB"),
        )
        .arg(
            Arg::new("repeats")
                .long("repeats")
                .value_name("N")
                .default_value("3")
                .help("repeats per path; figures are medians (start-up runs at least 5)"),
        )
        .arg(
            Arg::new("circuits")
                .long("circuits")
                .value_name("N")
                .default_value("1")
                .help("circuits (client pairs) moving data at once in the throughput scenario"),
        )
        .arg(
            Arg::new("pings")
                .long("pings")
                .value_name("N")
                .default_value("1000")
                .help("1 KiB round trips per path in the latency scenario"),
        )
        .arg(
            Arg::new("slow-read")
                .long("slow-read")
                .value_name("MIB_PER_S")
                .default_value("32")
                .help("how fast the slow reader of the memory scenario reads"),
        )
        .arg(
            Arg::new("reservations")
                .long("reservations")
                .value_name("N")
                .default_value("10000")
                .help("reservations the capacity scenario holds"),
        )
        .arg(
            Arg::new("idle-circuits")
                .long("idle-circuits")
                .value_name("N")
                .default_value("1000")
                .help("idle circuits the capacity scenario opens between reserved peers (at most half of --reservations)"),
        )
        .arg(
            Arg::new("client-processes")
                .long("client-processes")
                .value_name("N")
                .default_value("4")
                .help("child processes the capacity scenario spreads its reservers over"),
        )
        .arg(
            Arg::new("churn-rates")
                .long("churn-rates")
                .value_name("LIST")
                .default_value("250,500,1000,2000,4000,8000")
                .help("offered rates of the churn ramp, new connections + reservations per second, comma-separated"),
        )
        .arg(
            Arg::new("churn-seconds")
                .long("churn-seconds")
                .value_name("N")
                .default_value("5")
                .help("seconds per step of the churn ramp (the half-rate run takes twice that)"),
        )
        .arg(
            Arg::new("soak-minutes")
                .long("soak-minutes")
                .value_name("M")
                .default_value("30")
                .help("how long the soak's load runs, in minutes (fractions allowed, e.g. 1.5)"),
        )
        .arg(
            Arg::new("soak-seconds")
                .long("soak-seconds")
                .value_name("S")
                .conflicts_with("soak-minutes")
                .help("the soak's length in seconds instead of minutes (e.g. 60 for a smoke run)"),
        )
        .arg(
            Arg::new("soak-sample-secs")
                .long("soak-sample-secs")
                .value_name("S")
                .default_value("60")
                .help("seconds between the soak's samples of the relay (RSS, descriptors, threads, gauges)"),
        )
        .arg(
            Arg::new("fleet-reservations")
                .long("fleet-reservations")
                .value_name("N")
                .default_value("1000")
                .help("reservations the fleet scenario lists in Redis to weigh the directory"),
        )
        .arg(
            Arg::new("json")
                .long("json")
                .action(ArgAction::SetTrue)
                .help("print one JSON document on stdout instead of markdown"),
        )
        .arg(Arg::new("serve").long("serve").hide(true))
        .arg(Arg::new("fleet").long("fleet").hide(true))
        .arg(
            Arg::new("relay")
                .long("relay")
                .value_parser(clap::value_parser!(libp2p::Multiaddr))
                .hide(true),
        )
        .arg(
            Arg::new("dir")
                .long("dir")
                .value_parser(clap::value_parser!(PathBuf))
                .hide(true),
        )
}

fn main() -> ExitCode {
    // Quiet unless asked: `RUST_LOG=info dusk-relay-bench …` logs the clients and the
    // relay children (they inherit the environment) to stderr.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
    let matches = command().get_matches();
    if let Some(kind) = matches.get_one::<String>("serve") {
        let result = if kind == "reservers" {
            matches
                .get_one::<libp2p::Multiaddr>("relay")
                .ok_or_else(|| anyhow!("--serve reservers needs --relay"))
                .and_then(|relay| reserver::serve(relay, count(&matches, "reservations")?))
        } else {
            matches
                .get_one::<PathBuf>("dir")
                .ok_or_else(|| anyhow!("--serve needs --dir"))
                .and_then(|dir| {
                    let circuits = count(&matches, "circuits")?;
                    let reservations = count(&matches, "reservations")?;
                    let fleet = matches.get_one::<String>("fleet").map(String::as_str);
                    serve::run(kind, dir, circuits, reservations, fleet)
                })
        };
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("dusk-relay-bench relay child: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let (scenarios, opts, json) = match parse(&matches) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("dusk-relay-bench: {e:#}\n\nRun with --help for the flags.");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("dusk-relay-bench: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Ctrl-C ends the run through the normal path, so the relay children are killed
    // and the scratch directory is removed.
    let interruptible = async {
        tokio::select! {
            result = run(&scenarios, &opts, json) => result,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        }
    };
    match runtime.block_on(interruptible) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dusk-relay-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(scenarios: &[String], opts: &Opts, json: bool) -> anyhow::Result<()> {
    let machine = report::Machine::now();
    let env = BenchEnv::new(opts.circuits)?;
    let mut markdown = Vec::new();
    let mut results = serde_json::Map::new();
    for scenario in scenarios {
        eprintln!("[{scenario}] starting");
        let (md, value) = match scenario.as_str() {
            "throughput" => throughput::throughput(&env, opts).await,
            "latency" => scenarios::latency(&env, opts).await,
            "memory" => memory::memory(&env, opts).await,
            "startup" => startup::startup(&env, opts).await,
            "capacity" => capacity::capacity(&env, opts).await,
            "churn" => capacity::churn(&env, opts).await,
            "soak" => soak::soak(&env, opts).await,
            "fleet" => fleet::fleet(&env, opts).await,
            other => unreachable!("scenario {other} passed validation"),
        }
        .with_context(|| format!("scenario {scenario}"))?;
        markdown.push(md);
        results.insert(scenario.clone(), value);
    }
    if json {
        let doc = serde_json::json!({
            "machine": machine.json(),
            "scenarios": results,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("## dusk-relay-bench\n");
        println!("{}\n", machine.describe());
        for md in markdown {
            println!("{md}");
        }
    }
    Ok(())
}

fn parse(matches: &ArgMatches) -> anyhow::Result<(Vec<String>, Opts, bool)> {
    let list = |name: &str| -> Vec<String> {
        matches
            .get_one::<String>(name)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_ascii_lowercase())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut scenarios = list("scenario");
    if scenarios.iter().any(|s| s == "all") {
        let named: Vec<String> = scenarios.into_iter().filter(|s| s != "all").collect();
        scenarios = ALL.iter().map(|s| s.to_string()).collect();
        for s in named {
            if !scenarios.contains(&s) {
                scenarios.push(s);
            }
        }
    }
    for s in &scenarios {
        if !SCENARIOS.contains(&s.as_str()) {
            bail!(
                "--scenario {s:?}: unknown scenario (choose from {} or all)",
                SCENARIOS.join(", ")
            );
        }
    }
    if scenarios.is_empty() {
        bail!("--scenario: name at least one scenario");
    }
    let mut names = list("transport");
    if names.iter().any(|s| s == "all") {
        names = ["tcp", "quic", "ws", "wss"].map(String::from).to_vec();
    }
    let transports = names
        .iter()
        .map(|t| {
            Transport::parse(t).ok_or_else(|| {
                anyhow!(
                    "--transport {t:?}: unknown transport (choose from tcp, quic, ws, wss or all)"
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if transports.is_empty() {
        bail!("--transport: name at least one transport");
    }
    let raw = matches
        .get_one::<String>("bytes")
        .map(String::as_str)
        .unwrap_or("");
    let bytes = parse_size(raw).ok_or_else(|| {
        anyhow!("--bytes {raw:?}: expected a positive size such as 1048576, 64KiB, 256MiB or 1GiB")
    })?;
    let slow_raw = matches
        .get_one::<String>("slow-read")
        .map(String::as_str)
        .unwrap_or("");
    let slow_read_mib = slow_raw
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .ok_or_else(|| anyhow!("--slow-read {slow_raw:?}: expected MiB/s above 0, e.g. 32"))?;
    let churn_rates = list("churn-rates")
        .iter()
        .map(|r| {
            r.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(|| {
                    anyhow!(
                        "--churn-rates {r:?}: expected rates per second above 0, e.g. 250,500,1000"
                    )
                })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if churn_rates.is_empty() {
        bail!("--churn-rates: name at least one rate");
    }
    let reservations = count(matches, "reservations")?;
    let idle_circuits = count(matches, "idle-circuits")?;
    if idle_circuits > reservations / 2 {
        bail!(
            "--idle-circuits {idle_circuits}: at most half of --reservations ({reservations}): \
             each circuit joins two reserved peers"
        );
    }
    let soak = match matches.get_one::<String>("soak-seconds") {
        Some(raw) => positive_seconds("soak-seconds", raw, 1.0)?,
        None => {
            let raw = matches
                .get_one::<String>("soak-minutes")
                .map(String::as_str)
                .unwrap_or("");
            positive_seconds("soak-minutes", raw, 60.0)?
        }
    };
    let soak_sample = Duration::from_secs(count(matches, "soak-sample-secs")? as u64);
    let opts = Opts {
        transports,
        bytes,
        repeats: count(matches, "repeats")?,
        circuits: count(matches, "circuits")?,
        pings: count(matches, "pings")?,
        slow_read_mib,
        reservations,
        idle_circuits,
        client_processes: count(matches, "client-processes")?,
        churn_rates,
        churn_seconds: count(matches, "churn-seconds")?,
        soak,
        soak_sample,
        fleet_reservations: count(matches, "fleet-reservations")?,
    };
    Ok((scenarios, opts, matches.get_flag("json")))
}

/// A positive whole number flag.
fn count(matches: &ArgMatches, name: &str) -> anyhow::Result<usize> {
    let raw = matches
        .get_one::<String>(name)
        .map(String::as_str)
        .unwrap_or("");
    raw.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| anyhow!("--{name} {raw:?}: expected a whole number of at least 1"))
}

/// A length flag in `unit` seconds (60 for minutes): fractions allowed, at least 1 s
/// and at most a year.
fn positive_seconds(name: &str, raw: &str, unit: f64) -> anyhow::Result<Duration> {
    raw.trim()
        .parse::<f64>()
        .ok()
        .map(|v| v * unit)
        .filter(|s| s.is_finite() && *s >= 1.0 && *s <= 366.0 * 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            anyhow!("--{name} {raw:?}: expected a length of at least 1 s, e.g. 30 or 1.5")
        })
}

/// `1048576`, `64KiB`, `256MiB`, `1GiB` (also `K`, `M`, `G`, `KB`… as binary units).
fn parse_size(raw: &str) -> Option<u64> {
    let s = raw.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: u64 = number.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return None,
    };
    number.checked_mul(1 << shift).filter(|n| *n > 0)
}
