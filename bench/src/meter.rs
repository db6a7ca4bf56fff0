//! Live measurement: one [`Meter`] per producer or consumer task, a clock shared by producers
//! and consumers, and the ticker that samples every meter once a second for the progress bar
//! and the throughput-over-time plot.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;

use crate::report::LatencyRecorder;

/// Converts `Instant`s to nanoseconds since the Unix epoch through one anchor, so intended
/// send times written into values and consume times compare monotonically in one process,
/// and approximately (wall clock) across processes on one machine.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    base: Instant,
    base_epoch_ns: u64,
}

impl Clock {
    pub(crate) fn new() -> Self {
        let base_epoch_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Clock {
            base: Instant::now(),
            base_epoch_ns,
        }
    }

    /// `at` in ns since the Unix epoch.
    pub(crate) fn epoch_ns(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.base);
        self.base_epoch_ns
            .saturating_add(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
    }

    /// Time from `epoch_ns` (an intended send time) to `now`; zero if it lies ahead.
    pub(crate) fn since(&self, epoch_ns: u64, now: Instant) -> Duration {
        Duration::from_nanos(self.epoch_ns(now).saturating_sub(epoch_ns))
    }
}

#[derive(Debug)]
struct Inner {
    /// Measured events (after the warm-up).
    total: LatencyRecorder,
    records: u64,
    bytes: u64,
    /// The last measured event.
    last: Option<Instant>,
    /// Every event since the last tick (warm-up included), for the progress bar and plot.
    interval: LatencyRecorder,
    interval_records: u64,
    interval_bytes: u64,
    /// Every event, warm-up included.
    all_records: u64,
    failures: u64,
    first_failure: Option<String>,
}

/// Counts and latencies of one task. Locked per event: each meter has one writer (a task or
/// a producer's callback) and the once-a-second ticker, so the lock is uncontended.
#[derive(Debug)]
pub(crate) struct Meter {
    inner: Mutex<Inner>,
}

/// What one meter measured.
#[derive(Debug)]
pub(crate) struct MeterTotals {
    pub(crate) latency: LatencyRecorder,
    pub(crate) records: u64,
    pub(crate) bytes: u64,
    pub(crate) last: Option<Instant>,
    pub(crate) all_records: u64,
    pub(crate) failures: u64,
    pub(crate) first_failure: Option<String>,
}

