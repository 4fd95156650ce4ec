//! What Flight SQL clients receive, as Arrow: a verified answer as one record batch, and a
//! dataset as the table researchers' SQL names.
//!
//! An answer's columns are those `query --format csv` writes, typed: group labels as
//! text, exact counts as `Int64`, exact sums in their measure's unit as `Decimal128`
//! (kWh to the watt-hour: `12.345`), averages, ratios and differentially private
//! estimates as `Float64`, predicates as `Boolean`; a suppressed group's numbers are
//! null. Under differential privacy each noisy COUNT or SUM is followed by its 95%
//! interval, `NAME low` and `NAME high`. The schema's metadata names the bundle (its id
//! and SHA-256) so a client can fetch it and verify the very answer it holds, and says
//! the dataset, epoch, privacy mode (`dp` or `threshold-only`) and the answer's notes.

use std::{collections::HashMap, sync::Arc};

use datafusion::arrow::{
    array::{ArrayRef, StringArray},
    compute::{cast_with_options, CastOptions},
    datatypes::{DataType, Field, Schema as ArrowSchema, SchemaRef},
    record_batch::RecordBatch,
};
use prost::Message;
use tonic::Status;
use zkfabric_proto::v1 as pb;

use crate::{
    node::store::sha256_hex,
    shared::records,
    verifier::{
        bundle,
        query::{OutputKind, ProvableQuery},
        schema::{ColumnKind, Schema},
        table::{Answer, Cell},
        view::measure,
    },
};

/// Schema metadata key: the bundle's id, for `GetBundle`.
pub const BUNDLE_ID: &str = "zkfabric.bundle_id";
/// Schema metadata key: the SHA-256 of the bundle's bytes (hex), as `zkfabric verify`
/// reads them.
pub const BUNDLE_SHA256: &str = "zkfabric.bundle_sha256";

/// How one output column is typed.
#[derive(Clone, Copy)]
enum Typed {
    Label,
    Predicate,
    Integer,
    /// Exact decimal with this many digits after the point.
    Decimal(i8),
    Real,
}

impl Typed {
    fn data_type(self) -> DataType {
        match self {
            Self::Label => DataType::Utf8,
            Self::Predicate => DataType::Boolean,
            Self::Integer => DataType::Int64,
            Self::Decimal(digits) => DataType::Decimal128(38, digits),
            Self::Real => DataType::Float64,
        }
    }

    /// The type of output `kind`; `noisy` under differential privacy.
    fn of(schema: &Schema, query: &ProvableQuery, kind: &OutputKind, noisy: bool) -> Self {
        match kind {
            OutputKind::GroupKey(_) => Self::Label,
            OutputKind::Predicate => Self::Predicate,
            OutputKind::Count | OutputKind::Sum(_) if noisy => Self::Real,
            OutputKind::Count => Self::Integer,
            OutputKind::Sum(_) => {
                let scale = measure(schema, query, kind)
                    .and_then(|c| c.scale)
                    .unwrap_or(1);
                let digits = scale.ilog10();
                match (scale, 10u64.pow(digits) == scale) {
                    (1, _) => Self::Integer,
                    (_, true) => Self::Decimal(digits as i8),
                    (_, false) => Self::Real,
                }
            }
            OutputKind::Avg(_) | OutputKind::Arithmetic(_) => Self::Real,
        }
    }
}

/// The answer `bundle` carries, as one record batch of the columns the SQL names (see
/// the module's documentation); `id` is the bundle's id.
pub fn answer_batch(bundle: &pb::Bundle, id: &str) -> Result<RecordBatch, Status> {
    let invalid = |e: String| Status::internal(format!("bundle {id}: {e}"));
    let schema =
        Schema::parse("the bundle's schema", &bundle.schema).map_err(|e| invalid(e.to_string()))?;
    let (query, _) =
        bundle::query_from_proto(bundle.query.as_ref()).map_err(|e| invalid(e.to_string()))?;
    let answer = Answer::of(&schema, &query, bundle);
    let noisy = bundle.privacy.as_ref().is_some_and(|p| p.mode == "dp");

    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    let mut push = |name: String, typed: Typed, unit: Option<&String>, texts: Vec<Option<&str>>| {
        let mut field = Field::new(name, typed.data_type(), true);
        if let Some(unit) = unit {
            field = field.with_metadata(HashMap::from([("unit".into(), unit.clone())]));
        }
        let text: ArrayRef = Arc::new(StringArray::from(texts));
        let options = CastOptions {
            safe: false,
            ..Default::default()
        };
        let column = cast_with_options(&text, field.data_type(), &options)
            .map_err(|e| invalid(format!("column `{}`: {e}", field.name())))?;
        fields.push(field);
        columns.push(column);
        Ok::<_, Status>(())
    };
    for (i, output) in query.outputs.iter().enumerate() {
        let typed = Typed::of(&schema, &query, &output.kind, noisy);
        let cells = answer.cells.iter().map(|row| &row[i]);
        let values = cells
            .clone()
            .map(|cell| match cell {
                Cell::Null => None,
                Cell::Text(text) => Some(text.as_str()),
                Cell::Number { value, .. } => Some(value.as_str()),
            })
            .collect();
        let unit = answer.units[i].as_ref();
        push(output.name.clone(), typed, unit, values)?;
        if noisy && matches!(output.kind, OutputKind::Count | OutputKind::Sum(_)) {
            for (bound, pick) in [("low", 0), ("high", 1)] {
                let values = cells
                    .clone()
                    .map(|cell| match cell {
                        Cell::Number {
                            interval: Some((low, high)),
                            ..
                        } => Some([low, high][pick].as_str()),
                        _ => None,
                    })
                    .collect();
                push(
                    format!("{} {bound}", output.name),
                    Typed::Real,
                    unit,
                    values,
                )?;
            }
        }
    }
    let metadata = HashMap::from([
        (BUNDLE_ID.to_string(), id.to_string()),
        (
            BUNDLE_SHA256.to_string(),
            sha256_hex(&bundle.encode_to_vec()),
        ),
        ("zkfabric.dataset".to_string(), bundle.dataset.clone()),
        ("zkfabric.epoch".to_string(), bundle.epoch.to_string()),
        ("zkfabric.notes".to_string(), answer.notes.join("; ")),
        (
            "zkfabric.privacy".to_string(),
            bundle.privacy.as_ref().map_or("", |p| &p.mode).to_string(),
        ),
    ]);
    let schema = Arc::new(ArrowSchema::new_with_metadata(fields, metadata));
    RecordBatch::try_new(schema, columns).map_err(|e| invalid(e.to_string()))
}

