//! Markdown tables, statistics and the description of how (and where) a run was made.

/// A markdown table, ready to paste into BENCHMARKS.md.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn rows(mut self, rows: Vec<Vec<String>>) -> Table {
        self.rows = rows;
        self
    }

    pub fn render(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut out = line(&self.header);
        let rule: Vec<String> = (0..self.header.len())
            .map(|i| if i == 0 { "---" } else { "---:" }.to_string())
            .collect();
        out += &line(&rule);
        for row in &self.rows {
            out += &line(row);
        }
        out
    }
}

/// The header of a table that compares the two relays measure by measure, one row each
/// (see [`measure_row`]).
const MEASURE_HEADER: [&str; 5] = [
    "measure",
    "dusk-relay",
    "baseline",
    "dusk ÷ baseline",
    "goal",
];

/// A table comparing the two relays measure by measure: `rows` under [`MEASURE_HEADER`].
pub fn measure_table(rows: Vec<Vec<String>>) -> String {
    Table::new(&MEASURE_HEADER).rows(rows).render()
}

/// A row of a [`measure_table`]: `label`, both relays' figures to `decimals` places,
/// dusk-relay's ÷ the baseline's to two, and `goal` (empty where there is none).
pub fn measure_row(
    label: impl Into<String>,
    dusk: f64,
    baseline: f64,
    decimals: usize,
    goal: &str,
) -> Vec<String> {
    vec![
        label.into(),
        format!("{dusk:.decimals$}"),
        format!("{baseline:.decimals$}"),
        format!("{:.2}", ratio(dusk, baseline)),
        goal.to_string(),
    ]
}

/// Each of `values` to `decimals` places: table cells.
pub fn fixed(decimals: usize, values: &[f64]) -> Vec<String> {
    values.iter().map(|v| format!("{v:.decimals$}")).collect()
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The `q` quantile of sorted `values` (nearest rank).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

/// Where and how the run was made: the command, cores, memory, load, date.
pub struct Machine {
    pub cores: usize,
    pub mem_total_mib: u64,
    pub load_at_start: String,
    pub date: String,
    pub command: String,
}

impl Machine {
    pub fn now() -> Machine {
        let mem_total_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            })
            .map_or(0, |kib| kib / 1024);
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            mem_total_mib,
            load_at_start: load_average(),
            date: utc_now(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "`{}`, {} UTC, {} cores, {} MiB RAM, load average at start {} and at end {}, \
             relays as child processes of the bench, clients in the bench process, loopback",
            self.command,
            self.date,
            self.cores,
            self.mem_total_mib,
            self.load_at_start,
            load_average()
        )
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "command": self.command,
            "date_utc": self.date,
            "cores": self.cores,
            "mem_total_mib": self.mem_total_mib,
            "load_at_start": self.load_at_start,
            "load_at_end": load_average(),
        })
    }
}

/// The 1, 5 and 15 minute load averages from /proc/loadavg.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// `YYYY-MM-DD HH:MM` in UTC, from the system clock.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}
