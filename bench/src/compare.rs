//! `floe-bench compare A.json B.json`: every field of two results side by side, numbers with
//! the ratio B/A (nested objects such as `latency_us` are flattened to `latency_us.p99`).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, ensure};
use serde_json::Value;

fn load(path: &Path) -> anyhow::Result<Vec<(String, Value)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    ensure!(v.is_object(), "{} is not a JSON object", path.display());
    let mut out = Vec::new();
    flatten("", &v, &mut out);
    Ok(out)
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "-".into(),
        Some(Value::Number(n)) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(0.0);
            if f.abs() >= 100.0 {
                format!("{f:.0}")
            } else {
                format!("{f:.3}")
            }
        }
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// The table, one line per field.
pub(crate) fn run(a: &Path, b: &Path) -> anyhow::Result<String> {
    let fa = load(a)?;
    let fb = load(b)?;
    let mut keys: Vec<&str> = fa.iter().map(|(k, _)| k.as_str()).collect();
    for (k, _) in &fb {
        if !keys.contains(&k.as_str()) {
            keys.push(k);
        }
    }
    let get =
        |f: &[(String, Value)], k: &str| f.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone());
    let rows: Vec<[String; 4]> = keys
        .iter()
        .map(|k| {
            let (va, vb) = (get(&fa, k), get(&fb, k));
            let ratio = match (
                va.as_ref().and_then(Value::as_f64),
                vb.as_ref().and_then(Value::as_f64),
            ) {
                (Some(x), Some(y)) if x != 0.0 => format!("{:.3}", y / x),
                (Some(_), Some(y)) if y != 0.0 => "inf".into(),
                _ => String::new(),
            };
            [k.to_string(), show(va.as_ref()), show(vb.as_ref()), ratio]
        })
        .collect();
    let header = [
        "field".to_string(),
        a.display().to_string(),
        b.display().to_string(),
        "B/A".to_string(),
    ];
    let mut widths = header.each_ref().map(String::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&header).chain(&rows) {
        let _ = writeln!(
            out,
            "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_of_numbers_and_strings_side_by_side() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        let b = dir.path().join("b.json");
        std::fs::write(
            &a,
            r#"{"mb_per_sec": 100.0, "replicas": 1, "acks": "all", "latency_us": {"p99": 2000}}"#,
        )
        .unwrap();
        std::fs::write(&b, r#"{"mb_per_sec": 50.0, "replicas": 3, "acks": "all", "latency_us": {"p99": 5000}, "extra": 1}"#).unwrap();
        let t = run(&a, &b).unwrap();
        let line = |k: &str| t.lines().find(|l| l.starts_with(k)).unwrap().to_string();
        assert!(line("mb_per_sec").ends_with("0.500"), "{t}");
        assert!(line("replicas").ends_with("3.000"), "{t}");
        assert!(line("latency_us.p99").ends_with("2.500"), "{t}");
        assert!(line("acks").trim_end().ends_with("all"), "{t}");
        assert!(line("extra").contains('-'), "{t}");
    }

    #[test]
    fn a_bad_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        std::fs::write(&a, "[1]").unwrap();
        assert!(run(&a, &a).is_err());
        assert!(run(&dir.path().join("missing"), &a).is_err());
    }
}