impl Meter {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Meter {
            inner: Mutex::new(Inner {
                total: LatencyRecorder::new(),
                records: 0,
                bytes: 0,
                last: None,
                interval: LatencyRecorder::new(),
                interval_records: 0,
                interval_bytes: 0,
                all_records: 0,
                failures: 0,
                first_failure: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not hide the numbers: the data stays consistent per event.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One record done (acknowledged or consumed) `latency` after it was meant to be sent.
    pub(crate) fn record(&self, latency: Duration, bytes: u64, measured: bool, now: Instant) {
        let mut m = self.lock();
        m.interval.record(latency);
        m.interval_records += 1;
        m.interval_bytes += bytes;
        m.all_records += 1;
        if measured {
            m.total.record(latency);
            m.records += 1;
            m.bytes += bytes;
            m.last = Some(now);
        }
    }

    /// One record failed.
    pub(crate) fn fail(&self, why: String) {
        let mut m = self.lock();
        m.failures += 1;
        m.first_failure.get_or_insert(why);
    }

    /// Records done so far, warm-up included.
    pub(crate) fn all_records(&self) -> u64 {
        self.lock().all_records
    }

    fn take_interval(&self, into: &mut LatencyRecorder) -> (u64, u64) {
        let mut m = self.lock();
        into.merge(&m.interval);
        m.interval.reset();
        let out = (m.interval_records, m.interval_bytes);
        m.interval_records = 0;
        m.interval_bytes = 0;
        out
    }

    /// The totals (the meter keeps counting if still in use).
    pub(crate) fn totals(&self) -> MeterTotals {
        let m = self.lock();
        let mut latency = LatencyRecorder::new();
        latency.merge(&m.total);
        MeterTotals {
            latency,
            records: m.records,
            bytes: m.bytes,
            last: m.last,
            all_records: m.all_records,
            failures: m.failures,
            first_failure: m.first_failure.clone(),
        }
    }
}

/// Sums of several meters' totals.
pub(crate) fn merge_totals(meters: &[Arc<Meter>]) -> MeterTotals {
    let mut out = MeterTotals {
        latency: LatencyRecorder::new(),
        records: 0,
        bytes: 0,
        last: None,
        all_records: 0,
        failures: 0,
        first_failure: None,
    };
    for m in meters {
        let t = m.totals();
        out.latency.merge(&t.latency);
        out.records += t.records;
        out.bytes += t.bytes;
        out.last = out.last.max(t.last);
        out.all_records += t.all_records;
        out.failures += t.failures;
        if out.first_failure.is_none() {
            out.first_failure = t.first_failure;
        }
    }
    out
}

/// One sample of the timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    /// Seconds since the run started (end of the interval).
    pub(crate) t: f64,
    /// MB/s over the interval.
    pub(crate) mb_per_sec: f64,
    /// Records/s over the interval.
    pub(crate) records_per_sec: f64,
    /// p99 latency over the interval, µs.
    pub(crate) p99_us: u64,
}

/// Samples meters every `period` until stopped; drives the progress bar.
#[derive(Debug)]
pub(crate) struct Ticker {
    /// Sample times are seconds since this.
    origin: Instant,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<Sample>>,
}

impl Ticker {
    /// Starts sampling `meters`; `expected` (records, warm-up included) makes the bar a bar.
    pub(crate) fn start(
        label: &'static str,
        meters: Vec<Arc<Meter>>,
        expected: Option<u64>,
        quiet: bool,
        period: Duration,
    ) -> Self {
        let bar = if quiet || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            let bar = match expected {
                Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr())
                    .with_style(
                        ProgressStyle::with_template(
                            "{prefix} {elapsed_precise} [{bar:30}] {human_pos}/{human_len} records {msg}",
                        )
                        .expect("static template")
                        .progress_chars("=> "),
                    ),
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
                    .with_style(
                        ProgressStyle::with_template(
                            "{prefix} {spinner} {elapsed_precise} {human_pos} records {msg}",
                        )
                        .expect("static template"),
                    ),
            };
            bar.set_prefix(label);
            bar
        };
        let (stop, mut stopped) = watch::channel(false);
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut last = started;
            let mut interval = tokio::time::interval(period);
            interval.tick().await;
            loop {
                let done = tokio::select! {
                    _ = interval.tick() => false,
                    _ = stopped.changed() => true,
                };
                let now = Instant::now();
                let mut hist = LatencyRecorder::new();
                let (mut records, mut bytes, mut all) = (0u64, 0u64, 0u64);
                for m in &meters {
                    let (r, b) = m.take_interval(&mut hist);
                    records += r;
                    bytes += b;
                    all += m.all_records();
                }
                let secs = now.duration_since(last).as_secs_f64().max(1e-9);
                last = now;
                let sample = Sample {
                    t: now.duration_since(started).as_secs_f64(),
                    mb_per_sec: bytes as f64 / 1e6 / secs,
                    records_per_sec: records as f64 / secs,
                    p99_us: hist.quantile(0.99),
                };
                bar.set_position(all);
                bar.set_message(format!(
                    "{:.1} MB/s, p99 {:.2} ms",
                    sample.mb_per_sec,
                    sample.p99_us as f64 / 1000.0
                ));
                // A short last interval (the stop) says little about throughput: keep it only
                // if it carried records.
                if !done || records > 0 {
                    samples.push(sample);
                }
                if done {
                    bar.finish_and_clear();
                    return samples;
                }
            }
        });
        Ticker {
            origin: started,
            stop,
            task,
        }
    }

    /// When sampling started: sample times count from here.
    pub(crate) fn origin(&self) -> Instant {
        self.origin
    }

    /// Stops sampling and returns the timeline.
    pub(crate) async fn finish(self) -> Vec<Sample> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_measured_events_count_but_every_event_is_sampled() {
        let m = Meter::new();
        let now = Instant::now();
        m.record(Duration::from_micros(10), 100, false, now);
        m.record(Duration::from_micros(20), 100, true, now);
        m.record(Duration::from_micros(30), 100, true, now);
        m.fail("boom".into());
        let t = m.totals();
        assert_eq!((t.records, t.bytes, t.all_records), (2, 200, 3));
        assert_eq!(t.latency.len(), 2);
        assert_eq!((t.failures, t.first_failure.as_deref()), (1, Some("boom")));
        let mut h = LatencyRecorder::new();
        assert_eq!(m.take_interval(&mut h), (3, 300));
        assert_eq!(h.len(), 3);
        assert_eq!(m.take_interval(&mut h), (0, 0));
    }

    #[test]
    fn clock_measures_from_the_intended_time() {
        let c = Clock::new();
        let t0 = Instant::now();
        let later = t0 + Duration::from_millis(5);
        assert_eq!(c.since(c.epoch_ns(t0), later), Duration::from_millis(5));
        assert_eq!(c.since(c.epoch_ns(later), t0), Duration::ZERO);
    }

    #[tokio::test]
    async fn ticker_samples_until_stopped() {
        let m = Meter::new();
        let ticker = Ticker::start(
            "test",
            vec![m.clone()],
            Some(10),
            true,
            Duration::from_millis(10),
        );
        m.record(Duration::from_micros(100), 1_000_000, true, Instant::now());
        tokio::time::sleep(Duration::from_millis(50)).await;
        let samples = ticker.finish().await;
        assert!(!samples.is_empty());
        let total: f64 = samples
            .windows(2)
            .map(|w| w[1].mb_per_sec * (w[1].t - w[0].t))
            .sum::<f64>()
            + samples[0].mb_per_sec * samples[0].t;
        assert!((total - 1.0).abs() < 0.01, "{total} MB over the samples");
    }
}
