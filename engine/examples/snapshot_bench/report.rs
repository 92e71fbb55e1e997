//! Figures of one run, statistics over samples, and the table and JSON output.

use serde_json::{Map, Value};

/// Named figures of one run, in the order they were added, and its timeline.
#[derive(Clone, Debug, Default)]
pub(crate) struct Summary {
    figures: Vec<(&'static str, f64)>,
    /// What happened over time (S1 runs), for `--svg`.
    pub(crate) timeline: Timeline,
}

/// One run over time: what the server sent client 0, and how client 0's frames went.
#[derive(Clone, Debug, Default)]
pub(crate) struct Timeline {
    /// Per measured tick: seconds since the start, UDP payload bytes sent to client 0.
    pub(crate) bytes: Vec<(f64, u64)>,
    /// Per measured frame: seconds since the start, whether it was a hitch.
    pub(crate) hitches: Vec<(f64, bool)>,
    /// The adaptive budget, if any: seconds since the start, bytes per second.
    pub(crate) budget: Vec<(f64, u32)>,
}

impl Summary {
    /// Adds (or replaces) a figure.
    pub(crate) fn put(&mut self, name: &'static str, value: f64) {
        match self.figures.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.figures.push((name, value)),
        }
    }

    /// A figure, if present.
    pub(crate) fn get(&self, name: &str) -> Option<f64> {
        self.figures
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// Every figure, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        self.figures.iter().copied()
    }

    /// As a JSON object; non-finite values become `null`, values rounded to 3 decimals.
    pub(crate) fn to_json(&self) -> Value {
        let mut map = Map::new();
        for (name, value) in self.iter() {
            map.insert(name.to_string(), number(value));
        }
        Value::Object(map)
    }
}

/// A JSON number rounded to 3 decimals (`null` if not finite).
pub(crate) fn number(value: f64) -> Value {
    if !value.is_finite() {
        return Value::Null;
    }
    serde_json::Number::from_f64((value * 1000.0).round() / 1000.0)
        .map_or(Value::Null, Value::Number)
}

/// Mean of the samples (NaN if none).
pub(crate) fn mean(samples: &[f64]) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.iter().sum::<f64>() / samples.len() as f64
}

/// Nearest-rank percentile `p` (0 to 100) of the samples, sorting them (NaN if none).
pub(crate) fn percentile(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// Prints rows of figures as a table: one column per run, one line per figure (the union of
/// the figures, in first-seen order).
pub(crate) fn print_table(title: &str, columns: &[(String, &Summary)]) {
    println!("{title}");
    let mut names: Vec<&'static str> = Vec::new();
    for (_, summary) in columns {
        for (name, _) in summary.iter() {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let width = names.iter().map(|n| n.len()).max().unwrap_or(10);
    print!("  {:width$}", "");
    for (label, _) in columns {
        print!(" {label:>12}");
    }
    println!();
    for name in names {
        print!("  {name:width$}");
        for (_, summary) in columns {
            match summary.get(name) {
                Some(v) if v.is_finite() => print!(" {:>12}", format_value(v)),
                _ => print!(" {:>12}", "-"),
            }
        }
        println!();
    }
    println!();
}

fn format_value(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e9 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}
