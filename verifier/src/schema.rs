//! Dataset schemas: a TOML file per dataset declaring each column's name, kind and width.
//!
//! ```toml
//! name = "consumption"   # the table name in SQL
//! id = 1                 # bound into every chunk commitment
//! chunk_rows = 1024      # rows per sealed chunk (a power of two)
//!
//! [[columns]]
//! name = "district"
//! kind = "dimension"     # time | dimension | measure | attribute | consent | unit
//! width = 4              # values are unsigned integers below 2^width (1..=64)
//! labels = ["Zhongzheng", "Datong"]   # dictionary: code = position
//!
//! [privacy]
//! mode = "dp"            # every released number noisy (or "threshold-only": exact, k)
//! rows_per_unit = 168    # most rows one privacy unit (a donor) contributes
//! unit_attributes = ["district"]   # columns constant across one unit's rows
//! clip = { kwh = 5000 }  # a row adds at most this to a SUM (stored units; proven)
//! ```
//!
//! A schema may declare **roll-ups**: aggregates by a key that the node materializes as
//! cells when it seals rows and proves equal to them, so that queries on the key cost
//! cells, not rows (see [`Rollup`]):
//!
//! ```toml
//! [[rollups]]
//! name = "by_district_hour"
//! dimensions = ["district", "hour", "day(time)"]   # dimensions, and time buckets:
//!                                                  # minute, hour, day or week of a time column
//! measures = ["kwh"]                               # each cell sums these, per purpose
//! ```
//!
//! Every schema says how its answers protect the people in it (see [`Privacy`]); a
//! schema without a `[privacy]` section is refused, so that no dataset is answered
//! exactly by omission.
//!
//! A `consent` column lists the dataset's purposes, one bit each. The `present` column
//! (1 bit, set for real rows) is implied and must not be declared. Narrow kinds
//! (dimension, attribute, consent, present) are packed in commitments; time and measures
//! each get a column group of their own.

use std::{collections::BTreeMap, fmt, ops::Range};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;
use zkfabric_circuits::{
    commitment::{ChunkLayout, ColumnSpec, MAX_WIDTH},
    eligibility::{Bound, BoundRow, AGE_BITS, DISTRICT_BITS, TIME_BITS},
};

/// Dataset ids lie below `2^48`: the bits above number a roll-up's cell table
/// ([`Schema::cells_table_id`]).
pub const CELLS_TABLE_SHIFT: u32 = 48;

/// Name of the implied column that marks real rows.
pub const PRESENT: &str = "present";

/// The role of a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    /// Seconds since 1970-01-01 UTC.
    Time,
    /// A category (optionally with labels): filtered and grouped on.
    Dimension,
    /// A fixed-point quantity that is summed.
    Measure,
    /// A donor attribute (such as age) that predicates test.
    Attribute,
    /// One bit per purpose the donor consented to.
    Consent,
    /// The privacy unit's pseudonymous id (a household, a traveller): committed with the
    /// rows, and never filtered on, grouped by or released; the node counts each unit's
    /// rows against the schema's `rows_per_unit` when it ingests them.
    Unit,
    /// The implied real-row flag.
    Present,
}

impl ColumnKind {
    /// Whether commitments pack this kind with the other narrow columns.
    pub fn is_packed(self) -> bool {
        !matches!(self, Self::Time | Self::Measure | Self::Unit)
    }
}

impl fmt::Display for ColumnKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Time => "time",
            Self::Dimension => "dimension",
            Self::Measure => "measure",
            Self::Attribute => "attribute",
            Self::Consent => "consent",
            Self::Unit => "unit",
            Self::Present => "present",
        };
        f.write_str(name)
    }
}

/// One column of a dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Column name, unique within the dataset.
    pub name: String,
    /// Its role.
    pub kind: ColumnKind,
    /// Values lie below `2^width`.
    pub width: u32,
    /// Dimension labels, code = position (empty: plain numeric codes).
    pub labels: Vec<String>,
    /// Dimensions without labels: the largest code, when below `2^width - 1` (hour of
    /// day: 23). Ingest refuses larger codes, and GROUP BY has slots for `0..=max` only.
    pub max: Option<u64>,
    /// Consent purposes, bit = position.
    pub purposes: Vec<String>,
    /// Measures: stored value = quantity x scale.
    pub scale: Option<u64>,
    /// Measures: the unit of the quantity.
    pub unit: Option<String>,
    /// What the column holds, for people reading the catalog.
    pub description: Option<String>,
    /// What a donor's credential attests of the column, if anything: donations with a
    /// credential prove each row's value against it.
    pub credential: Option<Attested>,
}

/// A column value a donor's credential backs (`credential = "age"` or `"residence"` in a
/// schema): the eligibility proof checks it row by row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attested {
    /// An attribute: the holder's age in whole years at the row's time (from the birth
    /// date; the dataset needs a time column of at most 32 bits).
    Age,
    /// A dimension: the holder's residence district code.
    Residence,
}

impl Column {
    /// The code of a dimension value given as a label or as a decimal code.
    pub fn code_of(&self, text: &str) -> Option<u64> {
        match self.labels.iter().position(|l| l == text) {
            Some(code) => Some(code as u64),
            None => text.trim().parse().ok(),
        }
    }

