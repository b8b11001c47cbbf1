//! How much a figure of the relay grew over the soak once warmed up: first to last
//! sample, the goal's measure, and along a least-squares line through every sample.

use super::sample::Sample;

/// Growth after warm-up, in per cent, that still counts as flat.
pub const FLAT_PCT: f64 = 5.0;

/// Growth over the loaded samples from warm-up on, in per cent: from the first to the
/// last (the goal's measure), and along a least-squares line through all of them, which
/// a momentary swing of the load (descriptors follow the connections open at the
/// instant) moves less.
pub struct Growth {
    pub pct: Option<f64>,
    pub trend: Option<f64>,
}

impl Growth {
    pub fn of(samples: &[&Sample], value: fn(&Sample) -> u64) -> Growth {
        let pct = match (samples.first(), samples.last()) {
            (Some(a), Some(b)) if samples.len() >= 2 && value(a) > 0 => {
                Some((value(b) as f64 - value(a) as f64) / value(a) as f64 * 100.0)
            }
            _ => None,
        };
        let points: Vec<(f64, f64)> = samples
            .iter()
            .map(|s| (s.elapsed.as_secs_f64(), value(s) as f64))
            .collect();
        Growth {
            pct,
            trend: trend_pct(&points),
        }
    }

    pub fn met(&self) -> Option<bool> {
        self.pct.map(|p| p <= FLAT_PCT)
    }

    pub fn cell(&self, samples: &[&Sample], unit: fn(&Sample) -> String) -> String {
        let trend = self
            .trend
            .map(|t| format!("; trend {t:+.1} %"))
            .unwrap_or_default();
        match (self.pct, samples.first(), samples.last()) {
            (Some(p), Some(a), Some(b)) => {
                format!("{p:+.1} % ({} → {}{trend})", unit(a), unit(b))
            }
            _ => "n/a (too short for a sample after warm-up)".into(),
        }
    }
}

/// The rise of the least-squares line through `points` (time, value) from the first
/// time to the last, in per cent of its value at the first; none under 3 points.
fn trend_pct(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_v = points.iter().map(|p| p.1).sum::<f64>() / n;
    let var_t: f64 = points.iter().map(|p| (p.0 - mean_t).powi(2)).sum();
    if var_t == 0.0 {
        return None;
    }
    let cov: f64 = points.iter().map(|p| (p.0 - mean_t) * (p.1 - mean_v)).sum();
    let slope = cov / var_t;
    let (first, last) = (points[0].0, points[points.len() - 1].0);
    let start = mean_v + slope * (first - mean_t);
    (start > 0.0).then(|| slope * (last - first) / start * 100.0)
}

#[cfg(test)]
mod tests {
    use super::trend_pct;

    #[test]
    fn a_flat_series_has_no_trend_and_a_steady_rise_its_full_growth() {
        let flat = [(10.0, 80.0), (20.0, 90.0), (30.0, 90.0), (40.0, 80.0)];
        assert_eq!(trend_pct(&flat), Some(0.0));
        // 100 -> 110 along a straight line: +10 %.
        let rising = [(0.0, 100.0), (5.0, 105.0), (10.0, 110.0)];
        let trend = trend_pct(&rising).expect("three points");
        assert!((trend - 10.0).abs() < 1e-9, "{trend}");
        assert_eq!(trend_pct(&rising[..2]), None);
    }
}
