//! Records in files: converting between a dataset's stored values (unsigned integer codes,
//! column-major) and Arrow record batches, and reading or writing CSV, Parquet and Arrow
//! IPC files by extension.
//!
//! Reading validates everything the store will rely on: columns are matched by name (all
//! declared columns, nothing else), dimension values may be labels or codes, consent may
//! be a bitmask or purpose names joined by `|`, and every value must be an unsigned
//! integer below `2^width` of its column (an empty consent value means no purpose). The
//! first bad value is reported with its file,
//! row (counting from 1, header excluded) and column.

use std::{
    fs::File,
    io::{BufReader, BufWriter, Seek, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

use datafusion::{
    arrow::{
        array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, UInt64Array},
        compute::cast,
        csv,
        datatypes::{DataType, Field, Int64Type, Schema as ArrowSchema, SchemaRef, UInt64Type},
        ipc,
    },
    parquet::arrow::{arrow_reader::ParquetRecordBatchReaderBuilder, ArrowWriter},
};

use crate::verifier::{
    files::{self, FileError},
    schema::{Column, ColumnKind, Schema},
};

/// Separator of purpose names in a consent value written as text.
pub const PURPOSE_SEPARATOR: char = '|';

/// A record file format, chosen by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `.csv`, with a header line.
    Csv,
    /// `.parquet` or `.pq`.
    Parquet,
    /// `.arrow`, `.ipc` or `.feather` (the Arrow IPC file format).
    ArrowIpc,
}

impl Format {
    /// The format of `path`, from its extension.
    pub fn of(path: &Path) -> Result<Self, RecordsError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Ok(Self::Csv),
            "parquet" | "pq" => Ok(Self::Parquet),
            "arrow" | "ipc" | "feather" => Ok(Self::ArrowIpc),
            _ => Err(RecordsError::UnknownFormat {
                file: path.to_path_buf(),
            }),
        }
    }
}

/// Why a record file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// The extension names no supported format.
    #[error("{file}: unknown format; use .csv, .parquet or .arrow", file = file.display())]
    UnknownFormat { file: PathBuf },
    /// The file could not be opened, read or written.
    #[error("{file}: {source}", file = file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid CSV, Parquet or Arrow IPC.
    #[error("{file}: {message}", file = file.display())]
    Malformed { file: PathBuf, message: String },
    /// A declared column is missing.
    #[error("{file}: column `{column}` of dataset {dataset} is missing", file = file.display())]
    MissingColumn {
        file: PathBuf,
        column: String,
        dataset: String,
    },
    /// A column is not part of the dataset.
    #[error("{file}: column `{column}` is not in dataset {dataset} (its columns: {expected})", file = file.display())]
    UnknownColumn {
        file: PathBuf,
        column: String,
        dataset: String,
        expected: String,
    },
    /// A value is missing, of the wrong type, or out of its column's range.
    #[error("{file}: row {row}, column `{column}`: {message}", file = file.display())]
    BadValue {
        file: PathBuf,
        row: usize,
        column: String,
        message: String,
    },
}

impl From<FileError> for RecordsError {
    fn from(e: FileError) -> Self {
        RecordsError::Io {
            file: e.file,
            source: e.source,
        }
    }
}

/// The Arrow schema files of `schema` use: labelled dimensions and consent as text,
/// everything else as `UInt64`, all non-nullable.
pub fn arrow_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .declared()
        .iter()
        .map(|c| {
            Field::new(
                &c.name,
                if as_text(c) {
                    DataType::Utf8
                } else {
                    DataType::UInt64
                },
                false,
            )
        })
        .collect();
    Arc::new(ArrowSchema::new(fields))
}

fn as_text(c: &Column) -> bool {
    c.kind == ColumnKind::Consent || !c.labels.is_empty()
}

