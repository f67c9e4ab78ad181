//! Charts for console pages: SVG drawn on the server with plotters, returned as a `String` a
//! template includes with `|safe`.
//!
//! That is safe because every piece of text in the SVG is escaped: plotters escapes the text
//! it draws (labels, axis descriptions, legends), and the root element's `aria-label` is
//! escaped here. The root `<svg>` carries `role="img"`, an `aria-label` (the chart's title) and
//! a `viewBox` but no width or height, so the page's CSS sizes it; nothing uses `style=`
//! (the console's CSP forbids inline styles), only presentation attributes.
//!
//! Data may hold NaN or infinities (a model's output, a division by zero upstream): such points
//! are skipped (lines break there), never drawn at a bogus coordinate. A chart with nothing to
//! draw says "no data" instead. Series are told apart by more than colour: line charts give
//! each series its own dash pattern and a legend, the fan chart labels its parts in a legend.

use plotters::coord::Shift;
use plotters::element::{Circle, DashedPathElement, PathElement, Polygon, Rectangle, Text};
use plotters::prelude::{
    ChartBuilder, Color, DrawingArea, DrawingAreaErrorKind, IntoDrawingArea, RGBColor, SVGBackend,
    ShapeStyle, TRANSPARENT, WHITE,
};
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontFamily, IntoFont, TextStyle};

/// The drawing size in SVG user units; the page scales the whole picture.
const WIDTH: u32 = 760;
const HEIGHT: u32 = 340;

/// Dark text and axes (the console's `--ink`).
const INK: RGBColor = RGBColor(0x1b, 0x1f, 0x24);
/// Grid lines: light enough not to compete with the data.
const GRID: RGBColor = RGBColor(0xdd, 0xe2, 0xe8);
/// Series colours, each at least 4.5:1 against white; series also differ by dash pattern.
const PALETTE: [RGBColor; 5] = [
    RGBColor(0x0b, 0x5c, 0xad),
    RGBColor(0xb3, 0x26, 0x1e),
    RGBColor(0x1a, 0x6b, 0x35),
    RGBColor(0x8a, 0x53, 0x00),
    RGBColor(0x5b, 0x2a, 0x86),
];
/// Dash patterns (dash length, gap) by series index; `None` is a solid line.
const DASHES: [Option<(u32, u32)>; 4] = [None, Some((9, 5)), Some((2, 4)), Some((14, 4))];

/// Series with at most this many points get a marker on each point.
const MARKED_POINTS: usize = 40;

type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;
type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// One line of a [`LineChart`].
pub(crate) struct Series<'a> {
    /// Shown in the legend.
    pub label: &'a str,
    /// `(x, y)` points in x order; non-finite points are skipped and break the line.
    pub points: &'a [(f64, f64)],
}

/// A chart of one or more lines over a shared x axis.
pub(crate) struct LineChart<'a> {
    /// The chart's accessible name (the root's `aria-label`).
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: &'a [Series<'a>],
    /// Formats x-axis tick values (e.g. a sequence number or a time).
    pub x_format: fn(f64) -> String,
}

/// One row of an [`interval_chart`]: an estimate with its interval.
pub(crate) struct IntervalRow<'a> {
    pub label: &'a str,
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

/// An ensemble forecast: quantile band, median, members and (optionally) what was observed.
pub(crate) struct FanChart<'a> {
    /// The chart's accessible name (the root's `aria-label`).
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    /// Positions along the x axis (e.g. hours ahead); the other slices align with it.
    pub x: &'a [f64],
    pub p10: &'a [f64],
    pub p50: &'a [f64],
    pub p90: &'a [f64],
    /// Each ensemble member's values, aligned with `x`.
    pub members: &'a [&'a [f64]],
    /// Observed values where known, aligned with `x`.
    pub observed: Option<&'a [Option<f64>]>,
    /// Formats x-axis tick values.
    pub x_format: fn(f64) -> String,
}

