//! Throughput: bytes each way through dusk-relay, the baseline relay and a direct
//! connection, one or many circuits at once, with the relays' CPU per byte.

use serde_json::{json, Value};

use crate::peers::BenchEnv;
use crate::relay_child::cpu_seconds;
use crate::report::{fixed, median, ratio, Table};
use crate::scenarios::*;

/// Scenarios 1 and 2: throughput per transport and CPU per byte.
pub async fn throughput(env: &BenchEnv, opts: &Opts) -> anyhow::Result<(String, Value)> {
    let relays = Relays::spawn(env)?;
    let own_pid = std::process::id().to_string();
    progress(
        "throughput",
        format!(
            "relay pids (for perf/top): dusk-relay {}, baseline {}",
            relays.dusk.pid(),
            relays.baseline.pid()
        ),
    );
    let mut rows = Vec::new();
    let mut cpu_rows = Vec::new();
    let mut fairness_rows = Vec::new();
    let mut json_rows = Vec::new();
    let moved = 2.0 * opts.circuits as f64 * opts.bytes as f64;
    for &transport in &opts.transports {
        let t = transport.name();
        let mut sets = Vec::new();
        for via in VIAS {
            let relay = relays.get(via);
            let mut p = pairs(env, via, relay, transport, opts.circuits).await?;
            // Warm-up: windows grown, code paged in.
            exchange(&mut p, (1 << 20).min(opts.bytes)).await?;
            sets.push((via, relay.map(|r| r.pid().to_string()), p));
        }
        // [via] -> (MiB/s each way, CPU s/GiB, fairness) per repeat
        let mut rates = vec![Vec::new(); VIAS.len()];
        let mut cpus = vec![Vec::new(); VIAS.len()];
        let mut fairness = vec![Vec::new(); VIAS.len()];
        // [via] -> (min ÷ max, slowest, fastest pair's MiB/s each way) per repeat
        let mut shares = vec![Vec::new(); VIAS.len()];
        let mut endpoint_cpus = vec![Vec::new(); VIAS.len()];
        for repeat in 0..opts.repeats {
            // Rotate the order so no path always runs first (or last) in a repeat.
            for k in 0..VIAS.len() {
                let i = (k + repeat) % VIAS.len();
                let (via, relay_pid, p) = &mut sets[i];
                // The relay's CPU for relayed paths; both endpoints' (this process,
                // nothing else busy) for the direct path.
                let pid = relay_pid.clone().unwrap_or_else(|| own_pid.clone());
                let cpu_before = cpu_seconds(&pid)?;
                let endpoints_before = cpu_seconds(&own_pid)?;
                let exchanged = exchange(p, opts.bytes).await?;
                shares[i].push(exchanged.fairness());
                let times = exchanged.times;
                let cpu = cpu_seconds(&pid)? - cpu_before;
                let endpoints = cpu_seconds(&own_pid)? - endpoints_before;
                endpoint_cpus[i].push(endpoints / (moved / GIB));
                let wall = times.iter().max().copied().unwrap_or_default();
                let fastest = times.iter().min().copied().unwrap_or_default();
                let rate = opts.circuits as f64 * opts.bytes as f64 / MIB / wall.as_secs_f64();
                rates[i].push(rate);
                cpus[i].push(cpu / (moved / GIB));
                fairness[i].push(fastest.as_secs_f64() / wall.as_secs_f64());
                progress(
                    "throughput",
                    format!(
                        "{t} repeat {}/{} {}: {rate:.1} MiB/s each way, {:.2} CPU s/GiB",
                        repeat + 1,
                        opts.repeats,
                        via.name(),
                        cpu / (moved / GIB)
                    ),
                );
            }
        }
        let m = |v: &Vec<f64>| median(v);
        let (direct, dusk_r, base_r) = (m(&rates[0]), m(&rates[1]), m(&rates[2]));
        let (cpu_direct, cpu_dusk, cpu_base) = (m(&cpus[0]), m(&cpus[1]), m(&cpus[2]));
        let (ends_dusk, ends_base) = (m(&endpoint_cpus[1]), m(&endpoint_cpus[2]));
        // MiB/s to one decimal, the ratios to two.
        let ratios = [
            ratio(dusk_r, base_r),
            ratio(dusk_r, direct),
            ratio(base_r, direct),
        ];
        let mut row = vec![t.to_string()];
        row.extend(fixed(1, &[dusk_r, base_r, direct]));
        row.extend(fixed(2, &ratios));
        rows.push(row);
        // CPU s/GiB, the relays' ÷ the direct endpoints', and the endpoints' s/GiB when
        // relayed, all to two decimals.
        let cpu_ratios = [ratio(cpu_dusk, cpu_direct), ratio(cpu_base, cpu_direct)];
        let mut cpu_row = vec![t.to_string()];
        cpu_row.extend(fixed(2, &[cpu_dusk, cpu_base, cpu_direct]));
        cpu_row.extend(fixed(2, &cpu_ratios));
        cpu_row.extend(fixed(2, &[ends_dusk, ends_base]));
        cpu_rows.push(cpu_row);
        let mut entry = json!({
            "transport": t,
            "mib_per_s": {"dusk": dusk_r, "baseline": base_r, "direct": direct},
            "dusk_over_baseline": ratio(dusk_r, base_r),
            "dusk_over_direct": ratio(dusk_r, direct),
            "baseline_over_direct": ratio(base_r, direct),
            "cpu_s_per_gib": {"dusk": cpu_dusk, "baseline": cpu_base, "direct_endpoints": cpu_direct},
            "cpu_dusk_over_direct": ratio(cpu_dusk, cpu_direct),
            "cpu_baseline_over_direct": ratio(cpu_base, cpu_direct),
            "endpoints_cpu_s_per_gib": {"dusk": ends_dusk, "baseline": ends_base, "direct": cpu_direct},
            "samples_mib_per_s": {"direct": rates[0], "dusk": rates[1], "baseline": rates[2]},
        });
        if opts.circuits > 1 {
            let share = |i: usize, k: usize| {
                let v: Vec<f64> = shares[i]
                    .iter()
                    .map(|s: &(f64, f64, f64)| [s.0, s.1, s.2][k])
                    .collect();
                median(&v)
            };
            let (fair_dusk, fair_base, fair_direct) = (share(1, 0), share(2, 0), share(0, 0));
            fairness_rows.push(vec![
                t.to_string(),
                format!("{dusk_r:.1} / {base_r:.1} / {direct:.1}"),
                format!(
                    "{fair_dusk:.2} ({})",
                    if fair_dusk >= 0.5 { "met" } else { "missed" }
                ),
                format!("{fair_base:.2}"),
                format!("{fair_direct:.2}"),
                format!("{:.2} – {:.2}", share(1, 1), share(1, 2)),
                format!("{:.2} – {:.2}", share(2, 1), share(2, 2)),
                format!(
                    "{:.2} / {:.2} / {:.2}",
                    m(&fairness[1]),
                    m(&fairness[2]),
                    m(&fairness[0])
                ),
            ]);
            entry["aggregate_mib_per_s"] =
                json!({"dusk": dusk_r, "baseline": base_r, "direct": direct});
            entry["fairness_min_over_max"] =
                json!({"dusk": fair_dusk, "baseline": fair_base, "direct": fair_direct});
            entry["per_circuit_mib_per_s"] = json!({
                "dusk": {"min": share(1, 1), "max": share(1, 2)},
                "baseline": {"min": share(2, 1), "max": share(2, 2)},
                "direct": {"min": share(0, 1), "max": share(0, 2)},
            });
            entry["fairness_fastest_over_slowest"] = json!({
                "direct": m(&fairness[0]), "dusk": m(&fairness[1]), "baseline": m(&fairness[2]),
            });
        }
        json_rows.push(entry);
    }
    let circuits = if opts.circuits == 1 {
        "one circuit".to_string()
    } else {
        format!("{} circuits at once (aggregate)", opts.circuits)
    };
    let mut md = format!(
        "Throughput: {circuits}, {} each way at once, median of {} repeats (MiB/s each way)\n\n",
        size(opts.bytes),
        opts.repeats
    );
    md += &Table::new(&[
        "transport",
        "dusk-relay",
        "baseline",
        "direct",
        "dusk ÷ baseline (goal ≥ 1.15)",
        "dusk ÷ direct (goal ≥ 0.60)",
        "baseline ÷ direct",
    ])
    .rows(rows)
    .render();
    md += "\nCPU per byte: relay CPU seconds (user+system) per GiB relayed (both directions), \
           and both endpoints of a direct connection together per GiB; the last two columns \
           are both endpoints' CPU per GiB when relayed (they also run the circuit's own \
           noise + yamux)\n\n";
    md += &Table::new(&[
        "transport",
        "dusk-relay (s/GiB)",
        "baseline (s/GiB)",
        "direct endpoints (s/GiB)",
        "dusk ÷ direct (goal ≤ 1.0)",
        "baseline ÷ direct",
        "endpoints via dusk-relay (s/GiB)",
        "endpoints via baseline (s/GiB)",
    ])
    .rows(cpu_rows)
    .render();
    if !fairness_rows.is_empty() {
        md += &format!(
            "\nFairness: {} circuits (pairs) at once; per-circuit throughput while all were \
             still moving data (what each had received when the first finished), slowest ÷ \
             fastest (1.00 = equal shares), and its range in MiB/s each way; the first \
             circuit done ÷ the last one's time; aggregate MiB/s each way; medians of the \
             repeats\n\n",
            opts.circuits
        );
        md += &Table::new(&[
            "transport",
            "aggregate MiB/s: dusk-relay / baseline / direct",
            "dusk-relay min ÷ max (goal ≥ 0.5)",
            "baseline min ÷ max",
            "direct min ÷ max",
            "dusk-relay per circuit (MiB/s)",
            "baseline per circuit (MiB/s)",
            "first done ÷ last done: dusk-relay / baseline / direct",
        ])
        .rows(fairness_rows)
        .render();
    }
    let value = json!({
        "bytes_each_way": opts.bytes,
        "circuits": opts.circuits,
        "repeats": opts.repeats,
        "transports": json_rows,
    });
    Ok((md, value))
}