/// Rows `range` of column-major stored values as a record batch of [`arrow_schema`].
pub fn to_batch(
    schema: &Schema,
    columns: &[Vec<u64>],
    range: std::ops::Range<usize>,
) -> RecordBatch {
    let arrays: Vec<ArrayRef> = schema
        .declared()
        .iter()
        .zip(columns)
        .map(|(c, values)| -> ArrayRef {
            let values = &values[range.clone()];
            match (c.kind, as_text(c)) {
                (ColumnKind::Consent, _) => {
                    Arc::new(StringArray::from_iter_values(values.iter().map(|&v| {
                        c.purposes
                            .iter()
                            .enumerate()
                            .filter(|(bit, _)| v >> bit & 1 == 1)
                            .map(|(_, p)| p.as_str())
                            .collect::<Vec<_>>()
                            .join(&PURPOSE_SEPARATOR.to_string())
                    })))
                }
                (_, true) => Arc::new(StringArray::from_iter_values(
                    values
                        .iter()
                        .map(|&v| c.label_of(v).expect("generated codes have labels")),
                )),
                (_, false) => Arc::new(UInt64Array::from(values.to_vec())),
            }
        })
        .collect();
    RecordBatch::try_new(arrow_schema(schema), arrays).expect("arrays match the schema")
}

/// Name of the chunk-index column of sealed chunk files.
pub const CHUNK_COLUMN: &str = "_chunk";
/// Name of the row-index column of sealed chunk files.
pub const ROW_COLUMN: &str = "_row";

/// The Arrow schema of the store's files: every declared column as `UInt64` codes,
/// headed by `_chunk` and `_row` for sealed chunk files.
pub fn stored_schema(schema: &Schema, sealed: bool) -> SchemaRef {
    columns_schema(&declared_names(schema), sealed)
}

/// The names of `schema`'s declared columns.
fn declared_names(schema: &Schema) -> Vec<&str> {
    schema.declared().iter().map(|c| c.name.as_str()).collect()
}

/// The Arrow schema of stored `UInt64` columns named `names`, headed by `_chunk` and
/// `_row` when `sealed` (a dataset's chunk files, and a roll-up's cell files).
pub fn columns_schema<S: AsRef<str>>(names: &[S], sealed: bool) -> SchemaRef {
    let position = [CHUNK_COLUMN, ROW_COLUMN]
        .into_iter()
        .filter(|_| sealed)
        .map(|name| Field::new(name, DataType::UInt64, false));
    let named = names
        .iter()
        .map(|name| Field::new(name.as_ref(), DataType::UInt64, false));
    Arc::new(ArrowSchema::new(position.chain(named).collect::<Vec<_>>()))
}

/// Stored values as the store keeps them (see [`stored_schema`]); `chunk` is the index of
/// a sealed chunk, `None` for pending rows.
pub fn to_stored_batch(schema: &Schema, columns: &[Vec<u64>], chunk: Option<u64>) -> RecordBatch {
    columns_batch(&declared_names(schema), columns, chunk)
}

/// Columns named `names` as a batch of [`columns_schema`]; `chunk` is the index of a
/// sealed chunk (or cell chunk), `None` for pending rows.
pub fn columns_batch<S: AsRef<str>>(
    names: &[S],
    columns: &[Vec<u64>],
    chunk: Option<u64>,
) -> RecordBatch {
    let rows = columns.first().map_or(0, Vec::len);
    let mut arrays: Vec<ArrayRef> = Vec::new();
    if let Some(index) = chunk {
        arrays.push(Arc::new(UInt64Array::from(vec![index; rows])));
        arrays.push(Arc::new(UInt64Array::from_iter_values(0..rows as u64)));
    }
    for values in columns {
        arrays.push(Arc::new(UInt64Array::from(values.clone())));
    }
    RecordBatch::try_new(columns_schema(names, chunk.is_some()), arrays)
        .expect("arrays match the fields")
}

/// Reads a Parquet file the store wrote with [`to_stored_batch`].
pub fn read_stored_file(schema: &Schema, path: &Path) -> Result<Vec<Vec<u64>>, RecordsError> {
    read_columns(&declared_names(schema), path)
}