/// A dataset as the table researchers' SQL names: the columns a query may use, labelled
/// dimensions as text and every other column as its stored unsigned integer, each with
/// its kind, (measures) unit and scale, and what a donor's credential backs of it
/// (`credential`: `age` or `residence`) in the field's metadata. The privacy unit's
/// column is left out: no query may use it.
pub fn table_schema(schema: &Schema) -> SchemaRef {
    let file = records::arrow_schema(schema);
    let fields: Vec<Field> = schema
        .declared()
        .iter()
        .zip(file.fields())
        .filter(|(c, _)| c.kind != ColumnKind::Unit)
        .map(|(c, field)| {
            let mut metadata = HashMap::from([("kind".to_string(), c.kind.to_string())]);
            let described = [
                ("unit", c.unit.clone()),
                ("scale", c.scale.map(|s| s.to_string())),
                ("description", c.description.clone()),
                (
                    "credential",
                    c.credential.map(|a| format!("{a:?}").to_lowercase()),
                ),
            ];
            for (key, value) in described {
                if let Some(value) = value {
                    metadata.insert(key.to_string(), value);
                }
            }
            field.as_ref().clone().with_metadata(metadata)
        })
        .collect();
    Arc::new(ArrowSchema::new(fields))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

    use super::*;
    use crate::verifier::table::{render, Format};

    /// Each fixture's answer as Arrow shows the numbers its verified CSV shows: the same
    /// columns in the same order, nulls where the CSV is empty; exact sums are decimals,
    /// noisy numbers carry their intervals.
    #[test]
    fn arrow_answers_carry_what_the_csv_shows() {
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/verifier/tests/fixtures");
        for name in ["grouped", "noisy", "kwh"] {
            let path = std::path::Path::new(fixtures).join(format!("{name}.zkf"));
            let bundle = bundle::read(&path).unwrap();
            let batch = answer_batch(&bundle, "00").unwrap();
            let schema = Schema::parse("fixture", &bundle.schema).unwrap();
            let (query, _) = bundle::query_from_proto(bundle.query.as_ref()).unwrap();
            let csv = render(&schema, &query, &bundle, Format::Csv);
            let mut lines = csv.lines();
            let header: Vec<&str> = lines.next().unwrap().split(',').collect();
            let names: Vec<&str> = batch
                .schema_ref()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            // The CSV writes intervals only when some cell has one; Arrow's schema has
            // them whenever the answer is noisy.
            let shared: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| header.contains(n))
                .collect();
            assert_eq!(shared, header, "{name}");
            let options = FormatOptions::default().with_null("");
            for (row, line) in lines.enumerate() {
                for (column, text) in line.split(',').enumerate() {
                    let array = batch.column_by_name(header[column]).unwrap();
                    let shown = ArrayFormatter::try_new(array.as_ref(), &options)
                        .unwrap()
                        .value(row)
                        .to_string();
                    let same = match (shown.parse::<f64>(), text.parse::<f64>()) {
                        (Ok(a), Ok(b)) => a == b,
                        _ => shown == text,
                    };
                    assert!(
                        same,
                        "{name} row {row} `{}`: {shown} vs {text}",
                        header[column]
                    );
                }
            }
            let metadata = batch.schema_ref().metadata();
            assert_eq!(metadata[BUNDLE_SHA256], sha256_hex(&bundle.encode_to_vec()));
            match name {
                "noisy" => assert!(names.contains(&"count(*) low"), "{names:?}"),
                _ => assert!(batch
                    .schema_ref()
                    .fields()
                    .iter()
                    .any(|f| matches!(f.data_type(), DataType::Decimal128(38, 3)))),
            }
        }
    }
}
