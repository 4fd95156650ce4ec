//! Provable queries: what a SQL aggregate is lowered to, and the circuit shapes and
//! public parameters it means.
//!
//! A [`ProvableQuery`] is canonical: filters are merged per column and sorted, labels are
//! codes, and the group slots are every tuple of codes the grouping columns can hold, so the same
//! question always gives the same statement. The node lowers SQL to it (with DataFusion,
//! in the `zkfabric` crate); a verifier rebuilds the circuits' view of it from the bundle
//! with [`ProvableQuery::circuit`], and reads it to a person with
//! [`ProvableQuery::in_words`].

use zkfabric_circuits::{
    aggregate::{
        Aggregand as CircuitAggregand, AggregateQuery, AggregateShape, FilterParams, FilterShape,
        Grouping as KeyPart, Selection, TimeBucket as CircuitBucket, MAX_MEASURES,
    },
    combine::{CombineOutput, CombineParams, CombineShape},
    evaluation::{GroupColumn, GroupDomain, MAX_SLOTS},
    rollup::KeyPart as RollupKeyPart,
};

pub use crate::schema::TimeBucket;
use crate::{
    privacy::{Cost, NoisePlan},
    schema::{ColumnKind, Privacy, Rollup, Schema},
};

/// One filter on one column, ANDed with the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// The filtered column.
    pub column: String,
    /// Its test.
    pub test: Test,
}

/// What a filter asks of a column's value (codes, not labels).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Test {
    /// `lo <= value <= hi` (`lo > hi` selects nothing).
    Range { lo: u64, hi: u64 },
    /// `value IN (items)`, 1 to L distinct items in ascending order.
    In(Vec<u64>),
    /// The value lies in one of 2 to [`MAX_RANGES`] ranges, ascending and apart: what
    /// `<>`, `NOT IN` and ORed conditions on one column come to.
    Ranges(Vec<(u64, u64)>),
}

/// Most ranges one filter's union may hold (each costs a row two range checks).
pub const MAX_RANGES: usize = 4;

/// One entry of GROUP BY: a dimension's codes, or a time column's buckets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grouping {
    /// The column grouped on.
    pub column: String,
    /// For a time column, its buckets (`None`: the column's codes, for a dimension).
    pub bucket: Option<TimeBucket>,
}

impl Grouping {
    /// Grouping on a dimension's codes.
    pub fn column(name: &str) -> Self {
        Self {
            column: name.to_string(),
            bucket: None,
        }
    }
}

impl std::fmt::Display for Grouping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.bucket {
            None => write!(f, "{}", self.column),
            Some(b) => write!(f, "{} by {}", self.column, b.unit()),
        }
    }
}

/// The buckets a query's GROUP BY makes of a time column: from `origin` (the start of
/// bucket 0), `codes` of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketSpan {
    /// The start of bucket 0.
    pub origin: i64,
    /// How many buckets: those that hold a value the query's filters on the column allow.
    pub codes: u64,
}

/// What each selected row adds to its group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Aggregand {
    /// Nothing: only COUNT(*) is asked.
    CountOnly,
    /// SUM (and AVG) of these 1 to [`MAX_MEASURES`] measure columns, each its own sum.
    Sum(Vec<String>),
    /// The number of selected rows with `lo <= column <= hi`: `bool_or(cmp)` is "at least
    /// one", `bool_and(cmp)` is "none meets the negated comparison" (`negate`).
    CountWhere {
        column: String,
        lo: u64,
        hi: u64,
        negate: bool,
    },
}

/// What an output column of the answer shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// The code of the grouping column at this position of GROUP BY (its label when the
    /// column has a dictionary).
    GroupKey(usize),
    /// COUNT(*).
    Count,
    /// SUM of the aggregand's measure at this position.
    Sum(usize),
    /// AVG of the aggregand's measure at this position: SUM divided by COUNT, by whoever
    /// reads the answer.
    Avg(usize),
    /// bool_and / bool_or.
    Predicate,
    /// Arithmetic between aggregates (`SUM(kwh) / COUNT(*)`), evaluated after the proofs
    /// by whoever reads the answer.
    Arithmetic(Arithmetic),
}