/// Formats a number for an axis: integers without decimals, others with few significant digits.
pub(crate) fn format_number(v: f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    if v == v.trunc() && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let magnitude = v.abs();
    if magnitude >= 1000.0 {
        format!("{v:.0}")
    } else if magnitude >= 10.0 {
        format!("{v:.1}")
    } else if magnitude >= 0.01 {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        format!("{v:.1e}")
    }
}

/// Formats counts on an axis (e.g. an interaction number): whole numbers only, other ticks
/// left blank.
pub(crate) fn whole_number(v: f64) -> String {
    if v.is_finite() && v == v.trunc() {
        format!("{v:.0}")
    } else {
        String::new()
    }
}

/// A line chart: each series its own colour and dash pattern, with a legend above the plot.
pub(crate) fn line_chart(chart: &LineChart<'_>) -> String {
    let finite: Vec<(f64, f64)> = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let (Some(x_range), Some(y_range)) = (
        span(finite.iter().map(|p| p.0)),
        span(finite.iter().map(|p| p.1)),
    ) else {
        return no_data(chart.title);
    };
    let y_range = pad(y_range, 0.08);
    let x_format = chart.x_format;
    render(chart.title, HEIGHT, |root| {
        let legend: Vec<(&str, usize)> = chart
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| (s.label, i))
            .collect();
        draw_legend(root, &legend)?;
        let mut ctx = ChartBuilder::on(root)
            .margin(12)
            .margin_top(40)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(x_range.0..x_range.1, y_range.0..y_range.1)?;
        ctx.configure_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .axis_style(INK)
            .label_style(label_style())
            .axis_desc_style(label_style())
            .x_desc(chart.x_label)
            .y_desc(chart.y_label)
            .x_labels(8)
            .y_labels(6)
            .x_label_formatter(&|v| x_format(*v))
            .y_label_formatter(&|v| format_number(*v))
            .draw()?;
        for (i, series) in chart.series.iter().enumerate() {
            let style = series_style(i);
            for run in finite_runs(series.points) {
                match DASHES[i % DASHES.len()] {
                    None => {
                        ctx.draw_series(std::iter::once(PathElement::new(run, style)))?;
                    }
                    Some((dash, gap)) => {
                        ctx.draw_series(std::iter::once(DashedPathElement::new(
                            run, dash, gap, style,
                        )))?;
                    }
                }
            }
            // Few points are marked too: a lone point (or several at one x) draws no line.
            let points: Vec<(f64, f64)> = series
                .points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            if points.len() <= MARKED_POINTS {
                ctx.draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 3, style.filled())),
                )?;
            }
        }
        Ok(())
    })
}

/// A bar chart of labelled values (e.g. users per segment), each bar with its value above it.
pub(crate) fn bar_chart(title: &str, y_label: &str, bars: &[(&str, f64)]) -> String {
    let shown: Vec<(&str, f64)> = bars
        .iter()
        .map(|&(label, v)| (label, if v.is_finite() { v } else { 0.0 }))
        .collect();
    if shown.is_empty() || bars.iter().all(|(_, v)| !v.is_finite()) {
        return no_data(title);
    }
    let low = shown.iter().map(|b| b.1).fold(0.0_f64, f64::min);
    let high = shown.iter().map(|b| b.1).fold(0.0_f64, f64::max);
    let (low, high) = if low == high {
        (0.0, 1.0)
    } else {
        (low, high + (high - low) * 0.12)
    };
    let colour = PALETTE[0];
    render(title, HEIGHT, |root| {
        let mut ctx = ChartBuilder::on(root)
            .margin(12)
            .margin_top(20)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(category_axis(shown.len()), low..high)?;
        let x_format = |v: &f64| {
            category(&shown, *v)
                .map(|b| shorten(b.0, 22))
                .unwrap_or_default()
        };
        ctx.configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .axis_style(INK)
            .label_style(label_style())
            .axis_desc_style(label_style())
            .y_desc(y_label)
            .x_labels(shown.len())
            .y_labels(6)
            .x_label_formatter(&x_format)
            .y_label_formatter(&|v| format_number(*v))
            .draw()?;
        ctx.draw_series(shown.iter().zip(0_u32..).map(|(&(_, v), i)| {
            let i = f64::from(i);
            Rectangle::new([(i - 0.36, 0.0), (i + 0.36, v)], colour.filled())
        }))?;
        let value_style = label_style().pos(Pos::new(HPos::Center, VPos::Bottom));
        ctx.draw_series(shown.iter().zip(0_u32..).map(|(&(_, v), i)| {
            Text::new(
                format_number(v),
                (f64::from(i), v.max(0.0)),
                value_style.clone(),
            )
        }))?;
        Ok(())
    })
}

