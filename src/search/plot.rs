//! `--plot curve.svg`: compression ratio (estimated and real) and accuracy against the bound on
//! a log axis, the admissibility threshold, and the choice marked. SVG only, text as `<text>`
//! elements, so no font library is needed to draw it.

use std::path::Path;

use plotters::prelude::*;

use super::SearchReport;
use crate::error::{Error, Result};

/// Draws the search curve of `report` as an SVG file at `path`.
pub fn plot_svg(report: &SearchReport, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    draw(report, path).map_err(|e| Error::invalid("plot", format!("{}: {e}", path.display())))
}

fn draw(report: &SearchReport, path: &Path) -> std::result::Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let rows = &report.candidates;
    if rows.is_empty() {
        return Err("no candidates to plot".into());
    }
    let lo = rows.iter().map(|r| r.bound).fold(f64::INFINITY, f64::min) / 1.5;
    let hi = rows.iter().map(|r| r.bound).fold(0.0f64, f64::max) * 1.5;
    let ratio_max = rows
        .iter()
        .flat_map(|r| [Some(r.est_ratio), r.ratio])
        .flatten()
        .filter(|v| v.is_finite())
        .fold(report.lossless_ratio, f64::max)
        * 1.1;
    let threshold = report.baseline_accuracy - report.max_loss;
    let accs: Vec<f64> = rows.iter().filter_map(|r| r.accuracy).collect();
    let acc_lo = accs
        .iter()
        .copied()
        .fold(threshold - report.max_loss, f64::min);
    let acc_hi = accs
        .iter()
        .copied()
        .fold(report.baseline_accuracy, f64::max);
    let pad = ((acc_hi - acc_lo) * 0.08).max(1e-6);
    let (acc_lo, acc_hi) = (acc_lo - pad, acc_hi + pad);

    let root = SVGBackend::new(path, (960, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let caption = format!(
        "bound search: chose {} (ratio {:.2}x, loss {:.4}); alpha {}, max loss {}",
        report.chosen.spec, report.chosen.ratio, report.chosen.loss, report.alpha, report.max_loss
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .right_y_label_area_size(72)
        .build_cartesian_2d((lo..hi).log_scale(), 0.0..ratio_max)
        .map_err(|e| err(&e))?
        .set_secondary_coord((lo..hi).log_scale(), acc_lo..acc_hi);
    chart
        .configure_mesh()
        .x_desc("relative error bound")
        .y_desc("compression ratio")
        .x_label_formatter(&|x| format!("{x:.0e}"))
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .configure_secondary_axes()
        .y_desc("accuracy")
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|e| err(&e))?;

    let blue = RGBColor(31, 119, 180);
    let red = RGBColor(214, 39, 40);
    let green = RGBColor(44, 160, 44);
    let grey = RGBColor(150, 150, 150);

    chart
        .draw_series(LineSeries::new(
            rows.iter().map(|r| (r.bound, r.est_ratio)),
            blue.mix(0.45).stroke_width(1),
        ))
        .map_err(|e| err(&e))?
        .label("ratio (estimated)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], blue.mix(0.45)));
    let real: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.ratio.map(|v| (r.bound, v)))
        .collect();
    chart
        .draw_series(LineSeries::new(real.clone(), blue.stroke_width(2)))
        .map_err(|e| err(&e))?
        .label("ratio (coded)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], blue.stroke_width(2)));
    chart
        .draw_series(real.iter().map(|&p| Circle::new(p, 3, blue.filled())))
        .map_err(|e| err(&e))?;

    let acc: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.accuracy.map(|a| (r.bound, a)))
        .collect();
    chart
        .draw_secondary_series(LineSeries::new(acc.clone(), red.stroke_width(2)))
        .map_err(|e| err(&e))?
        .label("accuracy (evaluated)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], red.stroke_width(2)));
    chart
        .draw_secondary_series(acc.iter().map(|&p| Circle::new(p, 3, red.filled())))
        .map_err(|e| err(&e))?;
    chart
        .draw_secondary_series(LineSeries::new(
            [(lo, threshold), (hi, threshold)],
            grey.stroke_width(1),
        ))
        .map_err(|e| err(&e))?
        .label("baseline - max loss")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], grey));

    if report.chosen.bound > 0.0 {
        let b = report.chosen.bound;
        chart
            .draw_series(LineSeries::new(
                [(b, 0.0), (b, ratio_max)],
                green.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(format!("chosen {}", report.chosen.spec))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], green.stroke_width(2))
            });
        chart
            .draw_series([Circle::new(
                (b, report.chosen.ratio),
                6,
                green.stroke_width(2),
            )])
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