/// Arithmetic between aggregates and integer literals: evaluated in real numbers over the
/// released values as the answer shows them (a measure in its unit, kWh rather than the
/// stored kWh x 1000), never inside a proof; a division by zero is null.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arithmetic {
    /// COUNT(*), or the SUM or AVG of a measure ([`OutputKind::Count`], `Sum`, `Avg`).
    Aggregate(Box<OutputKind>),
    /// An integer literal.
    Literal(i64),
    /// `left op right`.
    Binary {
        op: ArithmeticOp,
        left: Box<Arithmetic>,
        right: Box<Arithmetic>,
    },
}

/// The four operators of [`Arithmetic`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithmeticOp {
    Add,
    Subtract,
    Multiply,
    Divide,
}

impl ArithmeticOp {
    /// Every operator.
    pub const ALL: [ArithmeticOp; 4] = [Self::Add, Self::Subtract, Self::Multiply, Self::Divide];

    /// Its SQL symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Add => "+",
            Self::Subtract => "-",
            Self::Multiply => "*",
            Self::Divide => "/",
        }
    }
}

impl Arithmetic {
    /// The aggregates it reads.
    pub fn aggregates(&self) -> Vec<&OutputKind> {
        match self {
            Self::Aggregate(kind) => vec![kind],
            Self::Literal(_) => Vec::new(),
            Self::Binary { left, right, .. } => {
                let mut all = left.aggregates();
                all.extend(right.aggregates());
                all
            }
        }
    }

    /// Its value from the values of its aggregates (`None`: unknown, or a division by
    /// zero).
    pub fn evaluate(&self, aggregate: &impl Fn(&OutputKind) -> Option<f64>) -> Option<f64> {
        match self {
            Self::Aggregate(kind) => aggregate(kind),
            Self::Literal(v) => Some(*v as f64),
            Self::Binary { op, left, right } => {
                let (l, r) = (left.evaluate(aggregate)?, right.evaluate(aggregate)?);
                match op {
                    ArithmeticOp::Add => Some(l + r),
                    ArithmeticOp::Subtract => Some(l - r),
                    ArithmeticOp::Multiply => Some(l * r),
                    ArithmeticOp::Divide => (r != 0.0).then(|| l / r),
                }
            }
        }
    }

    /// It in words, with `name` for each aggregate.
    pub fn describe(&self, name: &impl Fn(&OutputKind) -> String) -> String {
        match self {
            Self::Aggregate(kind) => name(kind),
            Self::Literal(v) => v.to_string(),
            Self::Binary { op, left, right } => format!(
                "({} {} {})",
                left.describe(name),
                op.symbol(),
                right.describe(name)
            ),
        }
    }
}

/// One output column, in SELECT order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// The name SQL gives it (its alias, or the expression).
    pub name: String,
    /// What it shows.
    pub kind: OutputKind,
}

/// A query the circuits can prove, in canonical form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvableQuery {
    /// The consent purpose every counted row must have.
    pub purpose: String,
    /// Filters, one per column and kind, sorted by column position.
    pub filters: Vec<Filter>,
    /// The groupings, in GROUP BY order (empty: one group).
    pub group_by: Vec<Grouping>,
    /// What is added up.
    pub aggregand: Aggregand,
    /// Output columns in SELECT order.
    pub outputs: Vec<Output>,
    /// What the released table goes through before it is shown: HAVING, ORDER BY and
    /// LIMIT, over released values only (see [`crate::view`]).
    pub post: PostProcessing,
}

/// HAVING, ORDER BY and LIMIT: applied to the released table by whoever shows it, node
/// and verifier alike, never inside a proof.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PostProcessing {
    /// Conditions a released group must meet to be shown, ANDed.
    pub having: Vec<Having>,
    /// Sort keys, most significant first; ties keep group-slot order.
    pub order_by: Vec<OrderKey>,
    /// Most rows shown.
    pub limit: Option<u64>,
}