/// An axis with one slot per category, centred on 0, 1, …; asking for `count` labels puts a
/// tick on each integer (plotters picks steps of 1, 2 or 5 × 10ⁿ, and 1 fits exactly).
fn category_axis(count: usize) -> std::ops::Range<f64> {
    -0.5..f64::from(u32::try_from(count).unwrap_or(u32::MAX)) - 0.5
}

/// The category at an axis position (ticks sit exactly on the integers).
fn category<T>(items: &[T], at: f64) -> Option<&T> {
    if at < 0.0 || (at - at.round()).abs() > 1e-6 {
        return None;
    }
    // In range and integral: the cast is exact.
    items.get(at.round() as usize)
}

/// A forest plot: one row per estimate with its interval, a dashed reference line (e.g. 0 lift).
pub(crate) fn interval_chart(
    title: &str,
    x_label: &str,
    rows: &[IntervalRow<'_>],
    reference: f64,
) -> String {
    let drawable =
        |r: &IntervalRow<'_>| r.estimate.is_finite() && r.low.is_finite() && r.high.is_finite();
    let values = rows
        .iter()
        .filter(|r| drawable(r))
        .flat_map(|r| [r.estimate, r.low, r.high])
        .chain(std::iter::once(reference).filter(|v| v.is_finite()));
    let Some(x_range) = span(values).filter(|_| rows.iter().any(drawable)) else {
        return no_data(title);
    };
    let x_range = pad(x_range, 0.1);
    // Row i is drawn at the top for i = 0: the y axis counts upwards.
    let last = rows.len().saturating_sub(1);
    let at = |i: usize| f64::from(u32::try_from(last - i).unwrap_or(0));
    let height = (80 + 44 * rows.len().min(20)).max(180) as u32;
    render(title, height, |root| {
        let mut ctx = ChartBuilder::on(root)
            .margin(12)
            .margin_top(20)
            .x_label_area_size(48)
            .y_label_area_size(180)
            .build_cartesian_2d(x_range.0..x_range.1, category_axis(rows.len()))?;
        let y_format = |v: &f64| {
            category(rows, *v)
                .and_then(|_| rows.get(last - v.round() as usize))
                .map(|r| shorten(r.label, 24))
                .unwrap_or_default()
        };
        ctx.configure_mesh()
            .disable_y_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .axis_style(INK)
            .label_style(label_style())
            .axis_desc_style(label_style())
            .x_desc(x_label)
            .x_labels(8)
            .y_labels(rows.len())
            .x_label_formatter(&|v| format_number(*v))
            .y_label_formatter(&y_format)
            .draw()?;
        if reference.is_finite() {
            ctx.draw_series(std::iter::once(DashedPathElement::new(
                vec![(reference, -0.5), (reference, at(0) + 0.5)],
                6,
                4,
                ShapeStyle::from(INK).stroke_width(1),
            )))?;
        }
        let style = ShapeStyle::from(PALETTE[0]).stroke_width(3);
        for (i, r) in rows.iter().enumerate() {
            if !drawable(r) {
                continue;
            }
            ctx.draw_series(std::iter::once(PathElement::new(
                vec![(r.low, at(i)), (r.high, at(i))],
                style,
            )))?;
            ctx.draw_series(std::iter::once(Circle::new(
                (r.estimate, at(i)),
                6,
                PALETTE[0].filled(),
            )))?;
        }
        Ok(())
    })
}

/// A fan chart: the p10–p90 band shaded, the median as a thick line, each member as a thin
/// line and observed values as dots, with a legend naming each part.
pub(crate) fn fan_chart(chart: &FanChart<'_>) -> String {
    let n = chart.x.len();
    let at = |values: &[f64], i: usize| values.get(i).copied().unwrap_or(f64::NAN);
    let observed = |i: usize| {
        chart
            .observed
            .and_then(|o| o.get(i).copied().flatten())
            .unwrap_or(f64::NAN)
    };
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for i in 0..n {
        let x = chart.x[i];
        if !x.is_finite() {
            continue;
        }
        let mut column = vec![
            at(chart.p10, i),
            at(chart.p50, i),
            at(chart.p90, i),
            observed(i),
        ];
        column.extend(chart.members.iter().map(|m| at(m, i)));
        let finite: Vec<f64> = column.into_iter().filter(|v| v.is_finite()).collect();
        if !finite.is_empty() {
            xs.push(x);
            ys.extend(finite);
        }
    }
    let (Some(x_range), Some(y_range)) = (span(xs.iter().copied()), span(ys.iter().copied()))
    else {
        return no_data(chart.title);
    };
    let y_range = pad(y_range, 0.08);
    let x_format = chart.x_format;
    let line = |values: &[f64]| -> Vec<(f64, f64)> {
        (0..n).map(|i| (chart.x[i], at(values, i))).collect()
    };
    let any_observed = chart
        .observed
        .is_some_and(|o| o.iter().any(|v| v.is_some_and(f64::is_finite)));
    // A few x positions (e.g. the horizons) are labelled exactly where they are; many are left
    // to plotters' evenly spaced ticks.
    let mut ticks: Vec<f64> = xs.clone();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    let own_ticks = ticks.len() <= 12;
    render(chart.title, HEIGHT, |root| {
        draw_fan_legend(root, any_observed)?;
        let mut ctx = ChartBuilder::on(root)
            .margin(12)
            .margin_top(40)
            // Room for the last tick's label, centred on the right edge.
            .margin_right(36)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(x_range.0..x_range.1, y_range.0..y_range.1)?;
        ctx.configure_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .axis_style(INK)
            .label_style(label_style())
            .axis_desc_style(label_style())
            .x_desc(chart.x_label)
            .y_desc(chart.y_label)
            .x_labels(if own_ticks { 0 } else { 8 })
            .y_labels(6)
            .x_label_formatter(&|v| x_format(*v))
            .y_label_formatter(&|v| format_number(*v))
            .draw()?;
        if own_ticks {
            let below = label_style().pos(Pos::new(HPos::Center, VPos::Top));
            for &t in &ticks {
                ctx.draw_series(std::iter::once(PathElement::new(
                    vec![(t, y_range.0), (t, y_range.1)],
                    ShapeStyle::from(GRID),
                )))?;
                let (px, py) = ctx.backend_coord(&(t, y_range.0));
                root.draw(&PathElement::new(vec![(px, py), (px, py + 5)], INK))?;
                root.draw(&Text::new(x_format(t), (px, py + 8), below.clone()))?;
            }
        }
        // The band: one polygon per stretch where both edges are known.
        let band: Vec<(f64, f64, f64)> = (0..n)
            .map(|i| (chart.x[i], at(chart.p10, i), at(chart.p90, i)))
            .collect();
        for run in band
            .split(|(x, lo, hi)| !(x.is_finite() && lo.is_finite() && hi.is_finite()))
            .filter(|run| !run.is_empty())
        {
            let outline: Vec<(f64, f64)> = run
                .iter()
                .map(|&(x, _, hi)| (x, hi))
                .chain(run.iter().rev().map(|&(x, lo, _)| (x, lo)))
                .collect();
            if run.len() == 1 {
                // One step has no area: show its range as a bar.
                ctx.draw_series(std::iter::once(PathElement::new(
                    outline,
                    band_colour().stroke_width(6),
                )))?;
            } else {
                ctx.draw_series(std::iter::once(Polygon::new(outline, band_colour())))?;
            }
        }
        let member_style = member_colour().stroke_width(1);
        for member in chart.members {
            for run in finite_runs(&line(member)) {
                ctx.draw_series(std::iter::once(PathElement::new(run, member_style)))?;
            }
        }
        let median = line(chart.p50);
        for run in finite_runs(&median) {
            ctx.draw_series(std::iter::once(PathElement::new(
                run,
                ShapeStyle::from(PALETTE[0]).stroke_width(3),
            )))?;
        }
        let observed_points: Vec<(f64, f64)> = (0..n)
            .map(|i| (chart.x[i], observed(i)))
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        ctx.draw_series(
            observed_points
                .into_iter()
                .map(|p| Circle::new(p, 5, PALETTE[1].filled())),
        )?;
        Ok(())
    })
}

fn band_colour() -> ShapeStyle {
    PALETTE[0].mix(0.22).filled()
}

fn member_colour() -> ShapeStyle {
    ShapeStyle::from(RGBColor(0x4a, 0x53, 0x60).mix(0.45))
}

fn label_style() -> TextStyle<'static> {
    TextStyle::from((FontFamily::SansSerif, 16).into_font()).color(&INK)
}

