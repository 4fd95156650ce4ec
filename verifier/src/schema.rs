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
        let schema = Self {
            name,
            id: *raw.id.get_ref(),
            chunk_rows,
            columns,
            privacy,
            source: text.to_string(),
        };
        schema
            .layout()
            .map_err(|e| invalid(raw.name.span(), e.to_string()))?;
        Ok(schema)
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
}