/// Reads the `UInt64` columns `names` of a Parquet file the store wrote (with
/// [`columns_batch`]).
pub fn read_columns<S: AsRef<str>>(
    names: &[S],
    path: &Path,
) -> Result<Vec<Vec<u64>>, RecordsError> {
    let malformed = |message: String| RecordsError::Malformed {
        file: path.to_path_buf(),
        message,
    };
    let file = File::open(path).map_err(|e| io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| malformed(e.to_string()))?;
    let mut out: Vec<Vec<u64>> = vec![Vec::new(); names.len()];
    for batch in reader {
        let batch = batch.map_err(|e| malformed(e.to_string()))?;
        for (c, name) in names.iter().enumerate() {
            let name = name.as_ref();
            let array = batch
                .column_by_name(name)
                .and_then(|a| a.as_primitive_opt::<UInt64Type>())
                .ok_or_else(|| malformed(format!("stored column `{name}` is missing")))?;
            out[c].extend(array.values().iter());
        }
    }
    Ok(out)
}

/// Writes `batches` to `path` in the format its extension names, atomically: to a
/// temporary file beside it, synced, then renamed over `path`.
pub fn write_file(
    path: &Path,
    schema: SchemaRef,
    batches: impl IntoIterator<Item = RecordBatch>,
) -> Result<(), RecordsError> {
    let format = Format::of(path)?;
    let malformed = |e: &dyn std::fmt::Display| RecordsError::Malformed {
        file: path.to_path_buf(),
        message: e.to_string(),
    };
    files::write_atomically(path, |file| {
        let out = BufWriter::new(file);
        match format {
            Format::Csv => {
                let mut w = csv::WriterBuilder::new().with_header(true).build(out);
                for b in batches {
                    w.write(&b).map_err(|e| malformed(&e))?;
                }
                w.into_inner().flush().map_err(|e| io(path, e))?;
            }
            Format::Parquet => {
                let mut w = ArrowWriter::try_new(out, schema, None).map_err(|e| malformed(&e))?;
                for b in batches {
                    w.write(&b).map_err(|e| malformed(&e))?;
                }
                w.close().map_err(|e| malformed(&e))?;
            }
            Format::ArrowIpc => {
                let mut w =
                    ipc::writer::FileWriter::try_new(out, &schema).map_err(|e| malformed(&e))?;
                for b in batches {
                    w.write(&b).map_err(|e| malformed(&e))?;
                }
                w.finish().map_err(|e| malformed(&e))?;
            }
        }
        Ok(())
    })
}

fn io(path: &Path, source: std::io::Error) -> RecordsError {
    RecordsError::Io {
        file: path.to_path_buf(),
        source,
    }
}

/// Reads and validates a record file of dataset `schema`: column-major stored values of
/// its declared columns.
pub fn read_file(schema: &Schema, path: &Path) -> Result<Vec<Vec<u64>>, RecordsError> {
    read(schema, path, None)
}

/// What the node fills in a donated record file.
#[derive(Clone, Copy, Debug)]
pub struct DonationFill {
    /// The purposes (a bitmask) the donor consents to for the whole file: they fill the
    /// consent column when the file has none, and every row must carry exactly them when
    /// it has one.
    pub consent: u64,
    /// The donation's privacy unit, for a dataset with a unit column.
    pub unit: Option<UnitFill>,
}

/// The consent bits of `purposes` in `schema`'s consent column; the message names an
/// unknown purpose, or says none was named.
pub fn consent_bits(schema: &Schema, purposes: &[String]) -> Result<u64, String> {
    let consent = &schema.columns[schema.consent()];
    if purposes.is_empty() {
        return Err(format!(
            "name at least one purpose to consent to ({})",
            consent.purposes.join(", ")
        ));
    }
    purposes.iter().try_fold(0u64, |bits, purpose| {
        let bit = consent
            .purposes
            .iter()
            .position(|p| p == purpose)
            .ok_or_else(|| {
                format!(
                    "unknown purpose `{purpose}` (purposes of {}: {})",
                    schema.name,
                    consent.purposes.join(", ")
                )
            })?;
        Ok(bits | 1 << bit)
    })
}

/// Where a donated row's privacy unit comes from.
#[derive(Clone, Copy, Debug)]
pub enum UnitFill {
    /// The node knows the donor (a credential's nullifier): this unit, and the file must
    /// leave the column out.
    Donor(u64),
    /// Nobody vouched for who is in the file: the file's own unit column, or else this
    /// one unit for the whole donation.
    Otherwise(u64),
}