fn series_style(i: usize) -> ShapeStyle {
    ShapeStyle::from(PALETTE[i % PALETTE.len()]).stroke_width(2)
}

/// The legend above a line chart: a sample of each series' line (colour and dash) and its label.
fn draw_legend(root: &Area<'_>, entries: &[(&str, usize)]) -> DrawResult {
    let mut x = 76;
    for &(label, i) in entries {
        let style = series_style(i);
        // Three segments per sample, spaced to show the series' dash pattern.
        let segments: [(i32, i32); 3] = match DASHES[i % DASHES.len()] {
            None => [(0, 10), (10, 20), (20, 28)],
            Some((dash, _)) if dash <= 3 => [(0, 2), (13, 15), (26, 28)],
            Some(_) => [(0, 8), (11, 19), (22, 28)],
        };
        for (from, to) in segments {
            root.draw(&PathElement::new(vec![(x + from, 18), (x + to, 18)], style))?;
        }
        let label = shorten(label, 28);
        root.draw(&Text::new(
            label.clone(),
            (x + 34, 18),
            label_style().pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
        x += 34 + text_width(&label) + 24;
    }
    Ok(())
}

fn draw_fan_legend(root: &Area<'_>, with_observed: bool) -> DrawResult {
    let text = label_style().pos(Pos::new(HPos::Left, VPos::Center));
    let y = 18;
    let mut x = 76;
    root.draw(&Rectangle::new(
        [(x, y - 7), (x + 28, y + 7)],
        band_colour(),
    ))?;
    root.draw(&Text::new("p10–p90 band", (x + 34, y), text.clone()))?;
    x += 34 + text_width("p10–p90 band") + 24;
    root.draw(&PathElement::new(
        vec![(x, y), (x + 28, y)],
        ShapeStyle::from(PALETTE[0]).stroke_width(3),
    ))?;
    root.draw(&Text::new("median (p50)", (x + 34, y), text.clone()))?;
    x += 34 + text_width("median (p50)") + 24;
    root.draw(&PathElement::new(
        vec![(x, y), (x + 28, y)],
        member_colour().stroke_width(1),
    ))?;
    root.draw(&Text::new("ensemble members", (x + 34, y), text.clone()))?;
    x += 34 + text_width("ensemble members") + 24;
    if with_observed {
        root.draw(&Circle::new((x + 14, y), 5, PALETTE[1].filled()))?;
        root.draw(&Text::new("observed", (x + 34, y), text))?;
    }
    Ok(())
}

/// Roughly how wide a label is at the label size, to place the next legend entry.
fn text_width(text: &str) -> i32 {
    i32::try_from(text.chars().count())
        .unwrap_or(64)
        .saturating_mul(8)
}

/// Cuts long labels so they do not run into their neighbours.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The smallest and largest of the finite values; a single value gets a unit-wide span.
fn span(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (low, high) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !(low.is_finite() && high.is_finite()) {
        return None;
    }
    if low == high {
        let half = if low == 0.0 { 1.0 } else { low.abs() * 0.1 };
        return Some((low - half, high + half));
    }
    // A range too wide for f64 arithmetic would map points to infinite pixels.
    (high - low).is_finite().then_some((low, high))
}

fn pad((low, high): (f64, f64), fraction: f64) -> (f64, f64) {
    let margin = (high - low) * fraction;
    if margin.is_finite() {
        (low - margin, high + margin)
    } else {
        (low, high)
    }
}

/// Splits points into runs of consecutive finite points (a line breaks at a missing value).
fn finite_runs(points: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    points
        .split(|(x, y)| !(x.is_finite() && y.is_finite()))
        .filter(|run| run.len() > 1)
        .map(<[(f64, f64)]>::to_vec)
        .collect()
}

/// Draws with plotters into a string and gives the result its accessible root element.
fn render(title: &str, height: u32, draw: impl FnOnce(&Area<'_>) -> DrawResult) -> String {
    let mut svg = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)
            .and_then(|()| draw(&root))
            .and_then(|()| root.present())
    };
    if let Err(e) = drawn {
        tracing::warn!(error = %e, chart = title, "console chart failed to draw");
        return message_chart(title, "The chart could not be drawn.");
    }
    // plotters opens with `<svg width=… height=… viewBox=… xmlns=…>`: replace that tag.
    let body = svg.find('>').map_or("", |end| &svg[end + 1..]);
    format!("{}{body}", root_tag(title, height))
}

fn root_tag(title: &str, height: u32) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {height}\" \
         role=\"img\" aria-label=\"{}\" class=\"chart-svg\">",
        escape(title)
    )
}