    /// The largest code the column may hold: the last label's, the declared `max`, or
    /// `2^width - 1`.
    pub fn max_code(&self) -> u64 {
        match (self.labels.len(), self.max) {
            (0, Some(max)) => max,
            (0, None) if self.width >= 64 => u64::MAX,
            (0, None) => (1 << self.width) - 1,
            (labels, _) => labels as u64 - 1,
        }
    }

    /// The label of a dimension code, if it has one.
    pub fn label_of(&self, code: u64) -> Option<&str> {
        self.labels
            .get(usize::try_from(code).ok()?)
            .map(String::as_str)
    }
}

/// Time buckets of `seconds`, their boundaries at `offset + n · seconds` seconds since
/// 1970-01-01 UTC: what `date_trunc` (minute, hour, day, week: weeks start on Mondays)
/// and `date_bin` (a fixed interval from 1970) make of a time column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeBucket {
    /// A bucket's length (at least 1 second).
    pub seconds: u64,
    /// Where the boundaries fall: below `seconds`.
    pub offset: u64,
}

/// A day in seconds.
const DAY: u64 = 86_400;

impl TimeBucket {
    /// `date_trunc`'s minute.
    pub const MINUTE: Self = Self::new(60, 0);
    /// `date_trunc`'s hour.
    pub const HOUR: Self = Self::new(3_600, 0);
    /// `date_trunc`'s day.
    pub const DAY: Self = Self::new(DAY, 0);
    /// `date_trunc`'s ISO week, from Monday (1970-01-05 was one).
    pub const WEEK: Self = Self::new(7 * DAY, 4 * DAY);

    /// Buckets of `seconds` with boundaries at `offset` past a multiple.
    pub const fn new(seconds: u64, offset: u64) -> Self {
        Self { seconds, offset }
    }

    /// The bucket `date_trunc` names `unit` (`minute`, `hour`, `day` or `week`): the
    /// fixed-length ones, which a division proves.
    pub fn named(unit: &str) -> Option<Self> {
        match unit {
            "minute" => Some(Self::MINUTE),
            "hour" => Some(Self::HOUR),
            "day" => Some(Self::DAY),
            "week" => Some(Self::WEEK),
            _ => None,
        }
    }

    /// Its name: `hour` for `date_trunc('hour', ...)`, `900 s` for a 15-minute
    /// `date_bin`.
    pub fn unit(&self) -> String {
        match *self {
            Self::MINUTE => "minute".into(),
            Self::HOUR => "hour".into(),
            Self::DAY => "day".into(),
            Self::WEEK => "week".into(),
            Self { seconds, offset: 0 } => format!("{seconds} s"),
            Self { seconds, offset } => format!("{seconds} s from {offset} s"),
        }
    }

    /// The start of the bucket holding `t`.
    pub fn start(&self, t: i128) -> i128 {
        t - (t - i128::from(self.offset)).rem_euclid(i128::from(self.seconds))
    }

    /// How a bucket starting at `start` reads: its UTC start as DataFusion shows a
    /// timestamp (`2026-01-01T10:00:00`).
    pub fn label(start: i64) -> String {
        chrono::DateTime::from_timestamp(start, 0).map_or_else(
            || format!("{start} s"),
            |t| t.naive_utc().format("%Y-%m-%dT%H:%M:%S").to_string(),
        )
    }
}

/// A roll-up a schema declares: for every tuple of its key that sealed rows hold, a cell
/// with, per purpose, the number of rows consented to it and their sums of each measure
/// (clipped, on a `dp` dataset, as noisy sums clip). Queries that filter and group by the
/// key only are answered from the cells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rollup {
    /// Its name, unique within the dataset.
    pub name: String,
    /// The key, in order.
    pub dimensions: Vec<RollupDimension>,
    /// The measures each cell sums.
    pub measures: Vec<String>,
}

/// One part of a roll-up's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RollupDimension {
    /// A dimension column.
    Column(String),
    /// Time buckets of a time column.
    Bucket {
        /// The time column.
        column: String,
        /// The buckets.
        bucket: TimeBucket,
    },
}

impl RollupDimension {
    /// The column the part reads.
    pub fn column(&self) -> &str {
        match self {
            Self::Column(column) | Self::Bucket { column, .. } => column,
        }
    }

    /// Reads `district` or `day(time)` (a unit [`TimeBucket::named`] knows, of a column).
    fn parse(text: &str) -> Self {
        let bucket = text
            .strip_suffix(')')
            .and_then(|t| t.split_once('('))
            .and_then(|(unit, column)| {
                Some(Self::Bucket {
                    column: column.trim().to_string(),
                    bucket: TimeBucket::named(unit.trim())?,
                })
            });
        bucket.unwrap_or_else(|| Self::Column(text.to_string()))
    }
}

impl fmt::Display for RollupDimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Column(column) => f.write_str(column),
            Self::Bucket { column, bucket } => write!(f, "{}({column})", bucket.unit()),
        }
    }
}

