//! PNG charts for training runs and evaluations (plotters, rendered into a buffer and written
//! with the `image` crate).

use std::path::Path;
use std::sync::Once;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::calibration::ReliabilityBin;
use crate::error::{CelnetError, Result};
use crate::input::save_image;

/// DejaVu Sans (see `assets/DejaVuSans.LICENSE`): plotters draws text only with a font it has
/// been given, and nothing may be loaded from the system at run time.
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font shipped with the crate.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// What drawing returns; [`render`] turns a failure into an error naming the chart's file.
type Drawing = std::result::Result<(), String>;

fn plot_error(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Renders into an RGB buffer of `width x height` and writes it as PNG.
fn render(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Drawing,
) -> Result<()> {
    register_font();
    let mut buffer = vec![0u8; (width * height * 3) as usize];
    let drawn = {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(plot_error)
            .and_then(|()| draw(root.clone()))
            .and_then(|()| root.present().map_err(plot_error))
    };
    drawn.map_err(|message| CelnetError::Chart {
        path: path.display().to_string(),
        message,
    })?;
    let image =
        image::RgbImage::from_raw(width, height, buffer).expect("buffer has the image size");
    save_image(&image, path)
}

/// One panel of an epoch chart: named lines of one value per epoch, drawn in blue, red and
/// green in that order, with the legend in a lower or an upper corner.
pub struct EpochPanel {
    pub caption: &'static str,
    pub y_range: std::ops::Range<f64>,
    pub lines: Vec<(&'static str, Vec<(f64, f64)>)>,
    pub legend_below: bool,
}

/// Draws one panel: lines with a dot at every epoch (a single epoch is a dot, not an invisible
/// line) and a legend.
fn epoch_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    epochs: usize,
    panel: EpochPanel,
) -> Drawing {
    let mut chart = ChartBuilder::on(area)
        .caption(panel.caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(48)
        .build_cartesian_2d(0.5f64..epochs as f64 + 0.5, panel.y_range)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_labels(epochs.min(20))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(plot_error)?;
    for ((name, points), &color) in panel
        .lines
        .into_iter()
        .zip([BLUE, RED, GREEN].iter().cycle())
    {
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(plot_error)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )
            .map_err(plot_error)?;
    }
    let legend = if panel.legend_below {
        SeriesLabelPosition::LowerRight
    } else {
        SeriesLabelPosition::UpperRight
    };
    chart
        .configure_series_labels()
        .position(legend)
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

/// Two panels side by side over `epochs` epochs (a training run's loss, and its accuracy and
/// AUC).
pub fn epoch_chart(epochs: usize, left: EpochPanel, right: EpochPanel, path: &Path) -> Result<()> {
    render(path, (1000, 420), |root| {
        let (left_area, right_area) = root.split_horizontally(500);
        epoch_panel(&left_area, epochs, left)?;
        epoch_panel(&right_area, epochs, right)
    })
}

/// A chart over [0, 1] x [0, 1] with its axes named and the diagonal drawn faintly (the chance
/// line of a ROC curve, perfect calibration in a reliability diagram).
fn unit_square<'a, 'b>(
    root: &'a DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>,
    caption: &str,
    x_desc: &str,
    y_desc: &str,
) -> std::result::Result<
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    String,
> {
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(36)
        .y_label_area_size(44)
        .build_cartesian_2d(0f64..1.0, 0f64..1.0)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(plot_error)?;
    chart
        .draw_series(LineSeries::new(
            [(0.0, 0.0), (1.0, 1.0)],
            BLACK.mix(0.3).stroke_width(1),
        ))
        .map_err(plot_error)?;
    Ok(chart)
}

/// ROC curve with its area in the title.
pub fn roc_curve(points: &[(f64, f64)], auc: f64, path: &Path) -> Result<()> {
    render(path, (520, 520), |root| {
        let mut chart = unit_square(
            &root,
            &format!("ROC (AUC {auc:.4})"),
            "false-positive rate",
            "true-positive rate",
        )?;
        chart
            .draw_series(LineSeries::new(points.iter().copied(), RED.stroke_width(2)))
            .map_err(plot_error)?;
        Ok(())
    })
}

/// Reliability diagram: observed frequency of metastasis against mean predicted probability,
/// per bin, for each named set of bins (e.g. before and after temperature scaling), with each
/// set's ECE in its legend. Empty bins are skipped; a dot's area grows with its bin's count.
pub fn reliability_diagram(curves: &[(&str, &[ReliabilityBin], f64)], path: &Path) -> Result<()> {
    let colors = [RED, BLUE, GREEN, MAGENTA];
    let total: usize = curves.first().map_or(1, |(_, bins, _)| {
        bins.iter().map(|b| b.count).sum::<usize>().max(1)
    });
    render(path, (560, 560), |root| {
        let mut chart = unit_square(
            &root,
            "reliability",
            "predicted probability of metastasis",
            "observed frequency of metastasis",
        )?;
        for (&(name, bins, ece), &color) in curves.iter().zip(colors.iter().cycle()) {
            let points: Vec<(f64, f64, usize)> = bins
                .iter()
                .filter(|b| b.count > 0)
                .map(|b| (b.mean_probability, b.observed_frequency, b.count))
                .collect();
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|&(x, y, _)| (x, y)),
                    color.stroke_width(2),
                ))
                .map_err(plot_error)?
                .label(format!("{name} (ECE {ece:.3})"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
            chart
                .draw_series(points.iter().map(|&(x, y, count)| {
                    let radius = 2.0 + 10.0 * (count as f64 / total as f64).sqrt();
                    Circle::new((x, y), radius as i32, color.mix(0.6).filled())
                }))
                .map_err(plot_error)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()
            .map_err(plot_error)?;
        Ok(())
    })
}
