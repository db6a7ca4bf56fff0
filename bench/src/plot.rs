//! `--plot FILE.svg`: throughput over time (top) and the latency percentile curve (bottom),
//! drawn with plotters' SVG backend (no font or system dependencies: text is SVG text).

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use crate::meter::Sample;
use crate::report::LatencyRecorder;

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// `p` (percent) on the "nines" axis: 0 at p0, 1 at p90, 2 at p99, 3 at p99.9, ...
fn nines(p: f64) -> f64 {
    let tail = (1.0 - p / 100.0).max(1e-7);
    -tail.log10()
}

fn nines_label(x: &f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    if p >= 99.99995 {
        "max".into()
    } else {
        format!("p{}", trim(p))
    }
}

fn trim(p: f64) -> String {
    let s = format!("{p:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Writes the SVG: one line per throughput series, one curve per latency recorder.
pub(crate) fn write_svg(
    path: &Path,
    title: &str,
    series: &[(&str, &[Sample])],
    latencies: &[(&str, &LatencyRecorder)],
) -> anyhow::Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing the plot: {e}");
    let root = SVGBackend::new(path, (900, 720)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(360);

    let t_max = series
        .iter()
        .flat_map(|(_, s)| s.iter().map(|p| p.t))
        .fold(1.0f64, f64::max);
    let mb_max = series
        .iter()
        .flat_map(|(_, s)| s.iter().map(|p| p.mb_per_sec))
        .fold(1.0f64, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!("floe-bench {title}: throughput"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..t_max, 0f64..mb_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("MB/s")
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (name, samples)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                samples.iter().map(|s| (s.t, s.mb_per_sec)),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;

    let curves: Vec<(&str, Vec<(f64, f64)>)> = latencies
        .iter()
        .map(|(name, rec)| {
            let points = rec
                .percentile_curve()
                .into_iter()
                .map(|(p, us)| (nines(p), us.max(1) as f64 / 1000.0))
                .collect();
            (*name, points)
        })
        .collect();
    let x_max = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    // Linear in ms, as HdrHistogram's own plots: the tail is what the eye should catch.
    let y_max = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.1))
        .fold(0.001f64, f64::max);
    let mut chart = ChartBuilder::on(&bottom)
        .caption("latency by percentile", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max * 1.1)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("ms")
        .x_labels(x_max.ceil() as usize + 1)
        .x_label_formatter(&nines_label)
        .y_label_formatter(&|y| trim(*y))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (name, points)) in curves.into_iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_nines_axis_is_labelled_by_percentile() {
        assert_eq!(nines_label(&0.0), "p0");
        assert_eq!(nines_label(&1.0), "p90");
        assert_eq!(nines_label(&2.0), "p99");
        assert_eq!(nines_label(&3.0), "p99.9");
        assert!((nines(99.0) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn writes_an_svg_with_both_charts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.svg");
        let samples: Vec<Sample> = (1..=5)
            .map(|i| Sample {
                t: f64::from(i),
                mb_per_sec: 10.0 * f64::from(i),
                records_per_sec: 1e4,
                p99_us: 900,
            })
            .collect();
        let mut lat = LatencyRecorder::new();
        for us in 1..2000u64 {
            lat.record(Duration::from_micros(us));
        }
        write_svg(
            &path,
            "test",
            &[("acked", &samples)],
            &[("produce-ack", &lat)],
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..50.min(svg.len())]);
        for text in [
            "throughput",
            "latency by percentile",
            "acked",
            "produce-ack",
            "p99",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
        // Empty inputs still draw (axes only) rather than fail.
        write_svg(&path, "empty", &[], &[("none", &LatencyRecorder::new())]).unwrap();
    }
}