/// How a dataset's answers protect the people in it, declared by its schema (and so
/// signed into every manifest through the schema hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Privacy {
    /// Differential privacy for a privacy unit (a donor): every released number is
    /// noisy, and each answer is charged to the dataset's budget.
    Dp(UnitBounds),
    /// Exact answers with a minimum group size `k`: for data about no one (sensor
    /// readings, public registers).
    ThresholdOnly,
}

impl Privacy {
    /// `dp` or `threshold-only`, as schemas, bundles and reports name the mode.
    pub fn mode(&self) -> &'static str {
        match self {
            Privacy::Dp(_) => "dp",
            Privacy::ThresholdOnly => "threshold-only",
        }
    }
}

/// What bounds one privacy unit's influence on an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitBounds {
    /// Most rows one unit contributes to the dataset, over all epochs.
    pub rows_per_unit: u64,
    /// Columns whose value is the same in all of one unit's rows (a household's
    /// district): grouping by one of them puts a unit in one group only.
    pub unit_attributes: Vec<String>,
    /// Per measure, the most one row adds to a noisy SUM (stored units): larger values
    /// are clipped to it inside the chunk proof. A measure not listed is clipped at its
    /// largest value, `2^width - 1`.
    pub clip: BTreeMap<String, u64>,
}

impl UnitBounds {
    /// The clip bound of `measure` in `schema`: declared, or the column's largest value.
    pub fn clip_of(&self, schema: &Schema, measure: &str) -> u64 {
        self.clip.get(measure).copied().unwrap_or_else(|| {
            schema
                .column(measure)
                .map_or(u64::MAX, |(_, c)| u64::MAX >> (64 - c.width))
        })
    }
}

/// A validated dataset schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schema {
    /// Dataset (and SQL table) name.
    pub name: String,
    /// Dataset id bound into commitments.
    pub id: u64,
    /// Rows per sealed chunk.
    pub chunk_rows: usize,
    /// The declared columns, then the implied `present` column.
    pub columns: Vec<Column>,
    /// How its answers protect the people in it.
    pub privacy: Privacy,
    /// The roll-ups it declares.
    pub rollups: Vec<Rollup>,
    /// The TOML text it was parsed from (what the schema hash covers).
    pub source: String,
}

/// The columns donors' credentials back in a dataset ([`Schema::attested`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttestedColumns {
    /// Which values the eligibility circuit binds.
    pub bound: Bound,
    /// The time column (when age is bound).
    pub time: Option<usize>,
    /// The column attested as age.
    pub age: Option<usize>,
    /// The column attested as residence.
    pub residence: Option<usize>,
}

impl AttestedColumns {
    /// Row `row`'s bound values, from column-major stored values.
    pub fn row(&self, columns: &[Vec<u64>], row: usize) -> BoundRow {
        let value = |column: Option<usize>| column.map_or(0, |c| columns[c][row]);
        BoundRow {
            time: value(self.time),
            age: value(self.age),
            district: value(self.residence),
        }
    }
}