/// A HAVING condition: an aggregate output compared with an integer (in stored units).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Having {
    /// The output compared (a COUNT, SUM or AVG column).
    pub output: usize,
    /// How.
    pub comparison: Comparison,
    /// With what.
    pub value: i64,
}

/// A comparison operator of HAVING, by its SQL symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

impl Comparison {
    /// Every operator with its symbol.
    pub const ALL: [(Comparison, &'static str); 6] = [
        (Comparison::Eq, "="),
        (Comparison::NotEq, "<>"),
        (Comparison::Lt, "<"),
        (Comparison::LtEq, "<="),
        (Comparison::Gt, ">"),
        (Comparison::GtEq, ">="),
    ];

    /// Its SQL symbol.
    pub fn symbol(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(c, _)| *c == self)
            .expect("listed")
            .1
    }
}

/// One ORDER BY key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderKey {
    /// The output sorted on.
    pub output: usize,
    /// Largest first.
    pub descending: bool,
    /// Suppressed values (SQL's nulls) first; SQL's default is first when descending.
    pub nulls_first: bool,
}

/// Most group slots any query has: the product of its grouping columns' codes.
pub const MAX_GROUPS: usize = MAX_SLOTS;

/// Most items of any IN list.
pub const MAX_IN_ITEMS: usize = 64;

/// The slots `L` of an IN filter with `items` items: the next power of two, so that a
/// short list costs a row few constraints and few shapes need keys.
pub fn in_list_slots(items: usize) -> usize {
    items.next_power_of_two()
}

/// Sizes that fix the circuit shapes, and so the keys; a node's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most items of an IN list (at most [`MAX_IN_ITEMS`]); its filter has
    /// [`in_list_slots`] slots.
    pub in_list: usize,
    /// Most group slots `G` (at most [`MAX_GROUPS`]): GROUP BY takes columns whose codes
    /// make at most this many tuples.
    pub max_groups: usize,
    /// Input slots `K` of a combine.
    pub combine_inputs: usize,
    /// Minimum group size `k`: smaller groups are suppressed.
    pub min_group_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            in_list: MAX_IN_ITEMS,
            max_groups: MAX_GROUPS,
            combine_inputs: 8,
            min_group_size: 10,
        }
    }
}

/// Why a provable query does not fit a dataset (a bundle naming unknown columns, say).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(pub String);

/// The circuits' view of a query over one dataset: the chunk circuit's shape and public
/// parameters, and the root combine's shape and parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct CircuitQuery {
    /// Shape of every chunk proof.
    pub chunk_shape: AggregateShape,
    /// Public parameters of every chunk proof (all but the challenge).
    pub chunk_query: AggregateQuery,
    /// Shape of the root combine (Release, Predicate or Noisy): its domain holds the
    /// group slots. Inner combines are [`CombineShape::subtotal`]s.
    pub root_shape: CombineShape,
    /// Public parameters of the root combine (for a noisy root, the prover adds the
    /// noise seed).
    pub combine_params: CombineParams,
    /// How a `dp` dataset's answer is noised; `None` for a threshold-only one.
    pub noise: Option<NoisePlan>,
}

