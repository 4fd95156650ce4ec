//! The answer as researchers use it: the rows SQL shows (after HAVING, ORDER BY and
//! LIMIT, see [`crate::view`]), columns named as the SQL names them, numbers in each
//! measure's unit (kWh, not the stored kWh x 1000), suppressed cells empty. Printed as an
//! aligned table, CSV or JSON; the bundle keeps the exact stored integers.

use std::fmt::Write as _;

use serde_json::{json, Map, Value as Json};
use zkfabric_proto::v1 as pb;

use crate::{
    query::{Aggregand, OutputKind, ProvableQuery},
    schema::Schema,
    view::measure,
};

/// How an answer is written out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for a terminal, with notes under them.
    #[default]
    Table,
    /// Comma-separated values with a header row; a dp estimate's interval in two more
    /// columns (`NAME low`, `NAME high`).
    Csv,
    /// One JSON object per row in an array, under `rows`, beside `units` and `notes`.
    Json,
}

/// One cell: nothing (a suppressed group's number), a label, or a number written in
/// decimal, with a dp estimate's 95% interval.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// A suppressed group's number.
    Null,
    /// A label, a predicate's answer.
    Text(String),
    /// A number in its measure's unit, with a dp estimate's 95% interval.
    Number {
        value: String,
        interval: Option<(String, String)>,
    },
}

/// The answer as shown: the output columns' names and units, and the cells of the rows
/// SQL shows (after HAVING, ORDER BY and LIMIT). What every format, and a chart, draws.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// Output column names, as the SQL names them.
    pub names: Vec<String>,
    /// Each column's unit (a measure's), if any.
    pub units: Vec<Option<String>>,
    /// One row of cells per row shown.
    pub cells: Vec<Vec<Cell>>,
    /// Which columns are grouping columns (their cells are labels).
    pub keys: Vec<bool>,
    /// What a reader must know about the numbers (suppression, privacy, units).
    pub notes: Vec<String>,
}

impl Answer {
    /// The answer of `bundle`, whose query and schema are given.
    pub fn of(schema: &Schema, query: &ProvableQuery, bundle: &pb::Bundle) -> Self {
        let rows = bundle.result.as_ref().map_or(&[][..], |r| &r.rows[..]);
        let shown = crate::view::view(schema, query, rows);
        Self {
            names: query.outputs.iter().map(|o| o.name.clone()).collect(),
            units: query
                .outputs
                .iter()
                .map(|o| measure(schema, query, &o.kind).and_then(|c| c.unit.clone()))
                .collect(),
            cells: shown
                .iter()
                .map(|row| {
                    (0..query.outputs.len())
                        .map(|output| cell(schema, query, output, row))
                        .collect()
                })
                .collect(),
            keys: query
                .outputs
                .iter()
                .map(|o| matches!(o.kind, OutputKind::GroupKey(_)))
                .collect(),
            notes: notes(schema, query, bundle),
        }
    }
}

/// The answer of `bundle` (whose query and schema are given), in `format`.
pub fn render(
    schema: &Schema,
    query: &ProvableQuery,
    bundle: &pb::Bundle,
    format: Format,
) -> String {
    let answer = Answer::of(schema, query, bundle);
    let names: Vec<&str> = answer.names.iter().map(String::as_str).collect();
    let (units, cells, notes) = (&answer.units, &answer.cells, &answer.notes);
    match format {
        Format::Table => table(&names, units, cells, notes),
        Format::Csv => csv(&names, cells),
        Format::Json => {
            let units: Map<String, Json> = names
                .iter()
                .zip(units)
                .filter_map(|(n, u)| u.as_ref().map(|u| (n.to_string(), json!(u))))
                .collect();
            let rows: Vec<Json> = cells
                .iter()
                .map(|row| {
                    let record: Map<String, Json> = names
                        .iter()
                        .zip(row)
                        .map(|(n, c)| (n.to_string(), cell_json(c)))
                        .collect();
                    Json::Object(record)
                })
                .collect();
            let document =
                json!({ "columns": names, "units": units, "rows": rows, "notes": notes });
            serde_json::to_string_pretty(&document).expect("JSON values always serialize") + "\n"
        }
    }
}

