//! PNG charts for training runs and evaluations (plotters, rendered into a buffer and written
//! with the `image` crate).

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::error::{CelnetError, Result};
use crate::train::EpochMetrics;

/// DejaVu Sans (see `assets/DejaVuSans.LICENSE`): plotters draws text only with a font it has
/// been given, and nothing may be loaded from the system at run time.
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font shipped with the crate.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn plot_error(e: impl std::fmt::Display) -> CelnetError {
    CelnetError::Dataset(format!("drawing a chart failed: {e}"))
}

/// Renders into an RGB buffer of `width x height` and writes it as PNG.
fn render(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<()>,
) -> Result<()> {
    register_font();
    let mut buffer = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        draw(root.clone())?;
        root.present().map_err(plot_error)?;
    }
    image::RgbImage::from_raw(width, height, buffer)
        .expect("buffer has the image size")
        .save(path)
        .map_err(|e| CelnetError::Dataset(format!("{}: {e}", path.display())))
}

type EpochChart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A line with a dot at every epoch (a single epoch is a dot, not an invisible line).
fn draw_line_with_points(
    chart: &mut EpochChart<'_, '_>,
    values: Vec<(f64, f64)>,
    color: RGBColor,
    name: &str,
) -> Result<()> {
    chart
        .draw_series(LineSeries::new(values.clone(), color.stroke_width(2)))
        .map_err(plot_error)?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
    chart
        .draw_series(
            values
                .into_iter()
                .map(|p| Circle::new(p, 3, color.filled())),
        )
        .map_err(plot_error)?;
    Ok(())
}

/// Loss (left) and accuracy/AUC (right) per epoch.
pub fn training_curves(history: &[EpochMetrics], path: &Path) -> Result<()> {
    if history.is_empty() {
        return Ok(());
    }
    let epochs = history.len() as f64;
    render(path, (1000, 420), |root| {
        let (left, right) = root.split_horizontally(500);
        let max_loss = history
            .iter()
            .flat_map(|m| [m.train_loss, m.valid_loss])
            .filter(|v| v.is_finite())
            .fold(0.1f64, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(&left)
            .caption("loss (BCE)", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(48)
            .build_cartesian_2d(0.5f64..epochs + 0.5, 0f64..max_loss)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .x_labels(history.len().min(20))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(plot_error)?;
        let series = |f: fn(&EpochMetrics) -> f64| {
            history
                .iter()
                .map(move |m| (m.epoch as f64, f(m)))
                .collect::<Vec<_>>()
        };
        for (name, values, color) in [
            ("train", series(|m| m.train_loss), BLUE),
            ("valid", series(|m| m.valid_loss), RED),
        ] {
            draw_line_with_points(&mut chart, values, color, name)?;
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()
            .map_err(plot_error)?;

        let mut chart = ChartBuilder::on(&right)
            .caption("accuracy and AUC", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(48)
            .build_cartesian_2d(0.5f64..epochs + 0.5, 0.5f64..1.0)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .x_labels(history.len().min(20))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(plot_error)?;
        for (name, values, color) in [
            ("train accuracy", series(|m| m.train_accuracy), BLUE),
            ("valid accuracy", series(|m| m.valid_accuracy), RED),
            ("valid AUC", series(|m| m.valid_auc), GREEN),
        ] {
            draw_line_with_points(&mut chart, values, color, name)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()
            .map_err(plot_error)?;
        Ok(())
    })
}

/// ROC curve with its area in the title.
pub fn roc_curve(points: &[(f64, f64)], auc: f64, path: &Path) -> Result<()> {
    render(path, (520, 520), |root| {
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("ROC (AUC {auc:.4})"), ("sans-serif", 18))
            .margin(14)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(0f64..1.0, 0f64..1.0)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("false-positive rate")
            .y_desc("true-positive rate")
            .draw()
            .map_err(plot_error)?;
        chart
            .draw_series(LineSeries::new(
                [(0.0, 0.0), (1.0, 1.0)],
                BLACK.mix(0.3).stroke_width(1),
            ))
            .map_err(plot_error)?;
        chart
            .draw_series(LineSeries::new(points.iter().copied(), RED.stroke_width(2)))
            .map_err(plot_error)?;
        Ok(())
    })
}