impl CircuitQuery {
    /// The same query answered from `rollup`'s cells: each cell chunk's proof adds the
    /// cells that pass the filters, weighted by the purpose's count column, summing the
    /// purpose's sum columns (clipped at sealing on a `dp` dataset, as the rows' proofs
    /// clip), grouped by the same key; the root, its domain and the noise are the rows'.
    /// Refused, naming what the roll-up lacks, unless its key holds every filtered and
    /// grouped column (a filter on a bucketed time column on bucket boundaries, a time
    /// bucket a whole number of the roll-up's, aligned with them) and its measures every
    /// summed one. A counted condition reads rows: never from cells.
    pub fn over_rollup(
        &self,
        schema: &Schema,
        rollup: &Rollup,
    ) -> Result<CircuitQuery, ShapeError> {
        let name = &rollup.name;
        let bad = |m: String| Err(ShapeError(format!("roll-up `{name}`: {m}")));
        let shapes = schema
            .rollup_shapes(rollup, schema.chunk_rows)
            .map_err(|e| ShapeError(e.to_string()))?;
        let key = schema.rollup_circuit(rollup).key;
        let raw = &self.chunk_shape;
        let column_name = |c: usize| schema.columns[c].name.clone();
        let Selection::Purpose { .. } = raw.selection else {
            return bad("the query selects rows by no purpose".into());
        };
        let purpose = self.chunk_query.purpose as usize;
        let position = |column: usize, what: &str| {
            key.iter()
                .position(|k| k.column() == column)
                .ok_or_else(|| {
                    ShapeError(format!(
                        "roll-up `{name}`: {what} `{}` is not in its key",
                        column_name(column)
                    ))
                })
        };
        let mut filters = Vec::with_capacity(raw.filters.len());
        for (f, p) in raw.filters.iter().zip(&self.chunk_query.filters) {
            let at = position(f.column(), "the filtered column")?;
            if let RollupKeyPart::Bucket {
                seconds, offset, ..
            } = key[at]
            {
                // Cells keep a bucket's first instant: a range must take whole buckets.
                let max = schema.columns[f.column()].max_code();
                let starts = |t: u64| {
                    (i128::from(t) - i128::from(offset)).rem_euclid(i128::from(seconds)) == 0
                };
                let aligned = |lo: u64, hi: u64| starts(lo) && (hi == max || starts(hi + 1));
                let ok = match p {
                    FilterParams::Range { lo, hi } => aligned(*lo, *hi),
                    FilterParams::Ranges(ranges) => ranges.iter().all(|&(lo, hi)| aligned(lo, hi)),
                    FilterParams::In(_) => false,
                };
                if !ok {
                    return bad(format!(
                        "the filter on `{}` does not take whole buckets of {seconds} s",
                        column_name(f.column())
                    ));
                }
            }
            filters.push(match *f {
                FilterShape::Range { .. } => FilterShape::Range { column: at },
                FilterShape::In { len, .. } => FilterShape::In { column: at, len },
                FilterShape::Ranges { count, .. } => FilterShape::Ranges { column: at, count },
            });
        }
        let mut group_by = Vec::with_capacity(raw.group_by.len());
        let mut origins = self.chunk_query.origins.iter();
        for g in &raw.group_by {
            let at = position(g.column(), "the grouped column")?;
            group_by.push(match (*g, key[at]) {
                (KeyPart::Column(_), RollupKeyPart::Column(_)) => KeyPart::Column(at),
                (
                    KeyPart::Bucket(b),
                    RollupKeyPart::Bucket {
                        seconds, offset, ..
                    },
                ) => {
                    let origin = *origins.next().expect("one origin a bucket");
                    let aligned = (i128::from(origin) - i128::from(offset))
                        .rem_euclid(i128::from(seconds))
                        == 0;
                    if b.seconds % seconds != 0 || !aligned {
                        return bad(format!(
                            "buckets of {} s are not whole buckets of its {seconds} s",
                            b.seconds
                        ));
                    }
                    KeyPart::Bucket(CircuitBucket { column: at, ..b })
                }
                _ => {
                    return bad(format!(
                        "`{}` is grouped otherwise in its key",
                        column_name(g.column())
                    ))
                }
            });
        }
        let measure = |column: usize| {
            rollup
                .measures
                .iter()
                .position(|m| *m == schema.columns[column].name)
                .map(|m| shapes.sum_column(purpose, m))
                .ok_or_else(|| {
                    ShapeError(format!(
                        "roll-up `{name}`: `{}` is not among its measures",
                        column_name(column)
                    ))
                })
        };
        let aggregand = match &raw.aggregand {
            CircuitAggregand::CountOnly => CircuitAggregand::CountOnly,
            CircuitAggregand::Sum { columns } | CircuitAggregand::ClippedSum { columns } => {
                CircuitAggregand::Sum {
                    columns: columns
                        .iter()
                        .map(|&c| measure(c))
                        .collect::<Result<_, _>>()?,
                }
            }
            CircuitAggregand::CountWhere { .. } => {
                return bad("a counted condition (bool_and, bool_or) reads rows, not cells".into())
            }
        };
        let chunk_shape = AggregateShape {
            layout: shapes.cell_layout().clone(),
            selection: Selection::Present,
            filters,
            group_by,
            aggregand,
            weight: Some(shapes.count_column(purpose)),
        };
        let chunk_query = AggregateQuery {
            purpose: 0,
            filters: self.chunk_query.filters.clone(),
            condition: None,
            clips: Vec::new(),
            origins: self.chunk_query.origins.clone(),
        };
        chunk_query
            .validate(&chunk_shape)
            .map_err(|e| ShapeError(e.to_string()))?;
        Ok(CircuitQuery {
            chunk_shape,
            chunk_query,
            ..self.clone()
        })
    }
}

