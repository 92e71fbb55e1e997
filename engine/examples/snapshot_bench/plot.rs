//! `--svg DIR`: per S1 run, kbps sent to client 0 and the share of hitched frames over time,
//! one SVG file each (plotters, SVG backend).

use std::path::Path;

use plotters::prelude::*;

use crate::report::Timeline;

/// Width of one bin of the plots, in seconds.
const BIN_SECONDS: f64 = 0.25;

/// Why a plot could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PlotError {
    /// The output directory could not be created.
    #[error("cannot create {path}: {source}")]
    Directory {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Drawing or writing the SVG failed.
    #[error("cannot draw {path}: {message}")]
    Draw {
        /// The file.
        path: String,
        /// What plotters said.
        message: String,
    },
}

/// Writes `DIR/s1_<name>.svg` for one run; returns the file's path.
pub(crate) fn write(
    dir: &Path,
    name: &str,
    title: &str,
    timeline: &Timeline,
) -> Result<String, PlotError> {
    std::fs::create_dir_all(dir).map_err(|source| PlotError::Directory {
        path: dir.display().to_string(),
        source,
    })?;
    let path = dir.join(format!("s1_{}.svg", name.to_lowercase()));
    let shown = path.display().to_string();
    draw(&path, title, timeline).map_err(|message| PlotError::Draw {
        path: shown.clone(),
        message,
    })?;
    Ok(shown)
}

fn draw(path: &Path, title: &str, timeline: &Timeline) -> Result<(), String> {
    let kbps = bin(&timeline.bytes, |bytes: &[u64]| {
        bytes.iter().sum::<u64>() as f64 * 8.0 / BIN_SECONDS / 1000.0
    });
    let budget: Vec<(f64, f64)> = timeline
        .budget
        .iter()
        .map(|&(t, rate)| (t, f64::from(rate) * 8.0 / 1000.0))
        .collect();
    let hitches = bin(&timeline.hitches, |frames: &[bool]| {
        100.0 * frames.iter().filter(|&&h| h).count() as f64 / frames.len().max(1) as f64
    });
    let (start, end) = kbps
        .first()
        .zip(kbps.last())
        .map_or((0.0, 1.0), |(a, b)| (a.0, b.0.max(a.0 + 1.0)));
    let top = kbps
        .iter()
        .chain(&budget)
        .map(|&(_, v)| v)
        .fold(100.0f64, f64::max)
        * 1.1;
    let hitch_top = hitches.iter().map(|&(_, v)| v).fold(1.0f64, f64::max) * 1.1;

    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(title, ("sans-serif", 18))
        .map_err(|e| e.to_string())?;
    let (upper, lower) = root.split_vertically(340);

    let mut chart = ChartBuilder::on(&upper)
        .margin(10)
        .x_label_area_size(24)
        .y_label_area_size(60)
        .build_cartesian_2d(start..end, 0.0..top)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .y_desc("kbps to client 0")
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(LineSeries::new(kbps.iter().copied(), &BLUE))
        .map_err(|e| e.to_string())?
        .label("sent (UDP payload)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    if !budget.is_empty() {
        chart
            .draw_series(LineSeries::new(budget.iter().copied(), &GREEN))
            .map_err(|e| e.to_string())?
            .label("adaptive budget")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;

    let mut chart = ChartBuilder::on(&lower)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(start..end, 0.0..hitch_top)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("simulated seconds")
        .y_desc("hitched frames %")
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(LineSeries::new(hitches.iter().copied(), &RED))
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// Groups `(seconds, value)` samples into bins of [`BIN_SECONDS`] and reduces each bin.
fn bin<T: Copy>(samples: &[(f64, T)], reduce: impl Fn(&[T]) -> f64) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut current: Vec<T> = Vec::new();
    let mut bin_start = None;
    for &(t, v) in samples {
        let start = (t / BIN_SECONDS).floor() * BIN_SECONDS;
        if bin_start.is_some_and(|s| s != start) {
            if let Some(s) = bin_start {
                out.push((s, reduce(&current)));
            }
            current.clear();
        }
        bin_start = Some(start);
        current.push(v);
    }
    if let Some(s) = bin_start {
        out.push((s, reduce(&current)));
    }
    out
}