/// Reads a donated record file, filling what `fill` gives.
pub fn read_donation(
    schema: &Schema,
    path: &Path,
    fill: DonationFill,
) -> Result<Vec<Vec<u64>>, RecordsError> {
    read(schema, path, Some(fill))
}

fn read(
    schema: &Schema,
    path: &Path,
    fill: Option<DonationFill>,
) -> Result<Vec<Vec<u64>>, RecordsError> {
    let malformed = |e: &dyn std::fmt::Display| RecordsError::Malformed {
        file: path.to_path_buf(),
        message: e.to_string(),
    };
    let format = Format::of(path)?;
    let file = File::open(path).map_err(|e| io(path, e))?;
    let batches: Vec<RecordBatch> = match format {
        Format::Csv => {
            let mut reader = BufReader::new(file);
            let (header, _) = csv::reader::Format::default()
                .with_header(true)
                .infer_schema(&mut reader, Some(0))
                .map_err(|e| malformed(&e))?;
            reader.rewind().map_err(|e| io(path, e))?;
            let text_fields: Vec<Field> = header
                .fields()
                .iter()
                .map(|f| Field::new(f.name(), DataType::Utf8, true))
                .collect();
            csv::ReaderBuilder::new(Arc::new(ArrowSchema::new(text_fields)))
                .with_header(true)
                .build(reader)
                .map_err(|e| malformed(&e))?
                .collect::<Result<_, _>>()
                .map_err(|e| malformed(&e))?
        }
        Format::Parquet => ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(|e| malformed(&e))?
            .collect::<Result<_, _>>()
            .map_err(|e| malformed(&e))?,
        Format::ArrowIpc => ipc::reader::FileReader::try_new(BufReader::new(file), None)
            .map_err(|e| malformed(&e))?
            .collect::<Result<_, _>>()
            .map_err(|e| malformed(&e))?,
    };
    let declared = schema.declared();
    let mut out: Vec<Vec<u64>> = vec![Vec::new(); declared.len()];
    let mut first_row = 1;
    for batch in &batches {
        let file_schema = batch.schema();
        if let Some(extra) = file_schema.fields().iter().find(|f| {
            schema
                .column(f.name())
                .is_none_or(|(i, _)| i >= declared.len())
        }) {
            return Err(RecordsError::UnknownColumn {
                file: path.to_path_buf(),
                column: extra.name().clone(),
                dataset: schema.name.clone(),
                expected: declared
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        for (c, column) in declared.iter().enumerate() {
            let given = match column.kind {
                ColumnKind::Consent => fill.map(|f| f.consent),
                ColumnKind::Unit => match fill.and_then(|f| f.unit) {
                    Some(UnitFill::Donor(_)) if batch.column_by_name(&column.name).is_some() => {
                        return Err(RecordsError::BadValue {
                            file: path.to_path_buf(),
                            row: first_row,
                            column: column.name.clone(),
                            message: "the node sets the privacy unit of a credential donation \
                                      (the donor's pseudonym): leave the column out"
                                .into(),
                        });
                    }
                    Some(UnitFill::Donor(unit) | UnitFill::Otherwise(unit)) => Some(unit),
                    None => None,
                },
                _ => None,
            };
            let bad_value = |(row, message)| RecordsError::BadValue {
                file: path.to_path_buf(),
                row: first_row + row,
                column: column.name.clone(),
                message,
            };
            let Some(array) = batch.column_by_name(&column.name) else {
                match given {
                    Some(bits) => {
                        out[c].extend(std::iter::repeat_n(bits, batch.num_rows()));
                        continue;
                    }
                    None => {
                        return Err(RecordsError::MissingColumn {
                            file: path.to_path_buf(),
                            column: column.name.clone(),
                            dataset: schema.name.clone(),
                        })
                    }
                }
            };
            let column_values = values(column, array).map_err(bad_value)?;
            if let (Some(bits), ColumnKind::Consent) = (given, column.kind) {
                if let Some(row) = column_values.iter().position(|&v| v != bits) {
                    return Err(bad_value((
                        row,
                        "differs from the purposes the donation consents to".into(),
                    )));
                }
            }
            out[c].extend(column_values);
        }
        first_row += batch.num_rows();
    }
    if batches.is_empty() {
        if let Some(column) = declared.first() {
            return Err(RecordsError::MissingColumn {
                file: path.to_path_buf(),
                column: column.name.clone(),
                dataset: schema.name.clone(),
            });
        }
    }
    Ok(out)
}

/// The stored values of one column, or the first bad row (0-based) and why.
fn values(column: &Column, array: &ArrayRef) -> Result<Vec<u64>, (usize, String)> {
    let mut out = Vec::with_capacity(array.len());
    let check = |row: usize, v: u64| -> Result<u64, (usize, String)> {
        if !zkfabric_circuits::commitment::fits(v, column.width) {
            return Err((
                row,
                format!(
                    "{v} does not fit {} bits (at most {})",
                    column.width,
                    max_value(column.width)
                ),
            ));
        }
        if !column.labels.is_empty() && v as usize >= column.labels.len() {
            return Err((
                row,
                format!("code {v} has no label ({} labels)", column.labels.len()),
            ));
        }
        if column.max.is_some_and(|max| v > max) {
            return Err((
                row,
                format!("{v} is above the column's max of {}", column.max_code()),
            ));
        }
        Ok(v)
    };
    let null = |row: usize| (row, "empty value".to_string());
    match array.data_type() {
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            let a = cast(array, &DataType::UInt64).map_err(|e| (0, e.to_string()))?;
            for (row, v) in a.as_primitive::<UInt64Type>().iter().enumerate() {
                out.push(check(row, v.ok_or_else(|| null(row))?)?);
            }
        }
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            let a = cast(array, &DataType::Int64).map_err(|e| (0, e.to_string()))?;
            for (row, v) in a.as_primitive::<Int64Type>().iter().enumerate() {
                let v = v.ok_or_else(|| null(row))?;
                let v = u64::try_from(v).map_err(|_| (row, format!("{v} is negative")))?;
                out.push(check(row, v)?);
            }
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let a = cast(array, &DataType::Utf8).map_err(|e| (0, e.to_string()))?;
            for (row, text) in a.as_string::<i32>().iter().enumerate() {
                let value = match text.filter(|t| !t.trim().is_empty()) {
                    Some(text) => parse_text(column, text).map_err(|m| (row, m))?,
                    // No purposes listed: the donor consented to none.
                    None if column.kind == ColumnKind::Consent => 0,
                    None => return Err(null(row)),
                };
                out.push(check(row, value)?);
            }
        }
        other => {
            return Err((
                0,
                format!(
                    "type {other} is not accepted: values are unsigned integers{}",
                    expected_text(column)
                ),
            ))
        }
    }
    Ok(out)
}

fn max_value(width: u32) -> u64 {
    if width >= 64 {
        u64::MAX
    } else {
        (1 << width) - 1
    }
}

fn expected_text(column: &Column) -> &'static str {
    match (column.kind, column.labels.is_empty()) {
        (ColumnKind::Consent, _) => " or purpose names",
        (_, false) => " or labels",
        _ => "",
    }
}

fn parse_text(column: &Column, text: &str) -> Result<u64, String> {
    let text = text.trim();
    // A label, else a numeric code (a label wins: household-size labels such as "1"
    // look like numbers).
    if let Some(code) = column.code_of(text) {
        return Ok(code);
    }
    match column.kind {
        ColumnKind::Dimension if !column.labels.is_empty() => Err(format!(
            "{text:?} is neither a label nor a code (labels: {})",
            column.labels.join(", ")
        )),
        ColumnKind::Consent => text
            .split(PURPOSE_SEPARATOR)
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .try_fold(0u64, |mask, p| {
                match column.purposes.iter().position(|q| q == p) {
                    Some(bit) => Ok(mask | 1 << bit),
                    None => Err(format!(
                        "unknown purpose {p:?} (purposes: {})",
                        column.purposes.join(", ")
                    )),
                }
            }),
        _ => Err(format!("{text:?} is not an unsigned integer")),
    }
}