/// A chart with nothing to plot: a framed message instead of empty axes.
fn no_data(title: &str) -> String {
    message_chart(title, "No data to chart yet.")
}

fn message_chart(title: &str, message: &str) -> String {
    let height = 120;
    format!(
        "{}\n<rect x=\"1\" y=\"1\" width=\"{w}\" height=\"{h}\" fill=\"#FFFFFF\" stroke=\"#C9D1D9\"/>\n\
         <text x=\"{cx}\" y=\"{cy}\" text-anchor=\"middle\" font-family=\"sans-serif\" \
         font-size=\"18\" fill=\"#4A5360\">{}</text>\n</svg>\n",
        root_tag(&format!("{title}: no data"), height),
        escape(message),
        w = WIDTH - 2,
        h = height - 2,
        cx = WIDTH / 2,
        cy = height / 2 + 6,
    )
}

/// Escapes text for an XML attribute or element.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks the SVG is well formed enough for a browser: tags balance, attributes are quoted,
    /// text holds no raw `<` or `&` that is not an entity.
    fn assert_well_formed(svg: &str) {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = svg;
        while let Some(open) = rest.find('<') {
            let text = &rest[..open];
            assert_text_escaped(text);
            let close = rest[open..].find('>').expect("every tag closes") + open;
            let tag = &rest[open + 1..close];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name.trim()), "in {svg}");
            } else {
                let name: String = tag
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '/')
                    .collect();
                assert_eq!(
                    tag.matches('"').count() % 2,
                    0,
                    "unbalanced quotes in <{tag}>"
                );
                if !tag.ends_with('/') {
                    stack.push(name);
                }
            }
            rest = &rest[close + 1..];
        }
        assert_text_escaped(rest);
        assert!(stack.is_empty(), "unclosed tags {stack:?}");
        assert!(svg.starts_with("<svg "), "{svg}");
        assert!(!svg.contains("style="), "no inline styles: {svg}");
        for bad in ["NaN", "inf"] {
            assert!(!svg.contains(bad), "found {bad} in {svg}");
        }
        let root = &svg[..svg.find('>').unwrap_or(0)];
        assert!(root.contains("role=\"img\""), "{root}");
        assert!(root.contains("aria-label=\""), "{root}");
        assert!(root.contains("viewBox=\"0 0 "), "{root}");
        assert!(!root.contains("width="), "{root}");
    }

    fn assert_text_escaped(text: &str) {
        for (i, _) in text.match_indices('&') {
            let entity = &text[i..];
            assert!(
                ["&lt;", "&gt;", "&amp;", "&quot;", "&apos;"]
                    .iter()
                    .any(|e| entity.starts_with(e)),
                "raw & in {text}"
            );
        }
    }

    fn sequence(v: f64) -> String {
        format!("#{v:.0}")
    }

    #[test]
    fn line_chart_draws_each_series_with_a_legend() {
        let a = [(0.0, 1.0), (1.0, 2.0), (2.0, 1.5)];
        let b = [(0.0, 0.5), (1.0, 0.7), (2.0, 0.9)];
        let svg = line_chart(&LineChart {
            title: "Sentiment",
            x_label: "interaction",
            y_label: "score",
            series: &[
                Series {
                    label: "sentiment",
                    points: &a,
                },
                Series {
                    label: "ratio",
                    points: &b,
                },
            ],
            x_format: sequence,
        });
        assert_well_formed(&svg);
        assert!(svg.contains("aria-label=\"Sentiment\""));
        assert!(svg.contains(">\nsentiment\n</text>"), "{svg}");
        assert!(svg.contains(">\nratio\n</text>"));
        assert!(svg.contains("#1"), "x labels use the formatter");
        assert!(svg.contains("<polyline"));
    }

    #[test]
    fn text_in_charts_is_escaped() {
        let points = [(0.0, 1.0), (1.0, 2.0)];
        let hostile = "<script>alert('x')</script> & \"q\"";
        let svg = line_chart(&LineChart {
            title: hostile,
            x_label: hostile,
            y_label: hostile,
            series: &[Series {
                label: hostile,
                points: &points,
            }],
            x_format: format_number,
        });
        assert_well_formed(&svg);
        assert!(!svg.contains("<script"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"));
        let bars = bar_chart(hostile, hostile, &[(hostile, 3.0), ("b&b", 1.0)]);
        assert_well_formed(&bars);
        assert!(!bars.contains("<script"));
        let forest = interval_chart(
            hostile,
            hostile,
            &[IntervalRow {
                label: hostile,
                estimate: 0.1,
                low: -0.1,
                high: 0.3,
            }],
            0.0,
        );
        assert_well_formed(&forest);
        assert!(!forest.contains("<script"));
        assert!(no_data(hostile).contains("&lt;script&gt;"));
        assert_well_formed(&no_data(hostile));
    }

    #[test]
    fn non_finite_points_are_skipped() {
        let points = [
            (0.0, 1.0),
            (1.0, f64::NAN),
            (2.0, 2.0),
            (3.0, 2.5),
            (f64::INFINITY, 1.0),
            (4.0, f64::NEG_INFINITY),
        ];
        let svg = line_chart(&LineChart {
            title: "gaps",
            x_label: "x",
            y_label: "y",
            series: &[Series {
                label: "s",
                points: &points,
            }],
            x_format: format_number,
        });
        assert_well_formed(&svg);
        let bars = bar_chart("bars", "n", &[("a", f64::NAN), ("b", 2.0)]);
        assert_well_formed(&bars);
        let forest = interval_chart(
            "lift",
            "lift",
            &[
                IntervalRow {
                    label: "a",
                    estimate: f64::NAN,
                    low: 0.0,
                    high: 1.0,
                },
                IntervalRow {
                    label: "b",
                    estimate: 0.2,
                    low: 0.1,
                    high: 0.4,
                },
            ],
            0.0,
        );
        assert_well_formed(&forest);
        let x = [0.0, 1.0, 2.0, 3.0];
        let member = [1.0, f64::NAN, 2.0, 2.5];
        let fan = fan_chart(&FanChart {
            title: "fan",
            x_label: "hours ahead",
            y_label: "temperature",
            x: &x,
            p10: &[0.0, 0.5, f64::NAN, 1.0],
            p50: &[1.0, 1.5, 2.0, f64::INFINITY],
            p90: &[2.0, 2.5, 3.0, 3.5],
            members: &[&member],
            observed: Some(&[Some(1.2), None, Some(f64::NAN), Some(2.2)]),
            x_format: format_number,
        });
        assert_well_formed(&fan);
        assert!(fan.contains("<polygon"), "band drawn: {fan}");
        assert!(fan.contains("observed"));
    }

    #[test]
    fn empty_data_says_no_data() {
        let empty = line_chart(&LineChart {
            title: "nothing",
            x_label: "x",
            y_label: "y",
            series: &[Series {
                label: "s",
                points: &[(f64::NAN, 1.0)],
            }],
            x_format: format_number,
        });
        for svg in [
            empty,
            bar_chart("bars", "n", &[]),
            interval_chart("lift", "lift", &[], 0.0),
            fan_chart(&FanChart {
                title: "fan",
                x_label: "x",
                y_label: "y",
                x: &[],
                p10: &[],
                p50: &[],
                p90: &[],
                members: &[],
                observed: None,
                x_format: format_number,
            }),
        ] {
            assert_well_formed(&svg);
            assert!(svg.contains("No data"), "{svg}");
        }
    }

    #[test]
    fn bar_chart_labels_each_bar_with_its_value() {
        let svg = bar_chart(
            "Users per segment",
            "users",
            &[("rational", 12.0), ("emotional", 3.0), ("balanced", 0.0)],
        );
        assert_well_formed(&svg);
        for text in ["rational", "emotional", "balanced", "12", "3"] {
            assert!(
                svg.contains(&format!(">\n{text}\n</text>")),
                "{text} in {svg}"
            );
        }
        assert!(svg.matches("<rect").count() >= 3);
    }

    #[test]
    fn fan_chart_draws_band_median_members_and_observed() {
        let x = [1.0, 2.0, 3.0];
        let m1 = [1.0, 2.0, 3.0];
        let m2 = [2.0, 3.0, 4.0];
        let svg = fan_chart(&FanChart {
            title: "Forecast",
            x_label: "hours ahead",
            y_label: "°C",
            x: &x,
            p10: &[1.0, 2.0, 3.0],
            p50: &[1.5, 2.5, 3.5],
            p90: &[2.0, 3.0, 4.0],
            members: &[&m1, &m2],
            observed: Some(&[Some(1.7), None, None]),
            x_format: |v| format!("+{v:.0} h"),
        });
        assert_well_formed(&svg);
        assert!(svg.contains("<polygon"));
        assert!(svg.contains("+2 h"), "{svg}");
        assert!(svg.contains("<circle"));
        assert!(svg.contains("median (p50)"));
    }

    #[test]
    fn one_bar_and_one_row_draw_inside_the_plot() {
        for svg in [
            bar_chart("one", "n", &[("only", 4.0)]),
            interval_chart(
                "one",
                "lift",
                &[IntervalRow {
                    label: "only",
                    estimate: 1.0,
                    low: 0.5,
                    high: 1.5,
                }],
                0.0,
            ),
        ] {
            assert_well_formed(&svg);
            assert!(svg.contains(">\nonly\n</text>"), "{svg}");
        }
    }

    #[test]
    fn numbers_format_compactly() {
        assert_eq!(format_number(3.0), "3");
        assert_eq!(format_number(0.25), "0.25");
        assert_eq!(format_number(12.345), "12.3");
        assert_eq!(format_number(f64::NAN), "");
        assert_eq!(whole_number(7.0), "7");
        assert_eq!(whole_number(6.4), "");
    }
}
