//! The answer as SQL shows it: the released table after HAVING, ORDER BY and LIMIT.
//!
//! Post-processing is never proven: it runs over released values only (exact numbers, or
//! a dp answer's estimates), so node and verifier compute the same view from the
//! verified table, and it cannot reveal more than the table. A suppressed group's numbers
//! are unknown: HAVING keeps it (as suppressed: nothing can say it fails), ORDER BY sorts
//! it where SQL sorts a null.

use std::cmp::Ordering;

use zkfabric_proto::v1 as pb;

use crate::{
    query::{Aggregand, Comparison, OutputKind, ProvableQuery},
    schema::{Column, Schema},
};

/// One cell's value, as far as the released row states it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A count, a sum, an estimate, or the code of a grouping column without labels.
    Integer(i128),
    /// An average, or arithmetic between aggregates.
    Real(f64),
    /// A grouping column's label.
    Label(String),
    /// A predicate's answer.
    Bool(bool),
}

impl Value {
    fn compare(&self, other: &Value) -> Ordering {
        use Value::*;
        match (self, other) {
            (Integer(a), Integer(b)) => a.cmp(b),
            (Label(a), Label(b)) => a.cmp(b),
            (Bool(a), Bool(b)) => a.cmp(b),
            (a, b) => a.real().total_cmp(&b.real()),
        }
    }

    /// The value as a real number (a label is NaN).
    pub fn real(&self) -> f64 {
        match self {
            Value::Integer(v) => *v as f64,
            Value::Real(v) => *v,
            Value::Bool(b) => f64::from(u8::from(*b)),
            Value::Label(_) => f64::NAN,
        }
    }
}

/// The value of output `output` in `row`: `None` for a suppressed group's aggregates.
pub fn value(
    schema: &Schema,
    query: &ProvableQuery,
    row: &pb::ResultRow,
    output: usize,
) -> Option<Value> {
    let kind = &query.outputs.get(output)?.kind;
    if let OutputKind::GroupKey(column) = kind {
        let label = row.labels.get(*column)?.clone();
        let labelled = query.group_by.get(*column).is_some_and(|g| {
            g.bucket.is_some()
                || schema
                    .column(&g.column)
                    .is_some_and(|(_, c)| !c.labels.is_empty())
        });
        return match labelled {
            true => Some(Value::Label(label)),
            false => label.parse().ok().map(Value::Integer),
        };
    }
    aggregate(schema, query, row, kind)
}

/// The value of an aggregate output (COUNT, SUM, AVG, a predicate, arithmetic) in `row`,
/// in stored units: what HAVING compares.
fn aggregate(
    schema: &Schema,
    query: &ProvableQuery,
    row: &pb::ResultRow,
    kind: &OutputKind,
) -> Option<Value> {
    if row.suppressed {
        return None;
    }
    let number = |exact: Option<i128>, estimate: &Option<pb::NoisyEstimate>| match estimate {
        Some(e) => e.estimate.parse().ok(),
        None => exact,
    };
    let count = number(Some(i128::from(row.count)), &row.count_estimate);
    let sum = |m: usize| {
        number(
            row.sums.get(m).and_then(|s| s.parse().ok()),
            &row.sum_estimates.get(m).cloned(),
        )
    };
    match kind {
        OutputKind::Count => count.map(Value::Integer),
        OutputKind::Sum(m) => sum(*m).map(Value::Integer),
        OutputKind::Avg(m) => match (sum(*m), count) {
            (Some(sum), Some(count)) if count > 0 => Some(Value::Real(sum as f64 / count as f64)),
            _ => None,
        },
        OutputKind::Predicate => Some(Value::Bool(row.holds)),
        // Over the values as the answer shows them: each measure in its unit.
        OutputKind::Arithmetic(a) => a
            .evaluate(&|kind: &OutputKind| {
                let scale = measure(schema, query, kind)
                    .and_then(|c| c.scale)
                    .unwrap_or(1);
                aggregate(schema, query, row, kind).map(|v| v.real() / scale as f64)
            })
            .map(Value::Real),
        OutputKind::GroupKey(_) => None,
    }
}

/// The measure column an output shows (SUM or AVG), whose unit and scale it takes.
pub fn measure<'s>(
    schema: &'s Schema,
    query: &ProvableQuery,
    kind: &OutputKind,
) -> Option<&'s Column> {
    let (OutputKind::Sum(m) | OutputKind::Avg(m), Aggregand::Sum(measures)) =
        (kind, &query.aggregand)
    else {
        return None;
    };
    let name = measures.get(*m)?;
    schema.column(name).map(|(_, c)| c)
}

/// The rows shown, in the order shown: those HAVING keeps, sorted by ORDER BY (ties in
/// group-slot order), at most LIMIT of them.
pub fn view<'r>(
    schema: &Schema,
    query: &ProvableQuery,
    rows: &'r [pb::ResultRow],
) -> Vec<&'r pb::ResultRow> {
    let post = &query.post;
    let mut shown: Vec<&pb::ResultRow> = rows
        .iter()
        .filter(|row| {
            post.having.iter().all(|h| {
                let Some(v) = value(schema, query, row, h.output) else {
                    return true;
                };
                let order = v.compare(&Value::Integer(h.value.into()));
                match h.comparison {
                    Comparison::Eq => order.is_eq(),
                    Comparison::NotEq => order.is_ne(),
                    Comparison::Lt => order.is_lt(),
                    Comparison::LtEq => order.is_le(),
                    Comparison::Gt => order.is_gt(),
                    Comparison::GtEq => order.is_ge(),
                }
            })
        })
        .collect();
    shown.sort_by(|a, b| {
        for key in &post.order_by {
            let order = match (
                value(schema, query, a, key.output),
                value(schema, query, b, key.output),
            ) {
                (Some(x), Some(y)) if key.descending => y.compare(&x),
                (Some(x), Some(y)) => x.compare(&y),
                (None, None) => Ordering::Equal,
                (None, Some(_)) if key.nulls_first => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) if key.nulls_first => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
            };
            if order.is_ne() {
                return order;
            }
        }
        Ordering::Equal
    });
    if let Some(limit) = post.limit {
        shown.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    shown
}
