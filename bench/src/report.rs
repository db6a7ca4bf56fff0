//! The result every floe-bench sub-command prints: a human summary and the JSON contract of
//! DESIGN.md (`records`, `bytes`, `seconds`, `records_per_sec`, `mb_per_sec`, `latency_us`),
//! plus sub-command specific extras (ratios against same-run baselines).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Map, Value};

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub(crate) struct LatencyUs {
    pub(crate) p50: u64,
    pub(crate) p90: u64,
    pub(crate) p99: u64,
    pub(crate) p999: u64,
    pub(crate) p9999: u64,
    pub(crate) max: u64,
}

/// A latency recorder: microsecond resolution, 1 µs .. 1 hour, 3 significant digits.
#[derive(Debug)]
pub(crate) struct LatencyRecorder {
    hist: Histogram<u64>,
}

impl LatencyRecorder {
    pub(crate) fn new() -> Self {
        let hist =
            Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds are valid");
        LatencyRecorder { hist }
    }

    pub(crate) fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, 3_600_000_000);
        self.hist
            .record(us)
            .expect("value clamped into the histogram's bounds");
    }

    pub(crate) fn merge(&mut self, other: &LatencyRecorder) {
        self.hist.add(&other.hist).expect("histograms share bounds");
    }

    pub(crate) fn len(&self) -> u64 {
        self.hist.len()
    }

    pub(crate) fn summary(&self) -> LatencyUs {
        if self.hist.is_empty() {
            return LatencyUs {
                p50: 0,
                p90: 0,
                p99: 0,
                p999: 0,
                p9999: 0,
                max: 0,
            };
        }
        LatencyUs {
            p50: self.hist.value_at_quantile(0.50),
            p90: self.hist.value_at_quantile(0.90),
            p99: self.hist.value_at_quantile(0.99),
            p999: self.hist.value_at_quantile(0.999),
            p9999: self.hist.value_at_quantile(0.9999),
            max: self.hist.max(),
        }
    }

    /// The value at quantile `q` (0 when empty).
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.hist.is_empty() {
            0
        } else {
            self.hist.value_at_quantile(q)
        }
    }

    /// The percentile curve: (percentile, µs) at 0, 50, 75, 87.5, ... up to the max, the
    /// points a log-scaled "1/(1-p)" axis spreads evenly.
    pub(crate) fn percentile_curve(&self) -> Vec<(f64, u64)> {
        if self.hist.is_empty() {
            return Vec::new();
        }
        let mut points = Vec::new();
        let mut tail = 1.0f64;
        // Halve the tail each step, in quarter steps, to one in a million.
        while tail > 1e-6 {
            let q = 1.0 - tail;
            points.push((q * 100.0, self.hist.value_at_quantile(q)));
            tail /= 2f64.powf(0.25);
        }
        points.push((100.0, self.hist.max()));
        points
    }

    /// Clears the recorder (for per-interval histograms).
    pub(crate) fn reset(&mut self) {
        self.hist.reset();
    }
}

/// One benchmark result.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) name: &'static str,
    pub(crate) records: u64,
    pub(crate) bytes: u64,
    pub(crate) elapsed: Duration,
    pub(crate) latency: LatencyUs,
    /// What the latency measures, for the human summary ("latency " unless told).
    pub(crate) latency_label: &'static str,
    /// Extra fields, in insertion order, printed after the standard ones.
    pub(crate) extras: Vec<(&'static str, Value)>,
}

impl Report {
    pub(crate) fn seconds(&self) -> f64 {
        self.elapsed.as_secs_f64().max(1e-9)
    }

    pub(crate) fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.seconds()
    }

    pub(crate) fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds()
    }

    pub(crate) fn extra(&mut self, key: &'static str, value: impl Into<Value>) {
        self.extras.push((key, value.into()));
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("records".into(), self.records.into());
        map.insert("bytes".into(), self.bytes.into());
        map.insert("seconds".into(), self.seconds().into());
        map.insert("records_per_sec".into(), self.records_per_sec().into());
        map.insert("mb_per_sec".into(), self.mb_per_sec().into());
        map.insert(
            "latency_us".into(),
            serde_json::to_value(self.latency).expect("plain struct serialises"),
        );
        for (k, v) in &self.extras {
            map.insert((*k).into(), v.clone());
        }
        Value::Object(map)
    }

    pub(crate) fn print_human(&self) {
        println!("floe-bench {}", self.name);
        println!(
            "  {} records, {:.1} MB in {:.3} s: {:.0} records/s, {:.1} MB/s",
            self.records,
            self.bytes as f64 / 1e6,
            self.seconds(),
            self.records_per_sec(),
            self.mb_per_sec()
        );
        let l = self.latency;
        println!(
            "  {}µs: p50 {} p90 {} p99 {} p99.9 {} p99.99 {} max {}",
            self.latency_label, l.p50, l.p90, l.p99, l.p999, l.p9999, l.max
        );
        for (k, v) in &self.extras {
            match v {
                Value::Number(n) if n.is_f64() => {
                    println!("  {k}: {:.3}", n.as_f64().unwrap_or(0.0))
                }
                Value::String(s) => println!("  {k}: {s}"),
                _ => println!("  {k}: {v}"),
            }
        }
    }

    pub(crate) fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(&self.to_json())?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_contract_fields_and_consistent_rates() {
        let mut lat = LatencyRecorder::new();
        for us in [10u64, 20, 30, 1000] {
            lat.record(Duration::from_micros(us));
        }
        let mut r = Report {
            name: "test",
            records: 1000,
            bytes: 2_000_000,
            elapsed: Duration::from_secs(2),
            latency: lat.summary(),
            latency_label: "latency ",
            extras: Vec::new(),
        };
        r.extra("read_mb_per_sec", 3.5);
        let v = r.to_json();
        assert_eq!(v["records"], 1000);
        assert_eq!(v["bytes"], 2_000_000);
        assert_eq!(v["mb_per_sec"], 1.0);
        assert_eq!(v["records_per_sec"], 500.0);
        assert_eq!(v["read_mb_per_sec"], 3.5);
        let l = &v["latency_us"];
        assert!(l["p50"].as_u64().unwrap() <= l["p99"].as_u64().unwrap());
        assert_eq!(l["max"].as_u64().unwrap(), 1000);
    }

    #[test]
    fn empty_histogram_summarises_to_zero() {
        assert_eq!(
            LatencyRecorder::new().summary(),
            LatencyUs {
                p50: 0,
                p90: 0,
                p99: 0,
                p999: 0,
                p9999: 0,
                max: 0
            }
        );
    }
}
