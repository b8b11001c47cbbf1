//! The soak's report: one row per sample, the verdict against its goals, and the same as
//! JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::growth::{Growth, FLAT_PCT};
use super::load::{self, Failures};
use super::sample::{Phase, Sample};
use crate::report::Table;

/// Warm-up is over at the first loaded sample at or after this share of the run (and
/// never at the first loaded sample): allocator pools, connection tables and tokio's
/// worker state have grown to the load's size by then.
const WARMUP_SHARE: f64 = 0.2;

const WARMUP_RULE: &str = "the first loaded sample at or after 20 % of the run, never the first";

/// A finished soak.
pub struct Run {
    pub load: Duration,
    pub every: Duration,
    /// The idle sample, the loaded ones, and the one after the load.
    pub samples: Vec<Sample>,
    /// When the load had stopped (its last rounds finished), since it started.
    pub stopped_at: Duration,
    /// How long after the stop the gauges read zero; none if not within `zero_limit`.
    pub back_to_zero: Option<Duration>,
    pub zero_limit: Duration,
    pub failures: BTreeMap<&'static str, Failures>,
}

/// `m:ss`.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs_f64().round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn tasks(t: Option<f64>) -> String {
    t.map_or_else(|| "n/a".into(), |t| format!("{t:.0}"))
}

/// A progress line for one sample.
pub fn describe(s: &Sample) -> String {
    let g = &s.gauges;
    let d = &s.done;
    format!(
        "{} {}: RSS {:.1} MiB (anonymous {:.1}), {} fds, {} threads, tasks {}; {} reservations, {} circuits, \
         {} connections, {} registrations; done {} reservations, {} circuits ({:.0} MiB), \
         {} registers, {} discovers, {} failures",
        s.phase.name(),
        clock(s.elapsed),
        mib(s.rss_kib),
        mib(s.anon_kib),
        s.fds,
        s.threads,
        tasks(g.tasks),
        g.reservations,
        g.circuits,
        g.connections,
        g.registrations,
        d.reservations,
        d.circuits,
        d.bytes as f64 / 1048576.0,
        d.registers,
        d.discovers,
        d.failures
    )
}

/// `met`, `missed`, or `n/a` when there is nothing to judge.
fn met(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "missed",
        None => "n/a",
    }
}

/// RSS and descriptor growth after warm-up, refusals and failures, and the idle and
/// after-load samples.
struct Verdict<'a> {
    window: Vec<&'a Sample>,
    rss: Growth,
    anon: Growth,
    fds: Growth,
    refusals: BTreeMap<&'static str, f64>,
    refused: f64,
    failed: u64,
    idle: Option<&'a Sample>,
    after: Option<&'a Sample>,
}

