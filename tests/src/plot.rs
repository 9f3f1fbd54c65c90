//! The benchmark report's plots, as SVG files (plotters).

use std::path::Path;

use plotters::prelude::*;

use crate::report::Spread;

type Outcome = Result<(), String>;

const SIZE: (u32, u32) = (860, 520);

fn failed(e: impl std::fmt::Display) -> String {
    format!("plot: {e}")
}

fn colour(i: usize) -> RGBColor {
    const PALETTE: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    PALETTE[i % PALETTE.len()]
}

/// Empirical distribution functions of latency samples (ms), on a log
/// axis: for each series, the fraction of requests done within x ms.
pub fn latency_cdf(path: &Path, title: &str, series: &[(String, Vec<f64>)]) -> Outcome {
    let all = series.iter().flat_map(|(_, s)| s.iter().copied());
    let (lo, hi) = all
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return Err(format!("plot {title}: no samples"));
    }
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(failed)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d((lo * 0.9..hi * 1.1).log_scale(), 0f64..1f64)
        .map_err(failed)?;
    chart
        .configure_mesh()
        .x_desc("latency (ms, log scale)")
        .y_desc("fraction of requests")
        .draw()
        .map_err(failed)?;
    for (i, (name, samples)) in series.iter().enumerate() {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| *v > 0.0).collect();
        sorted.sort_by(f64::total_cmp);
        #[allow(clippy::cast_precision_loss)] // sample counts, far below 2^52
        let n = sorted.len() as f64;
        // At most about 400 points a line: the file stays small.
        let step = sorted.len().div_ceil(400).max(1);
        #[allow(clippy::cast_precision_loss)]
        let points = sorted
            .iter()
            .enumerate()
            .filter(|(k, _)| k % step == step - 1 || k + 1 == sorted.len())
            .map(|(k, v)| (*v, (k + 1) as f64 / n));
        let style = colour(i).stroke_width(2);
        chart
            .draw_series(LineSeries::new(points, style))
            .map_err(failed)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(failed)?;
    root.present().map_err(failed)
}

/// Medians against a count (clients), with bars from the lowest to the
/// highest run, one line per series.
pub fn medians(
    path: &Path,
    title: &str,
    axes: (&str, &str),
    series: &[(String, Vec<(f64, Spread)>)],
) -> Outcome {
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let x_hi = points.clone().map(|(x, _)| *x).fold(1.0, f64::max);
    let y_hi = points.map(|(_, s)| s.high).fold(0.0, f64::max);
    if y_hi <= 0.0 {
        return Err(format!("plot {title}: no figures"));
    }
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(failed)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d((0.8..x_hi * 1.25).log_scale(), 0f64..y_hi * 1.1)
        .map_err(failed)?;
    chart
        .configure_mesh()
        .x_desc(axes.0)
        .y_desc(axes.1)
        .draw()
        .map_err(failed)?;
    for (i, (name, figures)) in series.iter().enumerate() {
        let style = colour(i).stroke_width(2);
        chart
            .draw_series(LineSeries::new(
                figures.iter().map(|(x, s)| (*x, s.median)),
                style,
            ))
            .map_err(failed)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart
            .draw_series(
                figures
                    .iter()
                    .map(|(x, s)| ErrorBar::new_vertical(*x, s.low, s.median, s.high, style, 8)),
            )
            .map_err(failed)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(failed)?;
    root.present().map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_written_as_svg() {
        let dir = tempfile::tempdir().unwrap();
        let cdf = dir.path().join("cdf.svg");
        let series = vec![
            ("one".to_owned(), vec![0.5, 0.7, 1.2, 3.0]),
            ("two".to_owned(), vec![2.0, 4.0]),
        ];
        latency_cdf(&cdf, "latency", &series).unwrap();
        let svg = std::fs::read_to_string(&cdf).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("two"), "{svg}");

        let rates = dir.path().join("rates.svg");
        let spread = |v: &[f64]| Spread::of(v).unwrap();
        let series = vec![(
            "now".to_owned(),
            vec![(1.0, spread(&[1.0, 2.0])), (16.0, spread(&[5.0, 7.0, 6.0]))],
        )];
        medians(&rates, "rates", ("clients", "per second"), &series).unwrap();
        assert!(std::fs::read_to_string(&rates).unwrap().contains("now"));

        assert!(latency_cdf(&cdf, "empty", &[]).is_err());
    }
}
