//! A verified answer drawn as a bar chart (SVG, no system libraries): one panel per
//! number SQL shows, a bar per row shown (after HAVING, ORDER BY and LIMIT), labelled by
//! its groups; a suppressed group is marked, never drawn as a zero; a differentially
//! private estimate carries its 95% interval as an error bar. The numbers are those of
//! [`Answer`]: in each measure's unit, as the table prints them.

use std::path::Path;

use anyhow::{bail, Context, Result};
use plotters::{
    coord::ranged1d::SegmentValue,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use crate::verifier::{files, table::Answer, table::Cell};

/// Width of a chart, in pixels; its height grows with the panels.
const WIDTH: u32 = 960;
/// Height of one panel.
const PANEL_HEIGHT: u32 = 360;
/// Most groups whose labels are written under the axis (every one when there are no
/// more).
const MOST_LABELS: usize = 48;

/// One bar: its value and interval, or `None` for a suppressed group.
type Bar = Option<(f64, Option<(f64, f64)>)>;

/// Writes `answer` as an SVG bar chart to `path` (atomically), titled `title`. An answer
/// without numbers (a predicate) cannot be drawn.
pub fn write(path: &Path, answer: &Answer, title: &str) -> Result<()> {
    let svg = draw(answer, title)?;
    files::write_bytes_atomically(path, svg.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// The SVG text of [`write`]'s chart.
pub fn draw(answer: &Answer, title: &str) -> Result<String> {
    let labels: Vec<String> = answer
        .cells
        .iter()
        .map(|row| {
            let keys: Vec<&str> = row
                .iter()
                .zip(&answer.keys)
                .filter_map(|(cell, key)| match (cell, key) {
                    (Cell::Text(t), true) => Some(t.as_str()),
                    _ => None,
                })
                .collect();
            match keys.is_empty() {
                true => "all rows".to_string(),
                false => keys.join(" / "),
            }
        })
        .collect();
    let panels: Vec<(String, Vec<Bar>)> = (0..answer.names.len())
        .filter(|&c| !answer.keys[c])
        .filter_map(|c| {
            let bars: Vec<Bar> = answer
                .cells
                .iter()
                .map(|row| match &row[c] {
                    Cell::Number { value, interval } => {
                        let number = |t: &str| t.parse::<f64>().ok();
                        let interval = interval
                            .as_ref()
                            .and_then(|(low, high)| Some((number(low)?, number(high)?)));
                        Some(Some((number(value)?, interval)))
                    }
                    Cell::Null => Some(None),
                    Cell::Text(_) => None,
                })
                .collect::<Option<_>>()?;
            let name = match &answer.units[c] {
                Some(unit) => format!("{} ({unit})", answer.names[c]),
                None => answer.names[c].clone(),
            };
            Some((name, bars))
        })
        .collect();
    if panels.is_empty() {
        bail!("the answer has no numbers to chart (a predicate's answer is true or false)");
    }
    let mut svg = String::new();
    {
        let height = PANEL_HEIGHT * panels.len() as u32 + 40;
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let root = root
            .titled(title, ("sans-serif", 18))
            .map_err(chart_error)?;
        for (area, (name, bars)) in root.split_evenly((panels.len(), 1)).iter().zip(&panels) {
            panel(area, name, &labels, bars)?;
        }
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

/// One panel: the bars of one output column.
fn panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    name: &str,
    labels: &[String],
    bars: &[Bar],
) -> Result<()> {
    let values = bars
        .iter()
        .flatten()
        .flat_map(|(v, i)| [Some(*v), i.map(|i| i.0), i.map(|i| i.1)])
        .flatten();
    let (low, high) = values.fold((0f64, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let high = if high <= low { low + 1.0 } else { high };
    let pad = (high - low) * 0.08;
    let groups = bars.len() as u32;
    // Slots on the axis: one per group; a lone group sits in the middle of three.
    let shift = u32::from(groups <= 1);
    let slots = groups.max(1) + 2 * shift;
    let mut chart = ChartBuilder::on(area)
        .caption(name, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(70)
        .y_label_area_size(70)
        .build_cartesian_2d((0..slots - 1).into_segmented(), (low - pad)..(high + pad))
        .map_err(chart_error)?;
    let label = |x: &SegmentValue<u32>| match x {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => i
            .checked_sub(shift)
            .and_then(|i| labels.get(i as usize).cloned())
            .unwrap_or_default(),
        SegmentValue::Last => String::new(),
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels((slots as usize).min(MOST_LABELS))
        .x_label_formatter(&label)
        .y_desc(name)
        .draw()
        .map_err(chart_error)?;
    let released = bars
        .iter()
        .enumerate()
        .filter_map(|(i, b)| Some((i as u32 + shift, (*b)?)));
    chart
        .draw_series(released.clone().map(|(i, (value, _))| {
            // A fifth of each slot's width either side: bars apart, and a lone one not
            // the whole panel.
            let side = ((WIDTH - 110) / slots / 5).clamp(2, 200);
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), value),
                ],
                BLUE.mix(0.6).filled(),
            );
            bar.set_margin(0, 0, side, side);
            bar
        }))
        .map_err(chart_error)?;
    chart
        .draw_series(released.filter_map(|(i, (value, interval))| {
            let (lo, hi) = interval?;
            Some(ErrorBar::new_vertical(
                SegmentValue::CenterOf(i),
                lo,
                value,
                hi,
                BLACK.filled(),
                8,
            ))
        }))
        .map_err(chart_error)?;
    // Suppressed groups: a mark where the bar would stand, so no one reads a zero.
    chart
        .draw_series(
            bars.iter()
                .enumerate()
                .filter(|(_, b)| b.is_none())
                .map(|(i, _)| {
                    Text::new(
                        "suppressed",
                        (SegmentValue::CenterOf(i as u32 + shift), 0.0),
                        ("sans-serif", 11)
                            .into_font()
                            .color(&RED)
                            .pos(Pos::new(HPos::Center, VPos::Bottom)),
                    )
                }),
        )
        .map_err(chart_error)?;
    Ok(())
}

fn chart_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(value: &str, interval: Option<(&str, &str)>) -> Cell {
        Cell::Number {
            value: value.into(),
            interval: interval.map(|(l, h)| (l.into(), h.into())),
        }
    }

    #[test]
    fn estimates_get_error_bars_and_suppressed_groups_a_mark_never_a_bar() {
        let answer = Answer {
            names: vec!["district".into(), "count(*)".into()],
            units: vec![None, None],
            cells: vec![
                vec![
                    Cell::Text("Daan".into()),
                    number("120", Some(("90", "150"))),
                ],
                vec![Cell::Text("Xinyi".into()), Cell::Null],
                vec![
                    Cell::Text("Neihu".into()),
                    number("-4", Some(("-30", "22"))),
                ],
            ],
            keys: vec![true, false],
            notes: Vec::new(),
        };
        let svg = draw(&answer, "SELECT district, COUNT(*) ...").unwrap();
        for text in ["Daan", "Xinyi", "Neihu", ">\nsuppressed\n<", "count(*)"] {
            assert!(svg.contains(text), "{text}");
        }
        assert_eq!(svg.matches(">\nsuppressed\n<").count(), 1);
        // Two released bars, each with an error bar (three lines: the whisker and caps).
        let bars = svg.matches("<rect").count();
        let plain = Answer {
            cells: answer
                .cells
                .iter()
                .map(|row| {
                    row.iter()
                        .map(|c| match c {
                            Cell::Number { value, .. } => number(value, None),
                            other => other.clone(),
                        })
                        .collect()
                })
                .collect(),
            ..answer.clone()
        };
        let without = draw(&plain, "SELECT district, COUNT(*) ...").unwrap();
        assert_eq!(without.matches("<rect").count(), bars);
        assert!(
            svg.matches("<line").count() + svg.matches("<polyline").count()
                > without.matches("<line").count() + without.matches("<polyline").count()
        );

        let predicate = Answer {
            names: vec!["bool_and(age >= 18)".into()],
            units: vec![None],
            cells: vec![vec![Cell::Text("true".into())]],
            keys: vec![false],
            notes: Vec::new(),
        };
        let err = draw(&predicate, "SELECT bool_and(age >= 18) ...").unwrap_err();
        assert!(err.to_string().contains("no numbers to chart"), "{err}");
    }
}