impl ProvableQuery {
    /// The query in words, with labels for codes, so that a verifier without the SQL
    /// planner can see what the proofs are about: the outputs, the rows counted (purpose
    /// and filters) and the grouping.
    pub fn in_words(&self, schema: &Schema) -> String {
        let value = |column: &str, code: u64| {
            schema
                .column(column)
                .and_then(|(_, c)| c.label_of(code))
                .map_or_else(|| code.to_string(), |label| format!("'{label}'"))
        };
        let describe = |kind: &OutputKind, name: &str| -> String {
            match (kind, &self.aggregand) {
                (OutputKind::GroupKey(_), _) => format!("the {name} of each group"),
                (OutputKind::Count, _) => "the number of rows".to_string(),
                (OutputKind::Sum(i), Aggregand::Sum(m)) if *i < m.len() => {
                    format!("the sum of {}", m[*i])
                }
                (OutputKind::Avg(i), Aggregand::Sum(m)) if *i < m.len() => {
                    format!("the average of {}", m[*i])
                }
                (
                    OutputKind::Predicate,
                    Aggregand::CountWhere {
                        column,
                        lo,
                        hi,
                        negate,
                    },
                ) => format!(
                    "whether {} row has {} <= {column} <= {}",
                    if *negate { "no" } else { "at least one" },
                    value(column, *lo),
                    value(column, *hi)
                ),
                _ => format!("`{name}` (which does not fit the aggregand)"),
            }
        };
        let outputs: Vec<String> = self
            .outputs
            .iter()
            .map(|o| match &o.kind {
                OutputKind::Arithmetic(a) => {
                    a.describe(&|kind: &OutputKind| describe(kind, &o.name))
                }
                kind => describe(kind, &o.name),
            })
            .collect();
        let mut text = format!(
            "{} over the rows consented to {:?}",
            outputs.join(", "),
            self.purpose
        );
        for (n, f) in self.filters.iter().enumerate() {
            text.push_str(if n == 0 { " with " } else { " and " });
            let range = |lo: u64, hi: u64| {
                format!(
                    "{} <= {} <= {}",
                    value(&f.column, lo),
                    f.column,
                    value(&f.column, hi)
                )
            };
            text.push_str(&match &f.test {
                Test::Range { lo, hi } if lo > hi => format!("{} in no range (no row)", f.column),
                Test::Range { lo, hi } => range(*lo, *hi),
                Test::Ranges(ranges) => format!(
                    "({})",
                    ranges
                        .iter()
                        .map(|&(lo, hi)| range(lo, hi))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
                Test::In(items) => format!(
                    "{} in ({})",
                    f.column,
                    items
                        .iter()
                        .map(|c| value(&f.column, *c))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        if !self.group_by.is_empty() {
            let groupings: Vec<String> = self.group_by.iter().map(Grouping::to_string).collect();
            text.push_str(&format!(", grouped by {}", groupings.join(", ")));
        }
        let name = |output: usize| {
            self.outputs
                .get(output)
                .map_or_else(|| format!("output {output}"), |o| o.name.clone())
        };
        for (n, h) in self.post.having.iter().enumerate() {
            text.push_str(if n == 0 {
                ", showing groups with "
            } else {
                " and "
            });
            text.push_str(&format!(
                "{} {} {}",
                name(h.output),
                h.comparison.symbol(),
                h.value
            ));
        }
        for (n, k) in self.post.order_by.iter().enumerate() {
            text.push_str(if n == 0 { ", ordered by " } else { ", " });
            text.push_str(&name(k.output));
            if k.descending {
                text.push_str(" descending");
            }
        }
        if let Some(limit) = self.post.limit {
            text.push_str(&format!(", the first {limit} rows"));
        }
        text
    }

    /// How a group slot's codes read: per grouping, its label, a time bucket's start
    /// ([`TimeBucket::label`]), or the code in decimal for a column without labels.
    pub fn group_labels(&self, schema: &Schema, codes: &[u64]) -> Vec<String> {
        self.group_by
            .iter()
            .zip(codes)
            .map(|(g, &code)| match &g.bucket {
                Some(bucket) => {
                    let origin = self.bucket_span(schema, &g.column, bucket).origin;
                    let start = i128::from(origin) + i128::from(code) * i128::from(bucket.seconds);
                    TimeBucket::label(i64::try_from(start).unwrap_or(i64::MAX))
                }
                None => schema
                    .column(&g.column)
                    .and_then(|(_, c)| c.label_of(code))
                    .map_or_else(|| code.to_string(), str::to_string),
            })
            .collect()
    }

    /// The buckets of `column` this query groups on: from the bucket of the smallest
    /// value its filters on the column allow to that of the largest (the column's whole
    /// range without a filter on it).
    pub fn bucket_span(&self, schema: &Schema, column: &str, bucket: &TimeBucket) -> BucketSpan {
        let max = schema.column(column).map_or(0, |(_, c)| c.max_code());
        let (lo, hi) = match self
            .filters
            .iter()
            .find(|f| f.column == column)
            .map(|f| &f.test)
        {
            None => (0, max),
            Some(Test::Range { lo, hi }) => (*lo, *hi),
            Some(Test::In(items)) => (
                items.iter().copied().min().unwrap_or(0),
                items.iter().copied().max().unwrap_or(0),
            ),
            Some(Test::Ranges(ranges)) => (
                ranges.iter().map(|r| r.0).min().unwrap_or(0),
                ranges.iter().map(|r| r.1).max().unwrap_or(0),
            ),
        };
        let origin = bucket.start(i128::from(lo));
        let codes = if lo > hi {
            1
        } else {
            (i128::from(hi) - origin) / i128::from(bucket.seconds) + 1
        };
        BucketSpan {
            origin: i64::try_from(origin).unwrap_or(i64::MIN),
            codes: u64::try_from(codes).unwrap_or(u64::MAX),
        }
    }

    /// The circuit shapes and public parameters of this query over `schema`, under
    /// `limits`.
    ///
    /// A `dp` dataset's answer costs `cost` (required) and its root combine is noisy; a
    /// threshold-only dataset's answer is exact and takes no cost.
    pub fn circuit(
        &self,
        schema: &Schema,
        limits: &Limits,
        cost: Option<Cost>,
    ) -> Result<CircuitQuery, ShapeError> {
        let bad = |m: String| ShapeError(m);
        let index = |name: &str| {
            schema
                .column(name)
                .filter(|(i, _)| *i < schema.declared().len())
                .map(|(i, _)| i)
                .ok_or_else(|| bad(format!("dataset {} has no column `{name}`", schema.name)))
        };
        let consent = &schema.columns[schema.consent()];
        let purpose = consent
            .purposes
            .iter()
            .position(|p| *p == self.purpose)
            .ok_or_else(|| {
                bad(format!(
                    "dataset {} has no purpose `{}` (purposes: {})",
                    schema.name,
                    self.purpose,
                    consent.purposes.join(", ")
                ))
            })? as u32;
        let mut filters = Vec::new();
        let mut params = Vec::new();
        for f in &self.filters {
            let column = index(&f.column)?;
            match &f.test {
                Test::Range { lo, hi } => {
                    filters.push(FilterShape::Range { column });
                    params.push(FilterParams::Range { lo: *lo, hi: *hi });
                }
                Test::In(items) => {
                    let most = limits.in_list.min(MAX_IN_ITEMS);
                    if items.len() > most {
                        return Err(bad(format!(
                            "IN list on `{}` has {} values; at most {most}",
                            f.column,
                            items.len(),
                        )));
                    }
                    filters.push(FilterShape::In {
                        column,
                        len: in_list_slots(items.len()),
                    });
                    params.push(FilterParams::In(items.clone()));
                }
                Test::Ranges(ranges) => {
                    if !(2..=MAX_RANGES).contains(&ranges.len()) {
                        return Err(bad(format!(
                            "a filter on `{}` of {} ranges; a union has 2 to {MAX_RANGES}",
                            f.column,
                            ranges.len()
                        )));
                    }
                    filters.push(FilterShape::Ranges {
                        column,
                        count: ranges.len(),
                    });
                    params.push(FilterParams::Ranges(ranges.clone()));
                }
            }
        }
        let layout = schema
            .layout()
            .map_err(|e| bad(format!("dataset {}: {e}", schema.name)))?;
        // The group slots: every tuple of codes the groupings may hold (a dimension's
        // codes, the buckets a time filter spans).
        let mut group_by: Vec<KeyPart> = Vec::new();
        let mut origins = Vec::new();
        let mut domain = GroupDomain::default();
        for g in &self.group_by {
            let column = index(&g.column)?;
            if group_by.iter().any(|part| part.column() == column) {
                return Err(bad(format!("GROUP BY `{}` twice", g.column)));
            }
            let kind = schema.columns[column].kind;
            let (part, codes) = match &g.bucket {
                None if kind == ColumnKind::Dimension => (
                    KeyPart::Column(column),
                    schema.columns[column].max_code() + 1,
                ),
                None => return Err(bad(format!("GROUP BY `{}`: not a dimension", g.column))),
                Some(bucket) if kind == ColumnKind::Time => {
                    if bucket.seconds == 0 || bucket.offset >= bucket.seconds {
                        return Err(bad(format!(
                            "GROUP BY `{g}`: buckets of {} s offset by {} s (a bucket is at \
                             least 1 s, its offset below its length)",
                            bucket.seconds, bucket.offset
                        )));
                    }
                    let span = self.bucket_span(schema, &g.column, bucket);
                    origins.push(span.origin);
                    let width = (u64::BITS - (span.codes.max(2) - 1).leading_zeros()).min(64);
                    let part = KeyPart::Bucket(CircuitBucket {
                        column,
                        seconds: bucket.seconds,
                        width,
                    });
                    (part, span.codes)
                }
                Some(_) => return Err(bad(format!("GROUP BY `{g}`: not a time column"))),
            };
            domain.columns.push(GroupColumn {
                width: part.width(&layout),
                codes,
            });
            group_by.push(part);
        }
        let max_groups = limits.max_groups.min(MAX_GROUPS);
        domain
            .columns
            .iter()
            .try_fold(1u128, |n, c| {
                Some(n * u128::from(c.codes)).filter(|n| *n <= max_groups as u128)
            })
            .ok_or_else(|| {
                let groupings: Vec<String> =
                    self.group_by.iter().map(Grouping::to_string).collect();
                let buckets = self.group_by.iter().any(|g| g.bucket.is_some());
                bad(format!(
                    "GROUP BY {}: at most {max_groups} groups (the product of the columns' \
                     codes{})",
                    groupings.join(", "),
                    if buckets {
                        " and the time buckets the WHERE clause's range on the time column spans"
                    } else {
                        ""
                    }
                ))
            })?;
        if limits.min_group_size == 0 {
            return Err(bad(
                "minimum group size 0: k is at least 1, so that no group of zero rows is \
                 released and no predicate over zero rows holds"
                    .into(),
            ));
        }
        let groups = domain.slots();
        let (aggregand, condition, output, threshold) = match &self.aggregand {
            Aggregand::CountOnly => (CircuitAggregand::CountOnly, None, CombineOutput::Release, 0),
            Aggregand::Sum(measures) => {
                if !(1..=MAX_MEASURES).contains(&measures.len()) {
                    return Err(bad(format!(
                        "{} measures summed; a query sums 1 to {MAX_MEASURES}",
                        measures.len()
                    )));
                }
                let mut columns = Vec::new();
                for m in measures {
                    let column = index(m)?;
                    if schema.columns[column].kind != ColumnKind::Measure {
                        return Err(bad(format!("SUM({m}): `{m}` is not a measure")));
                    }
                    if columns.contains(&column) {
                        return Err(bad(format!("SUM({m}) twice in the aggregand")));
                    }
                    columns.push(column);
                }
                (
                    CircuitAggregand::Sum { columns },
                    None,
                    CombineOutput::Release,
                    0,
                )
            }
            Aggregand::CountWhere { column, lo, hi, .. } => (
                CircuitAggregand::CountWhere {
                    column: index(column)?,
                },
                Some((*lo, *hi)),
                CombineOutput::Predicate,
                1,
            ),
        };
        let noise = match (&schema.privacy, cost) {
            (Privacy::Dp(bounds), Some(cost)) => {
                Some(NoisePlan::new(schema, bounds, self, groups, cost).map_err(|e| bad(e.0))?)
            }
            (Privacy::Dp(_), None) => {
                return Err(bad(format!(
                    "dataset {} answers with differential privacy: the query needs an \
                     epsilon and a delta",
                    schema.name
                )))
            }
            (Privacy::ThresholdOnly, Some(_)) => {
                return Err(bad(format!(
                    "dataset {} is threshold-only: its answers are exact and cost no epsilon",
                    schema.name
                )))
            }
            (Privacy::ThresholdOnly, None) => None,
        };
        let output = match &noise {
            Some(plan) => CombineOutput::Noisy { coins: plan.coins },
            None => output,
        };
        // A noisy sum adds each row clipped to its bound, so that one unit moves it by at
        // most the plan's sum step.
        let (aggregand, clips) = match (&schema.privacy, aggregand, &self.aggregand) {
            (Privacy::Dp(bounds), CircuitAggregand::Sum { columns }, Aggregand::Sum(m)) => (
                CircuitAggregand::ClippedSum { columns },
                m.iter().map(|m| bounds.clip_of(schema, m)).collect(),
            ),
            (_, aggregand, _) => (aggregand, Vec::new()),
        };
        let chunk_shape = AggregateShape {
            layout,
            selection: Selection::Purpose {
                consent: schema.consent(),
            },
            filters,
            group_by,
            aggregand,
            weight: None,
        };
        let chunk_query = AggregateQuery {
            purpose,
            filters: params,
            condition,
            clips,
            origins,
        };
        chunk_query
            .validate(&chunk_shape)
            .map_err(|e| bad(e.to_string()))?;
        let sums = chunk_shape.aggregand.sums();
        let root_shape = CombineShape {
            inputs: limits.combine_inputs,
            domain,
            sums,
            output,
        };
        root_shape.validate().map_err(|e| bad(e.to_string()))?;
        Ok(CircuitQuery {
            chunk_shape,
            chunk_query,
            root_shape,
            combine_params: CombineParams {
                min_group_size: limits.min_group_size,
                threshold,
                noise: None,
            },
            noise,
        })
    }
}