fn cell(schema: &Schema, query: &ProvableQuery, output: usize, row: &pb::ResultRow) -> Cell {
    let kind = &query.outputs[output].kind;
    if let OutputKind::GroupKey(column) = kind {
        return Cell::Text(row.labels.get(*column).cloned().unwrap_or_default());
    }
    if row.suppressed {
        return Cell::Null;
    }
    let scale = measure(schema, query, kind)
        .and_then(|c| c.scale)
        .unwrap_or(1);
    let number = |value: String, interval| Cell::Number { value, interval };
    let noisy = |e: &pb::NoisyEstimate, scale: u64| {
        number(
            scaled(&e.estimate, scale),
            Some((scaled(&e.low, scale), scaled(&e.high, scale))),
        )
    };
    let dp = row.count_estimate.is_some();
    let sum_text = |m: usize| match dp {
        true => row.sum_estimates.get(m).map(|e| e.estimate.clone()),
        false => row.sums.get(m).cloned(),
    };
    let count_text = match &row.count_estimate {
        Some(e) => e.estimate.clone(),
        None => row.count.to_string(),
    };
    match kind {
        OutputKind::Count => match &row.count_estimate {
            Some(e) => noisy(e, 1),
            None => number(count_text, None),
        },
        OutputKind::Sum(m) => match (dp, row.sum_estimates.get(*m), row.sums.get(*m)) {
            (true, Some(e), _) => noisy(e, scale),
            (false, _, Some(sum)) => number(scaled(sum, scale), None),
            _ => Cell::Null,
        },
        OutputKind::Avg(m) => {
            let (Some(sum), Ok(count)) = (
                sum_text(*m).and_then(|s| s.parse::<f64>().ok()),
                count_text.parse::<f64>(),
            ) else {
                return Cell::Null;
            };
            // Two digits more than the stored unit has.
            let decimals = scale.ilog10() as usize + 2;
            match count > 0.0 {
                true => number(format!("{:.decimals$}", sum / count / scale as f64), None),
                false => Cell::Null,
            }
        }
        OutputKind::Predicate => Cell::Text(row.holds.to_string()),
        // Four decimals: a ratio's digits, whatever the measures' units.
        OutputKind::Arithmetic(_) => match crate::view::value(schema, query, row, output) {
            Some(v) => number(format!("{:.4}", v.real()), None),
            None => Cell::Null,
        },
        OutputKind::GroupKey(_) => unreachable!("handled above"),
    }
}

/// A decimal integer in stored units, divided by the measure's scale: exact digits
/// ("12345" at scale 1000 is "12.345"); a scale other than a power of ten divides in
/// floating point.
fn scaled(stored: &str, scale: u64) -> String {
    if scale == 1 {
        return stored.to_string();
    }
    let (sign, unsigned) = match stored.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", stored),
    };
    let Ok(magnitude) = unsigned.parse::<u128>() else {
        return stored.to_string();
    };
    let digits = scale.ilog10();
    if 10u64.pow(digits) != scale {
        return format!("{sign}{}", magnitude as f64 / scale as f64);
    }
    let (whole, fraction) = (magnitude / u128::from(scale), magnitude % u128::from(scale));
    let fraction = format!("{fraction:0width$}", width = digits as usize);
    let fraction = fraction.trim_end_matches('0');
    match fraction.is_empty() {
        true => format!("{sign}{whole}"),
        false => format!("{sign}{whole}.{fraction}"),
    }
}

/// What a reader must know about the numbers: how small groups are kept back, and the
/// units.
fn notes(schema: &Schema, query: &ProvableQuery, bundle: &pb::Bundle) -> Vec<String> {
    let mut notes = vec![match bundle.privacy.as_ref().filter(|p| p.mode == "dp") {
        Some(p) => format!(
            "purpose {}; differentially private: each number is an estimate with its 95% \
             interval, and groups whose noisy count falls under {} steps are suppressed",
            query.purpose, p.threshold
        ),
        None => format!(
            "purpose {}; groups of fewer than {} rows are suppressed",
            query.purpose,
            bundle.query.as_ref().map_or(0, |q| q.min_group_size)
        ),
    }];
    if let Aggregand::Sum(measures) = &query.aggregand {
        for m in measures {
            if let Some((_, c)) = schema.column(m) {
                if let Some(unit) = &c.unit {
                    notes.push(format!("{m} in {unit}"));
                }
            }
        }
    }
    notes
}