impl Run {
    fn loaded(&self) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.phase == Phase::Load)
            .collect()
    }

    fn first(&self, phase: Phase) -> Option<&Sample> {
        self.samples.iter().find(|s| s.phase == phase)
    }

    /// The loaded samples from the warm-up one to the last; empty when no loaded sample
    /// follows the warm-up.
    fn after_warmup(&self) -> Vec<&Sample> {
        let loaded = self.loaded();
        let cutoff = self.load.mul_f64(WARMUP_SHARE);
        match (1..loaded.len()).find(|&i| loaded[i].elapsed >= cutoff) {
            Some(warm) if warm + 1 < loaded.len() => loaded[warm..].to_vec(),
            _ => Vec::new(),
        }
    }

    /// The relay's refusal counters over the run: after the load minus idle.
    fn refusals(&self) -> BTreeMap<&'static str, f64> {
        let (Some(idle), Some(after)) = (self.first(Phase::Idle), self.first(Phase::After)) else {
            return BTreeMap::new();
        };
        after
            .gauges
            .refusals
            .iter()
            .map(|(name, v)| (*name, v - idle.gauges.refusals.get(name).unwrap_or(&0.0)))
            .collect()
    }

    /// What the verdict is made of, for both the table and the JSON.
    fn verdict(&self) -> Verdict<'_> {
        let window = self.after_warmup();
        let refusals = self.refusals();
        Verdict {
            rss: Growth::of(&window, |s| s.rss_kib),
            anon: Growth::of(&window, |s| s.anon_kib),
            fds: Growth::of(&window, |s| s.fds),
            refused: refusals.values().sum(),
            refusals,
            failed: self.failure_count(),
            idle: self.first(Phase::Idle),
            after: self.first(Phase::After),
            window,
        }
    }

    fn failure_count(&self) -> u64 {
        self.failures.values().map(|f| f.count).sum()
    }

    fn rows(&self) -> Vec<Vec<String>> {
        self.samples
            .iter()
            .map(|s| {
                let (g, d) = (&s.gauges, &s.done);
                let when = match s.phase {
                    Phase::Idle => "idle".to_string(),
                    Phase::Load => clock(s.elapsed),
                    Phase::After => format!("after ({})", clock(s.elapsed)),
                };
                vec![
                    when,
                    format!("{:.1}", mib(s.rss_kib)),
                    format!("{:.1}", mib(s.anon_kib)),
                    s.fds.to_string(),
                    s.threads.to_string(),
                    tasks(g.tasks),
                    g.reservations.to_string(),
                    g.circuits.to_string(),
                    g.connections.to_string(),
                    g.registrations.to_string(),
                    d.reservations.to_string(),
                    d.circuits.to_string(),
                    format!("{:.0}", d.bytes as f64 / 1048576.0),
                    d.registers.to_string(),
                    d.discovers.to_string(),
                    d.failures.to_string(),
                ]
            })
            .collect()
    }

    pub fn markdown(&self) -> String {
        let Verdict {
            window,
            rss,
            anon,
            fds,
            refusals,
            refused,
            failed,
            idle,
            after,
        } = self.verdict();
        let back = match self.back_to_zero {
            Some(t) => format!("yes, {:.1} s after the load", t.as_secs_f64()),
            None => format!(
                "no, after {} s: {}",
                self.zero_limit.as_secs(),
                after
                    .map(|a| a.gauges.left().join(", "))
                    .unwrap_or_default()
            ),
        };
        let kinds = |items: Vec<String>| {
            if items.is_empty() {
                String::new()
            } else {
                format!(" ({})", items.join("; "))
            }
        };
        let failures = kinds(
            self.failures
                .iter()
                .map(|(k, f)| format!("{k}: {}, first: {}", f.count, f.first))
                .collect(),
        );
        let refusal_kinds = kinds(
            refusals
                .iter()
                .filter(|(_, v)| **v != 0.0)
                .map(|(k, v)| format!("{k}: {v}"))
                .collect(),
        );
        let pair = |f: fn(&Sample) -> String| match (idle, after) {
            (Some(i), Some(a)) => format!("{} ({} idle)", f(a), f(i)),
            _ => "n/a".into(),
        };
        let back_to_idle =
            |f: fn(&Sample) -> Option<f64>| match (idle.and_then(f), after.and_then(f)) {
                (Some(i), Some(a)) => Some(a <= i),
                _ => None,
            };
        let verdict = vec![
            vec![
                "anonymous memory (RssAnon) growth after warm-up".into(),
                anon.cell(&window, |s| format!("{:.1} MiB", mib(s.anon_kib))),
                format!("≤ {FLAT_PCT} %: {}", met(anon.met())),
            ],
            vec![
                "VmRSS growth after warm-up (with code pages)".into(),
                rss.cell(&window, |s| format!("{:.1} MiB", mib(s.rss_kib))),
                format!("≤ {FLAT_PCT} %: {}", met(rss.met())),
            ],
            vec![
                "descriptor growth after warm-up".into(),
                fds.cell(&window, |s| s.fds.to_string()),
                format!("≤ {FLAT_PCT} %: {}", met(fds.met())),
            ],
            vec![
                "gauges back to zero after the load".into(),
                back,
                format!("yes: {}", met(Some(self.back_to_zero.is_some()))),
            ],
            vec![
                "client failures and refusals".into(),
                format!("{failed}{failures}"),
                format!("0: {}", met(Some(failed == 0))),
            ],
            vec![
                "refusals the relay counted".into(),
                format!("{refused}{refusal_kinds}"),
                format!("0: {}", met(Some(refused == 0.0))),
            ],
            vec![
                "descriptors after the load".into(),
                pair(|s| s.fds.to_string()),
                format!("≤ idle: {}", met(back_to_idle(|s| Some(s.fds as f64)))),
            ],
            vec![
                "tokio tasks after the load".into(),
                pair(|s| tasks(s.gauges.tasks)),
                format!("≤ idle: {}", met(back_to_idle(|s| s.gauges.tasks))),
            ],
        ];
        let mut md = format!(
            "Soak: dusk-relay alone (a leak check, not a comparison: no baseline, no direct \
             path) under a steady load for {} over TCP: {} fresh reservations/s each held \
             {} s (lightweight reservers), {} circuits at a time between fresh client swarms, \
             one per worker every {} s, each carrying 1-{} MiB both ways, then closed, and {} \
             rendezvous workers each registering a fresh peer every {} s (TTL {} s), \
             discovering it, unregistering it and discovering until it is gone. Sampled every \
             {} s from outside the relay: VmRSS, RssAnon and Threads (`/proc/<pid>/status`; \
             the memory verdict is on RssAnon, what the relay allocated: VmRSS also counts \
             the binary's code pages, which grow as rarer paths first run), open \
             descriptors (`/proc/<pid>/fd`), tasks (`dusk_relay_runtime_tasks`, n/a where the \
             relay has none) and its gauges (`/metrics`); \"done\" columns count the load so \
             far. Warm-up ends at {WARMUP_RULE}; growth runs from there to the last loaded \
             sample (the trend: along a least-squares line through those samples, which \
             the connections open at one instant sway less). The last row is read once the gauges settled (at most {} s) after the \
             load stopped\n\n",
            clock(self.load),
            load::RESERVATIONS_PER_SEC,
            load::RESERVATION_HOLD.as_secs(),
            load::CIRCUIT_WORKERS,
            load::CIRCUIT_EVERY.as_secs(),
            load::CIRCUIT_MIB_MAX,
            load::RENDEZVOUS_WORKERS,
            load::RENDEZVOUS_EVERY.as_secs(),
            load::REGISTRATION_TTL_SECS,
            self.every.as_secs(),
            self.zero_limit.as_secs(),
        );
        md += &Table::new(&[
            "sample",
            "RSS (MiB)",
            "anonymous (MiB)",
            "fds",
            "threads",
            "tasks",
            "reservations",
            "circuits",
            "connections",
            "registrations",
            "done: reservations",
            "done: circuits",
            "done: MiB",
            "done: registers",
            "done: discovers",
            "done: failures",
        ])
        .rows(self.rows())
        .render();
        md += "\n";
        md += &Table::new(&["measure", "dusk-relay", "goal"])
            .rows(verdict)
            .render();
        md
    }

    pub fn json(&self) -> Value {
        let Verdict {
            window,
            rss,
            anon,
            fds,
            refusals,
            refused,
            failed,
            idle,
            after,
        } = self.verdict();
        let samples: Vec<Value> = self
            .samples
            .iter()
            .map(|s| {
                let (g, d) = (&s.gauges, &s.done);
                json!({
                    "phase": s.phase.name(),
                    "elapsed_s": s.elapsed.as_secs_f64(),
                    "rss_mib": mib(s.rss_kib),
                    "anon_mib": mib(s.anon_kib),
                    "fds": s.fds,
                    "threads": s.threads,
                    "tasks": g.tasks,
                    "reservations": g.reservations,
                    "circuits": g.circuits,
                    "connections": g.connections,
                    "registrations": g.registrations,
                    "done": {
                        "reservations": d.reservations,
                        "circuits": d.circuits,
                        "bytes": d.bytes,
                        "registers": d.registers,
                        "discovers": d.discovers,
                        "failures": d.failures,
                    },
                })
            })
            .collect();
        let failures: serde_json::Map<String, Value> = self
            .failures
            .iter()
            .map(|(k, f)| {
                (
                    k.to_string(),
                    json!({"count": f.count, "first_error": f.first}),
                )
            })
            .collect();
        let fds_of = |s: Option<&Sample>| s.map(|s| s.fds);
        let tasks_of = |s: Option<&Sample>| s.and_then(|s| s.gauges.tasks);
        json!({
            "relay": "dusk-relay",
            "transport": "tcp",
            "note": "a leak check of dusk-relay alone: no baseline, no direct path",
            "load_seconds": self.load.as_secs_f64(),
            "sample_seconds": self.every.as_secs_f64(),
            "stopped_at_s": self.stopped_at.as_secs_f64(),
            "warmup_rule": WARMUP_RULE,
            "load": {
                "reservations_per_s": load::RESERVATIONS_PER_SEC,
                "reservation_hold_s": load::RESERVATION_HOLD.as_secs_f64(),
                "circuit_workers": load::CIRCUIT_WORKERS,
                "circuit_every_s": load::CIRCUIT_EVERY.as_secs_f64(),
                "circuit_mib_max": load::CIRCUIT_MIB_MAX,
                "rendezvous_workers": load::RENDEZVOUS_WORKERS,
                "rendezvous_every_s": load::RENDEZVOUS_EVERY.as_secs_f64(),
                "registration_ttl_s": load::REGISTRATION_TTL_SECS,
            },
            "samples": samples,
            "failures": failures,
            "relay_refusals": refusals,
            "verdict": {
                "warmup_elapsed_s": window.first().map(|s| s.elapsed.as_secs_f64()),
                "last_loaded_elapsed_s": self.loaded().last().map(|s| s.elapsed.as_secs_f64()),
                "rss_growth_pct": rss.pct,
                "rss_trend_pct": rss.trend,
                "rss_growth_met": rss.met(),
                "anon_growth_pct": anon.pct,
                "anon_trend_pct": anon.trend,
                "anon_growth_met": anon.met(),
                "fds_growth_pct": fds.pct,
                "fds_trend_pct": fds.trend,
                "fds_growth_met": fds.met(),
                "gauges_back_to_zero": self.back_to_zero.is_some(),
                "gauges_zero_after_s": self.back_to_zero.map(|t| t.as_secs_f64()),
                "gauges_left": after.map(|a| a.gauges.left()).unwrap_or_default(),
                "failures": failed,
                "failures_met": failed == 0,
                "relay_refusals": refused,
                "relay_refusals_met": refused == 0.0,
                "fds_idle": fds_of(idle),
                "fds_after": fds_of(after),
                "tasks_idle": tasks_of(idle),
                "tasks_after": tasks_of(after),
            },
        })
    }
}