/// Why a schema file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// Not valid TOML, or fields of the wrong type (the message names line and column).
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    /// Well-formed TOML that breaks a schema rule.
    #[error("{file} line {line}: {message}")]
    Invalid {
        file: String,
        line: usize,
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaFile {
    name: Spanned<String>,
    id: Spanned<u64>,
    chunk_rows: Spanned<usize>,
    columns: Vec<Spanned<ColumnFile>>,
    privacy: Option<Spanned<PrivacyFile>>,
    #[serde(default)]
    rollups: Vec<Spanned<RollupFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollupFile {
    name: String,
    dimensions: Vec<String>,
    #[serde(default)]
    measures: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrivacyFile {
    mode: String,
    rows_per_unit: Option<u64>,
    #[serde(default)]
    unit_attributes: Vec<String>,
    #[serde(default)]
    clip: BTreeMap<String, u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnFile {
    name: String,
    kind: ColumnKind,
    width: Option<u32>,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    purposes: Vec<String>,
    scale: Option<u64>,
    unit: Option<String>,
    description: Option<String>,
    max: Option<u64>,
    credential: Option<Attested>,
}

/// The built-in datasets' schema files.
const BUILTIN: [(&str, &str); 3] = [
    ("consumption", include_str!("schemas/consumption.toml")),
    ("movement", include_str!("schemas/movement.toml")),
    ("signal", include_str!("schemas/signal.toml")),
];

impl Schema {
    /// Names of the built-in datasets.
    pub fn builtin_names() -> impl Iterator<Item = &'static str> {
        BUILTIN.iter().map(|(name, _)| *name)
    }

    /// A built-in dataset's schema.
    pub fn builtin(name: &str) -> Option<Self> {
        let (_, text) = BUILTIN.iter().find(|(n, _)| *n == name)?;
        Some(Self::parse(&format!("{name}.toml"), text).expect("built-in schemas are valid"))
    }

    /// The same schema with `rows` rows per chunk (a node's configured chunk capacity).
    /// The schema text changes with it, and so does its hash.
    pub fn with_chunk_rows(&self, rows: usize) -> Result<Self, SchemaError> {
        let source: String = self
            .source
            .lines()
            .map(|line| match line.split('=').next() {
                Some(key) if key.trim() == "chunk_rows" => format!("chunk_rows = {rows}\n"),
                _ => format!("{line}\n"),
            })
            .collect();
        Self::parse(&format!("{} (chunk_rows = {rows})", self.name), &source)
    }

    /// The same schema answered exactly: its `[privacy]` section replaced by `mode =
    /// "threshold-only"` (for data about no one). The schema text, and its hash, change.
    pub fn threshold_only(&self) -> Result<Self, SchemaError> {
        let mut source = String::new();
        let mut in_privacy = false;
        for line in self.source.lines() {
            let header = line.trim_start().starts_with('[');
            if header {
                in_privacy = line.trim() == "[privacy]";
            }
            if !in_privacy {
                source.push_str(line);
                source.push('\n');
            }
        }
        source.push_str("\n[privacy]\nmode = \"threshold-only\"\n");
        Self::parse(&format!("{} (threshold-only)", self.name), &source)
    }

    /// Parses and validates schema `text`; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, SchemaError> {
        let raw: SchemaFile = toml::from_str(text).map_err(|e| SchemaError::Syntax {
            file: file.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let line_of = |span: Range<usize>| text[..span.start].matches('\n').count() + 1;
        let invalid = |span: Range<usize>, message: String| SchemaError::Invalid {
            file: file.to_string(),
            line: line_of(span),
            message,
        };
        let name = raw.name.get_ref().clone();
        if !is_identifier(&name) {
            return Err(invalid(
                raw.name.span(),
                format!("dataset name {name:?} is not an identifier"),
            ));
        }
        if *raw.id.get_ref() >> CELLS_TABLE_SHIFT != 0 {
            return Err(invalid(
                raw.id.span(),
                format!(
                    "id = {} is not below 2^{CELLS_TABLE_SHIFT}",
                    raw.id.get_ref()
                ),
            ));
        }
        let chunk_rows = *raw.chunk_rows.get_ref();
        if !chunk_rows.is_power_of_two() || !(2..=1 << 20).contains(&chunk_rows) {
            return Err(invalid(
                raw.chunk_rows.span(),
                format!("chunk_rows = {chunk_rows} is not a power of two in 2..=1048576"),
            ));
        }
        let mut columns: Vec<Column> = Vec::new();
        for spanned in &raw.columns {
            let span = spanned.span();
            let c = spanned.get_ref();
            let fail = |message: String| {
                Err(invalid(
                    span.clone(),
                    format!("column `{}`: {message}", c.name),
                ))
            };
            if !is_identifier(&c.name) || c.name.starts_with('_') {
                return fail(
                    "not an identifier (letters, digits, `_`, not starting with `_`)".into(),
                );
            }
            if columns.iter().any(|o| o.name == c.name) {
                return fail("declared twice".into());
            }
            if c.kind == ColumnKind::Present || c.name == PRESENT {
                return fail("the `present` column is implied and must not be declared".into());
            }
            let width = match (c.kind, c.width) {
                (ColumnKind::Consent, None) => c.purposes.len() as u32,
                (ColumnKind::Consent, Some(w)) if w as usize != c.purposes.len() => {
                    return fail(format!("width {w} but {} purposes", c.purposes.len()))
                }
                (_, Some(w)) => w,
                (_, None) => return fail("needs a width".into()),
            };
            if !(1..=MAX_WIDTH).contains(&width) {
                return fail(format!("width {width} is outside 1..=64"));
            }
            if !c.labels.is_empty() && c.kind != ColumnKind::Dimension {
                return fail("only dimensions have labels".into());
            }
            if (width as usize) < 64 && c.labels.len() > 1usize << width {
                return fail(format!("{} labels do not fit {width} bits", c.labels.len()));
            }
            if let Some(dup) = c
                .labels
                .iter()
                .enumerate()
                .find(|(i, l)| c.labels[..*i].contains(l))
            {
                return fail(format!("label {:?} appears twice", dup.1));
            }
            if (c.scale.is_some() || c.unit.is_some()) && c.kind != ColumnKind::Measure {
                return fail("only measures have a scale and a unit".into());
            }
            if c.scale == Some(0) {
                return fail("scale must be at least 1".into());
            }
            if let Some(max) = c.max {
                if c.kind != ColumnKind::Dimension || !c.labels.is_empty() {
                    return fail("only a dimension without labels declares a max".into());
                }
                if !zkfabric_circuits::commitment::fits(max, width) {
                    return fail(format!("max {max} does not fit {width} bits"));
                }
            }
            if c.kind != ColumnKind::Consent && !c.purposes.is_empty() {
                return fail("only the consent column lists purposes".into());
            }
            match c.credential {
                Some(Attested::Age) if c.kind != ColumnKind::Attribute || width > AGE_BITS => {
                    return fail(format!(
                        "credential = \"age\" is for an attribute of at most {AGE_BITS} bits"
                    ))
                }
                Some(Attested::Residence)
                    if c.kind != ColumnKind::Dimension || width > DISTRICT_BITS =>
                {
                    return fail(format!(
                        "credential = \"residence\" is for a dimension of at most \
                         {DISTRICT_BITS} bits (the credential's district codes)"
                    ))
                }
                Some(attested) if columns.iter().any(|o| o.credential == Some(attested)) => {
                    return fail(format!("a second column attested as {attested:?}"))
                }
                _ => {}
            }
            columns.push(Column {
                name: c.name.clone(),
                kind: c.kind,
                width,
                labels: c.labels.clone(),
                max: c.max,
                purposes: c.purposes.clone(),
                scale: c.scale,
                unit: c.unit.clone(),
                description: c.description.clone(),
                credential: c.credential,
            });
        }
        let consent = columns
            .iter()
            .filter(|c| c.kind == ColumnKind::Consent)
            .count();
        if consent != 1 {
            return Err(invalid(
                raw.name.span(),
                format!("a dataset needs exactly one consent column, found {consent}"),
            ));
        }
        let times: Vec<&Column> = columns
            .iter()
            .filter(|c| c.kind == ColumnKind::Time)
            .collect();
        if columns.iter().any(|c| c.credential == Some(Attested::Age))
            && !matches!(times[..], [time] if time.width <= TIME_BITS)
        {
            return Err(invalid(
                raw.name.span(),
                format!(
                    "a column attested as age needs exactly one time column of at most \
                     {TIME_BITS} bits: a row's age is the holder's at its time"
                ),
            ));
        }
        let units = columns
            .iter()
            .filter(|c| c.kind == ColumnKind::Unit)
            .count();
        if units > 1 {
            return Err(invalid(
                raw.name.span(),
                format!("a dataset has at most one unit column, found {units}"),
            ));
        }
        columns.push(Column {
            name: PRESENT.into(),
            kind: ColumnKind::Present,
            width: 1,
            labels: Vec::new(),
            max: None,
            purposes: Vec::new(),
            scale: None,
            unit: None,
            description: Some("1 for a real row, 0 for chunk padding".into()),
            credential: None,
        });
        let privacy = match &raw.privacy {
            None => {
                return Err(invalid(
                    raw.name.span(),
                    "no [privacy] section: declare mode = \"dp\" with rows_per_unit (the most \
                     rows one donor contributes), or mode = \"threshold-only\" for data about \
                     no one"
                        .into(),
                ))
            }
            Some(spanned) => {
                let fail = |message: String| Err(invalid(spanned.span(), message));
                let p = spanned.get_ref();
                match (p.mode.as_str(), p.rows_per_unit) {
                    ("threshold-only", None)
                        if p.unit_attributes.is_empty() && p.clip.is_empty() =>
                    {
                        Privacy::ThresholdOnly
                    }
                    ("threshold-only", _) => {
                        return fail(
                            "[privacy]: mode = \"threshold-only\" takes no unit bounds".into(),
                        )
                    }
                    ("dp", None) => {
                        return fail(
                            "[privacy]: mode = \"dp\" needs rows_per_unit, the most rows one \
                             donor contributes"
                                .into(),
                        )
                    }
                    ("dp", Some(rows)) => {
                        if !(1..=1 << 32).contains(&rows) {
                            return fail(format!(
                                "[privacy]: rows_per_unit = {rows} is outside 1..=2^32"
                            ));
                        }
                        for a in &p.unit_attributes {
                            match columns.iter().find(|c| c.name == *a) {
                                Some(c)
                                    if matches!(
                                        c.kind,
                                        ColumnKind::Dimension | ColumnKind::Attribute
                                    ) => {}
                                _ => {
                                    return fail(format!(
                                        "[privacy]: unit attribute `{a}` is not a dimension or \
                                         attribute column"
                                    ))
                                }
                            }
                        }
                        for (m, bound) in &p.clip {
                            match columns.iter().find(|c| c.name == *m) {
                                Some(c)
                                    if c.kind == ColumnKind::Measure
                                        && (1..=u64::MAX >> (64 - c.width)).contains(bound) => {}
                                _ => {
                                    return fail(format!(
                                        "[privacy]: clip {m} = {bound}: clip bounds are for \
                                         measure columns, from 1 to the column's largest value"
                                    ))
                                }
                            }
                        }
                        Privacy::Dp(UnitBounds {
                            rows_per_unit: rows,
                            unit_attributes: p.unit_attributes.clone(),
                            clip: p.clip.clone(),
                        })
                    }
                    (other, _) => {
                        return fail(format!(
                            "[privacy]: mode {other:?} is not \"dp\" or \"threshold-only\""
                        ))
                    }
                }
            }
        };
        let mut schema = Self {
            name,
            id: *raw.id.get_ref(),
            chunk_rows,
            columns,
            privacy,
            rollups: Vec::new(),
            source: text.to_string(),
        };
        schema
            .layout()
            .map_err(|e| invalid(raw.name.span(), e.to_string()))?;
        for spanned in &raw.rollups {
            let r = spanned.get_ref();
            let rollup = schema.check_rollup(r).map_err(|message| {
                invalid(spanned.span(), format!("roll-up `{}`: {message}", r.name))
            })?;
            schema.rollups.push(rollup);
        }
        Ok(schema)
    }

    /// A declared roll-up, validated against the columns and the earlier roll-ups.
    fn check_rollup(&self, r: &RollupFile) -> Result<Rollup, String> {
        if !is_identifier(&r.name) {
            return Err("the name is not an identifier".into());
        }
        if self.rollups.iter().any(|o| o.name == r.name) {
            return Err("declared twice".into());
        }
        if r.dimensions.is_empty() {
            return Err("needs at least one dimension".into());
        }
        let mut dimensions: Vec<RollupDimension> = Vec::new();
        for text in &r.dimensions {
            let d = RollupDimension::parse(text);
            let kind = self.column(d.column()).map(|(_, c)| c.kind);
            match (&d, kind) {
                (RollupDimension::Column(_), Some(ColumnKind::Dimension))
                | (RollupDimension::Bucket { .. }, Some(ColumnKind::Time)) => {}
                (RollupDimension::Column(c), _) => {
                    return Err(format!(
                        "dimension `{c}` is not a dimension column (or minute, hour, day or \
                         week of a time column: `day(time)`)"
                    ))
                }
                (RollupDimension::Bucket { column, .. }, _) => {
                    return Err(format!("`{text}`: `{column}` is not a time column"))
                }
            }
            if dimensions.iter().any(|o| o.column() == d.column()) {
                return Err(format!("column `{}` is in the key twice", d.column()));
            }
            dimensions.push(d);
        }
        for (i, m) in r.measures.iter().enumerate() {
            if !matches!(self.column(m), Some((_, c)) if c.kind == ColumnKind::Measure) {
                return Err(format!("`{m}` is not a measure column"));
            }
            if r.measures[..i].contains(m) {
                return Err(format!("measure `{m}` is listed twice"));
            }
        }
        let rollup = Rollup {
            name: r.name.clone(),
            dimensions,
            measures: r.measures.clone(),
        };
        self.rollup_shapes(&rollup, self.chunk_rows)
            .map_err(|e| e.to_string())?;
        Ok(rollup)
    }

    /// A roll-up as the circuits see it: its key and measures by column index, clipped
    /// on a `dp` dataset.
    pub fn rollup_circuit(&self, rollup: &Rollup) -> zkfabric_circuits::rollup::Rollup {
        use zkfabric_circuits::rollup::KeyPart;
        let index = |name: &str| self.column(name).map(|(i, _)| i).expect("validated");
        zkfabric_circuits::rollup::Rollup {
            key: rollup
                .dimensions
                .iter()
                .map(|d| match d {
                    RollupDimension::Column(c) => KeyPart::Column(index(c)),
                    RollupDimension::Bucket { column, bucket } => KeyPart::Bucket {
                        column: index(column),
                        seconds: bucket.seconds,
                        offset: bucket.offset,
                    },
                })
                .collect(),
            measures: rollup.measures.iter().map(|m| index(m)).collect(),
            clipped: matches!(self.privacy, Privacy::Dp(_)),
        }
    }

    /// The clip bound of each of a roll-up's measures on a `dp` dataset (a sealing's
    /// public parameters); none otherwise.
    pub fn rollup_clips(&self, rollup: &Rollup) -> Vec<u64> {
        match &self.privacy {
            Privacy::Dp(bounds) => rollup
                .measures
                .iter()
                .map(|m| bounds.clip_of(self, m))
                .collect(),
            Privacy::ThresholdOnly => Vec::new(),
        }
    }

    /// The stored columns of a roll-up's cells (the cells' layout but `present`): each
    /// key part under its column's name (a bucket holds its first instant), then per
    /// purpose `count:PURPOSE` and `MEASURE:PURPOSE` for each measure.
    pub fn cell_columns(&self, rollup: &Rollup) -> Vec<String> {
        let mut names: Vec<String> = rollup
            .dimensions
            .iter()
            .map(|d| d.column().to_string())
            .collect();
        for purpose in &self.columns[self.consent()].purposes {
            names.push(format!("count:{purpose}"));
            names.extend(rollup.measures.iter().map(|m| format!("{m}:{purpose}")));
        }
        names
    }

    /// The id a roll-up's cell chunks are committed under (in place of the dataset's):
    /// the dataset id with the roll-up's position, from 1, above bit 48, so that no cell
    /// chunk is another table's chunk.
    pub fn cells_table_id(&self, rollup: &Rollup) -> u64 {
        let position = self
            .rollups
            .iter()
            .position(|r| r.name == rollup.name)
            .expect("one of the schema's roll-ups");
        self.id | ((position as u64 + 1) << CELLS_TABLE_SHIFT)
    }

    /// A roll-up's chunk shapes and cell layout, with cell chunks of `cell_rows` rows.
    pub fn rollup_shapes(
        &self,
        rollup: &Rollup,
        cell_rows: usize,
    ) -> Result<zkfabric_circuits::rollup::RollupShapes, zkfabric_circuits::CircuitError> {
        self.rollup_circuit(rollup)
            .shapes(&self.layout()?, self.consent(), cell_rows)
    }

    /// What donors' credentials back in this dataset: the bound columns, and the
    /// positions of the time, age and residence columns a proof reads.
    pub fn attested(&self) -> AttestedColumns {
        let find = |a| self.columns.iter().position(|c| c.credential == Some(a));
        let age = find(Attested::Age);
        let residence = find(Attested::Residence);
        AttestedColumns {
            bound: Bound {
                age: age.is_some(),
                district: residence.is_some(),
            },
            time: age.and_then(|_| self.columns.iter().position(|c| c.kind == ColumnKind::Time)),
            age,
            residence,
        }
    }

    /// The privacy unit's column, if the dataset has one.
    pub fn unit(&self) -> Option<usize> {
        self.columns.iter().position(|c| c.kind == ColumnKind::Unit)
    }

    /// How this dataset's chunks are committed.
    pub fn layout(&self) -> Result<ChunkLayout, zkfabric_circuits::CircuitError> {
        let specs = self
            .columns
            .iter()
            .map(|c| match c.kind.is_packed() {
                true => ColumnSpec::narrow(c.width),
                false => ColumnSpec::wide(c.width),
            })
            .collect();
        ChunkLayout::new(specs, self.present(), self.chunk_rows)
    }

    /// Index of the implied `present` column (the last).
    pub fn present(&self) -> usize {
        self.columns.len() - 1
    }

    /// Index of the consent column.
    pub fn consent(&self) -> usize {
        self.columns
            .iter()
            .position(|c| c.kind == ColumnKind::Consent)
            .expect("validated: one consent column")
    }

    /// A column by name, with its index.
    pub fn column(&self, name: &str) -> Option<(usize, &Column)> {
        self.columns
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == name)
    }

    /// The declared columns (everything but `present`), as files carry them.
    pub fn declared(&self) -> &[Column] {
        &self.columns[..self.present()]
    }

    /// `sha256:` and the hex SHA-256 of the schema's TOML text.
    pub fn hash(&self) -> String {
        format!(
            "sha256:{}",
            hex::encode(Sha256::digest(self.source.as_bytes()))
        )
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_load_with_an_implied_present_column() {
        for name in Schema::builtin_names() {
            let s = Schema::builtin(name).unwrap();
            assert_eq!(s.name, name);
            assert_eq!(s.columns[s.present()].name, PRESENT);
            assert!(s.layout().is_ok());
        }
        let c = Schema::builtin("consumption").unwrap();
        let (_, district) = c.column("district").unwrap();
        assert_eq!(district.code_of("Daan"), Some(4));
        assert_eq!(district.code_of("4"), Some(4));
        assert_eq!(district.label_of(4), Some("Daan"));
        assert_eq!(c.columns[c.consent()].width, 3);
    }

    fn error(text: &str) -> String {
        Schema::parse("test.toml", text).unwrap_err().to_string()
    }

    const HEAD: &str = "name = \"t\"\nid = 9\nchunk_rows = 8\n";
    const CONSENT: &str =
        "[[columns]]\nname = \"consent\"\nkind = \"consent\"\npurposes = [\"a\"]\n";

    #[test]
    fn errors_name_the_line() {
        let wide =
            format!("{HEAD}{CONSENT}[[columns]]\nname = \"x\"\nkind = \"measure\"\nwidth = 65\n");
        assert_eq!(
            error(&wide),
            "test.toml line 8: column `x`: width 65 is outside 1..=64"
        );
        let labels = format!("{HEAD}[[columns]]\nname = \"d\"\nkind = \"dimension\"\nwidth = 1\nlabels = [\"a\", \"b\", \"c\"]\n{CONSENT}");
        assert_eq!(
            error(&labels),
            "test.toml line 4: column `d`: 3 labels do not fit 1 bits"
        );
        let twice = format!("{HEAD}{CONSENT}{CONSENT}");
        assert!(error(&twice).contains("line 8: column `consent`: declared twice"));
        let present = format!(
            "{HEAD}{CONSENT}[[columns]]\nname = \"present\"\nkind = \"present\"\nwidth = 1\n"
        );
        assert!(error(&present).contains("implied"));
        assert!(error(HEAD).contains("columns"));
        assert!(
            error(&format!("name = \"t\"\nid = 9\nchunk_rows = 6\n{CONSENT}"))
                .contains("line 3: chunk_rows = 6")
        );
        let colour = error(&format!(
            "{HEAD}[[columns]]\nname = \"a\"\nkind = \"colour\"\n"
        ));
        assert!(
            colour.contains("line 6") && colour.contains("colour"),
            "{colour}"
        );
        assert!(error(HEAD).starts_with("test.toml"));
    }

    #[test]
    fn credential_marks_bind_age_and_residence_and_are_checked() {
        let consumption = Schema::builtin("consumption").unwrap().attested();
        assert_eq!(
            consumption.bound,
            Bound {
                age: true,
                district: true
            }
        );
        let movement = Schema::builtin("movement").unwrap();
        assert_eq!(
            movement.attested().bound,
            Bound {
                age: true,
                district: false
            }
        );
        assert!(!Schema::builtin("signal").unwrap().attested().bound.any());
        let row = consumption.row(&[vec![100], vec![4], vec![7], vec![1], vec![41]], 0);
        assert_eq!((row.time, row.district, row.age), (100, 4, 41));

        let column = |name: &str, kind: &str, width: u32, credential: &str| {
            format!(
                "[[columns]]\nname = \"{name}\"\nkind = \"{kind}\"\nwidth = {width}\n\
                 credential = \"{credential}\"\n"
            )
        };
        let time = "[[columns]]\nname = \"time\"\nkind = \"time\"\nwidth = 32\n";
        let no_time = format!("{HEAD}{CONSENT}{}", column("age", "attribute", 7, "age"));
        assert!(
            error(&no_time).contains("needs exactly one time column"),
            "{}",
            error(&no_time)
        );
        let measure = format!(
            "{HEAD}{CONSENT}{time}{}",
            column("age", "measure", 7, "age")
        );
        assert!(error(&measure).contains("is for an attribute"));
        let wide = format!(
            "{HEAD}{CONSENT}{}",
            column("d", "dimension", 17, "residence")
        );
        assert!(error(&wide).contains("at most 16 bits"), "{}", error(&wide));
        let twice = format!(
            "{HEAD}{CONSENT}{}{}",
            column("d", "dimension", 4, "residence"),
            column("e", "dimension", 4, "residence")
        );
        assert!(error(&twice).contains("a second column attested"));
        let unknown = format!("{HEAD}{CONSENT}{}", column("d", "dimension", 4, "income"));
        assert!(error(&unknown).contains("income"));
    }

    #[test]
    fn rollups_are_declared_checked_and_named_in_errors() {
        let columns = "[[columns]]\nname = \"time\"\nkind = \"time\"\nwidth = 32\n\
                       [[columns]]\nname = \"d\"\nkind = \"dimension\"\nwidth = 4\n\
                       [[columns]]\nname = \"kwh\"\nkind = \"measure\"\nwidth = 24\n\
                       [privacy]\nmode = \"threshold-only\"\n";
        let with = |rollup: &str| format!("{HEAD}{CONSENT}{columns}[[rollups]]\n{rollup}");
        let schema = Schema::parse(
            "test.toml",
            &with("name = \"daily\"\ndimensions = [\"d\", \"day(time)\"]\nmeasures = [\"kwh\"]\n"),
        )
        .unwrap();
        assert_eq!(
            schema.rollups,
            vec![Rollup {
                name: "daily".into(),
                dimensions: vec![
                    RollupDimension::Column("d".into()),
                    RollupDimension::Bucket {
                        column: "time".into(),
                        bucket: TimeBucket::DAY
                    }
                ],
                measures: vec!["kwh".into()],
            }]
        );
        assert_eq!(schema.rollups[0].dimensions[1].to_string(), "day(time)");
        let shapes = schema.rollup_shapes(&schema.rollups[0], 8).unwrap();
        // One purpose: the cells hold the key, a count, a sum and present.
        assert_eq!(shapes.cell_layout().columns().len(), 5);
        assert_eq!(
            schema.cell_columns(&schema.rollups[0]),
            ["d", "time", "count:a", "kwh:a"]
        );
        assert_eq!(schema.cells_table_id(&schema.rollups[0]), 9 | 1 << 48);
        assert!(schema.rollup_clips(&schema.rollups[0]).is_empty());

        for (rollup, message) in [
            (
                "name = \"x y\"\ndimensions = [\"d\"]\n",
                "roll-up `x y`: the name is not an identifier",
            ),
            (
                "name = \"r\"\ndimensions = []\n",
                "roll-up `r`: needs at least one dimension",
            ),
            (
                "name = \"r\"\ndimensions = [\"kwh\"]\n",
                "roll-up `r`: dimension `kwh` is not a dimension column",
            ),
            (
                "name = \"r\"\ndimensions = [\"month(time)\"]\n",
                "dimension `month(time)` is not a dimension column",
            ),
            (
                "name = \"r\"\ndimensions = [\"day(d)\"]\n",
                "`day(d)`: `d` is not a time column",
            ),
            (
                "name = \"r\"\ndimensions = [\"d\", \"d\"]\n",
                "column `d` is in the key twice",
            ),
            (
                "name = \"r\"\ndimensions = [\"d\"]\nmeasures = [\"d\"]\n",
                "`d` is not a measure column",
            ),
            (
                "name = \"r\"\ndimensions = [\"d\"]\nmeasures = [\"kwh\", \"kwh\"]\n",
                "measure `kwh` is listed twice",
            ),
            (
                "name = \"r\"\ndimensions = [\"d\", \"minute(time)\", \"hour(time)\"]\n",
                "column `time` is in the key twice",
            ),
            (
                "name = \"r\"\ndimensions = [\"d\"]\ncolour = 1\n",
                "unknown field `colour`",
            ),
        ] {
            let e = error(&with(rollup));
            assert!(e.contains(message), "{e}");
        }
        let twice = format!(
            "{}[[rollups]]\nname = \"daily\"\ndimensions = [\"d\"]\n",
            with("name = \"daily\"\ndimensions = [\"d\"]\n")
        );
        assert!(
            error(&twice).contains("line 25: roll-up `daily`: declared twice"),
            "{}",
            error(&twice)
        );
    }
}