fn text(cell: &Cell) -> String {
    match cell {
        Cell::Null => "suppressed".into(),
        Cell::Text(t) => t.clone(),
        Cell::Number {
            value,
            interval: Some((low, high)),
        } => format!("{value} [{low}, {high}]"),
        Cell::Number { value, .. } => value.clone(),
    }
}

fn table(
    names: &[&str],
    units: &[Option<String>],
    cells: &[Vec<Cell>],
    notes: &[String],
) -> String {
    let header: Vec<String> = names
        .iter()
        .zip(units)
        .map(|(n, u)| match u {
            Some(u) => format!("{n} ({u})"),
            None => n.to_string(),
        })
        .collect();
    let body: Vec<Vec<String>> = cells.iter().map(|r| r.iter().map(text).collect()).collect();
    let width = header
        .iter()
        .chain(body.iter().flatten())
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(0)
        .max(12)
        + 2;
    let mut out = String::new();
    for line in std::iter::once(&header).chain(&body) {
        for c in line {
            let _ = write!(out, "{c:>width$}");
        }
        out.push('\n');
    }
    let _ = writeln!(out, "({})", notes.join("; "));
    out
}

fn csv(names: &[&str], cells: &[Vec<Cell>]) -> String {
    // A column with an interval anywhere gets its low and high columns.
    let intervals: Vec<bool> = (0..names.len())
        .map(|i| {
            cells.iter().any(|r| {
                matches!(
                    r[i],
                    Cell::Number {
                        interval: Some(_),
                        ..
                    }
                )
            })
        })
        .collect();
    let field = |text: &str| match text.contains([',', '"', '\n']) {
        true => format!("\"{}\"", text.replace('"', "\"\"")),
        false => text.to_string(),
    };
    let mut header = Vec::new();
    for (name, interval) in names.iter().zip(&intervals) {
        header.push(field(name));
        if *interval {
            header.push(field(&format!("{name} low")));
            header.push(field(&format!("{name} high")));
        }
    }
    let mut out = header.join(",") + "\n";
    for row in cells {
        let mut fields = Vec::new();
        for (cell, interval) in row.iter().zip(&intervals) {
            let (value, bounds) = match cell {
                Cell::Null => (String::new(), None),
                Cell::Text(t) => (field(t), None),
                Cell::Number { value, interval } => (value.clone(), interval.clone()),
            };
            fields.push(value);
            if *interval {
                let (low, high) = bounds.unwrap_or_default();
                fields.extend([low, high]);
            }
        }
        out.push_str(&(fields.join(",") + "\n"));
    }
    out
}

fn cell_json(cell: &Cell) -> Json {
    let number = |text: &str| {
        serde_json::from_str::<serde_json::Number>(text).map_or_else(|_| json!(text), Json::Number)
    };
    match cell {
        Cell::Null => Json::Null,
        Cell::Text(t) => json!(t),
        Cell::Number {
            value,
            interval: None,
        } => number(value),
        Cell::Number {
            value,
            interval: Some((low, high)),
        } => json!({ "estimate": number(value), "low": number(low), "high": number(high) }),
    }
}

#[cfg(test)]
mod tests {
    use super::scaled;

    #[test]
    fn stored_units_are_divided_by_the_scale_exactly() {
        assert_eq!(scaled("12345", 1000), "12.345");
        assert_eq!(scaled("12000", 1000), "12");
        assert_eq!(scaled("5", 1000), "0.005");
        assert_eq!(scaled("-1500", 1000), "-1.5");
        assert_eq!(scaled("7", 1), "7");
        assert_eq!(scaled("3", 4), "0.75");
        assert_eq!(
            scaled("340282366920938463463374607431768211455", 100),
            "3402823669209384634633746074317682114.55"
        );
    }
}
