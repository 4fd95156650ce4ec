//! Privacy units' tallies: on a dp dataset with a unit column, every ingested or donated
//! row is counted against its unit's bound (`rows_per_unit`, over all epochs), and the
//! unit attributes (a household's district) must agree across the unit's rows. Checked
//! and recorded in the transaction that stores the rows, so a file that would break a
//! bound stores nothing. Withdrawn rows stay counted: a bound on what a unit ever gave.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension, Transaction};

use super::StoreError;
use crate::verifier::schema::{Privacy, Schema};

/// One unit's rows in the files being stored: how many, its attribute values, and where
/// its first row is (file, row from 1).
struct Tally<'a> {
    rows: u64,
    attributes: Vec<u64>,
    first: (&'a str, usize),
}

/// Counts the rows of `parsed` (per file: its name and its columns) against their units'
/// bounds, and records the new totals; refuses, naming the file, row, unit and bound or
/// attribute, when a unit would pass its bound or its attributes disagree.
pub(super) fn count(
    tx: &Transaction,
    schema: &Schema,
    parsed: &[(String, Vec<Vec<u64>>)],
) -> Result<(), StoreError> {
    let (Privacy::Dp(bounds), Some(unit_column)) = (&schema.privacy, schema.unit()) else {
        return Ok(());
    };
    let attribute_columns: Vec<(usize, &str)> = bounds
        .unit_attributes
        .iter()
        .filter_map(|a| schema.column(a).map(|(i, c)| (i, c.name.as_str())))
        .collect();
    let unit_name = &schema.columns[unit_column].name;
    let mut tallies: HashMap<u64, Tally> = HashMap::new();
    for (file, columns) in parsed {
        for (row, &unit) in columns[unit_column].iter().enumerate() {
            let attributes: Vec<u64> = attribute_columns
                .iter()
                .map(|(c, _)| columns[*c][row])
                .collect();
            let tally = tallies.entry(unit).or_insert_with(|| Tally {
                rows: 0,
                attributes: attributes.clone(),
                first: (file, row + 1),
            });
            tally.rows += 1;
            if let Some(k) = (0..attributes.len()).find(|&k| attributes[k] != tally.attributes[k]) {
                return Err(StoreError::Unit(format!(
                    "{file} row {}: {unit_name} {unit} has {} {} here and {} in {} row {}: a \
                     unit attribute is the same in all of a unit's rows",
                    row + 1,
                    attribute_columns[k].1,
                    attributes[k],
                    tally.attributes[k],
                    tally.first.0,
                    tally.first.1
                )));
            }
        }
    }
    for (unit, tally) in &tallies {
        let key = *unit as i64;
        let stored: Option<(i64, String)> = tx
            .query_row(
                "SELECT rows, attributes FROM units WHERE dataset = ?1 AND unit = ?2",
                params![schema.name, key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let attributes = tally
            .attributes
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let before = match &stored {
            Some((rows, stored_attributes)) => {
                if *stored_attributes != attributes {
                    return Err(StoreError::Unit(format!(
                        "{} row {}: {unit_name} {unit} has unit attributes ({}) = ({attributes}) \
                         here, ({stored_attributes}) in the rows stored before",
                        tally.first.0,
                        tally.first.1,
                        bounds.unit_attributes.join(", ")
                    )));
                }
                *rows as u64
            }
            None => 0,
        };
        let total = before + tally.rows;
        if total > bounds.rows_per_unit {
            return Err(StoreError::Unit(format!(
                "{} row {}: {unit_name} {unit} would have {total} rows ({before} stored before); \
                 the schema allows {} rows per unit (rows_per_unit)",
                tally.first.0, tally.first.1, bounds.rows_per_unit
            )));
        }
        tx.execute(
            "INSERT INTO units (dataset, unit, rows, attributes) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (dataset, unit) DO UPDATE SET rows = excluded.rows",
            params![schema.name, key, total as i64, attributes],
        )?;
    }
    Ok(())
}
