//! From SQL to a [`ProvableQuery`]: DataFusion parses and plans the SQL over the epoch's
//! table, and the optimized logical plan is lowered into the canonical provable form, or
//! refused with the construct named.
//!
//! Dictionary labels are replaced by their codes in the SQL's syntax tree before
//! planning (`district = 'Daan'` becomes `district = 3`), so DataFusion only ever compares
//! integers. Conditions on one column (comparisons, BETWEEN, IN, and AND, OR and NOT of
//! them) come to a set of its codes, stated as one range, an IN list or a union of
//! ranges; an OR across columns is refused.

use std::{collections::BTreeMap, ops::ControlFlow, sync::Arc};

use datafusion::{
    arrow::datatypes::DataType,
    common::tree_node::{TreeNode, TreeNodeRecursion},
    common::{Column as PlanColumn, ScalarValue},
    datasource::MemTable,
    error::DataFusionError,
    execution::SessionStateBuilder,
    logical_expr::{
        expr::{AggregateFunction, Alias, InList},
        utils::split_conjunction,
        Aggregate, Between, BinaryExpr, Cast, Expr, FetchType, Filter as PlanFilter, LogicalPlan,
        Operator, Projection, SkipType, Sort as PlanSort, TableScan, TryCast,
    },
    prelude::SessionContext,
    sql::{
        parser::Statement,
        sqlparser::ast::{self as sqlast, visit_expressions_mut, Value, ValueWithSpan},
    },
};

mod codes;

use codes::Codes;

use crate::circuits::aggregate::MAX_MEASURES;
use crate::verifier::query::{
    Aggregand, Arithmetic, ArithmeticOp, Comparison, Filter, Grouping, Having, OrderKey, Output,
    OutputKind, PostProcessing, ProvableQuery, Test, TimeBucket, MAX_IN_ITEMS, MAX_RANGES,
};
use crate::{
    shared::records,
    verifier::schema::{Column, ColumnKind, Schema},
};

/// What a provable query may contain, for error messages.
pub const SUPPORTED: &str = "a provable query is SELECT of COUNT(*), SUM(measure), \
    AVG(measure), or one bool_and/bool_or(column <op> literal), optionally with the grouping \
    column, FROM one dataset table, WHERE an AND of conditions on one column each (=, <>, <, \
    <=, >, >=, BETWEEN, IN and NOT IN between a column and literals, or to_timestamp(time) \
    and instants, ORed or negated), GROUP \
    BY up to three dimension columns or time buckets (date_trunc('minute'|'hour'|'day'|'week', \
    to_timestamp(time)), date_bin(INTERVAL '15 minutes', to_timestamp(time))), HAVING \
    comparisons of an output aggregate with an integer, ORDER BY output columns, LIMIT";

/// Most columns a GROUP BY may name.
const MAX_GROUP_COLUMNS: usize = 3;

/// The longest SQL text a query, a request or a bundle may carry: 64 KiB. Longer text
/// is refused before it is parsed, so no request or bundle costs more than that.
pub const MAX_SQL_BYTES: usize = 64 * 1024;

/// `sql` in canonical form: parsed and printed again, so that comments, spacing and
/// letter case of keywords are gone. A bundle carries its SQL in this form, and a
/// verifier refuses any other: text beside the proven query could carry anything.
pub fn canonical(sql: &str) -> Result<String, QueryError> {
    check_length(sql)?;
    let statements = datafusion::sql::parser::DFParser::parse_sql(sql)?;
    match statements.len() {
        1 => Ok(statements[0].to_string()),
        n => unsupported(format!("{n} statements (a query is one)")),
    }
}

fn check_length(sql: &str) -> Result<(), QueryError> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(QueryError::Invalid(format!(
            "the SQL is {} bytes; a query has at most {MAX_SQL_BYTES}",
            sql.len()
        )));
    }
    Ok(())
}

/// Why a query cannot be proven.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The SQL does not parse or plan.
    #[error("SQL: {0}")]
    Sql(#[from] DataFusionError),
    /// A construct outside what the circuits prove.
    #[error("{construct} is not supported; {SUPPORTED}")]
    Unsupported {
        /// The construct, as the user wrote it or DataFusion planned it.
        construct: String,
    },
    /// A label not in the column's dictionary.
    #[error("`{column}` has no label {label:?} (labels: {labels})")]
    UnknownLabel {
        column: String,
        label: String,
        labels: String,
    },
    /// Something the dataset does not have, or a purpose it does not know.
    #[error("{0}")]
    Invalid(String),
}

fn unsupported<T>(construct: impl Into<String>) -> Result<T, QueryError> {
    Err(QueryError::Unsupported {
        construct: construct.into(),
    })
}

/// The one dataset table `sql` reads.
pub fn table_of(ctx: &SessionContext, sql: &str) -> Result<String, QueryError> {
    check_length(sql)?;
    let state = ctx.state();
    let statement = state.sql_to_statement(sql, &Default::default())?;
    let tables = state.resolve_table_references(&statement)?;
    match tables.as_slice() {
        [table] => Ok(table.table().to_string()),
        [] => unsupported("a query that reads no dataset table"),
        _ => unsupported("a join or a query over several tables"),
    }
}

/// Plans `sql` with `ctx` (where the dataset's epoch table is registered, see
/// [`crate::node::tables`]) and lowers it to a provable query for `purpose`.
pub async fn lower(
    ctx: &SessionContext,
    schema: &Schema,
    sql: &str,
    purpose: &str,
) -> Result<ProvableQuery, QueryError> {
    check_length(sql)?;
    let consent = &schema.columns[schema.consent()];
    if !consent.purposes.iter().any(|p| p == purpose) {
        return Err(QueryError::Invalid(format!(
            "dataset {} has no purpose `{purpose}` (purposes: {})",
            schema.name,
            consent.purposes.join(", ")
        )));
    }
    let state = ctx.state();
    let mut statement = state.sql_to_statement(sql, &Default::default())?;
    let Statement::Statement(ast) = &mut statement else {
        return unsupported("a statement other than SELECT");
    };
    if !matches!(**ast, sqlast::Statement::Query(_)) {
        return unsupported(format!("`{}`", first_words(&ast.to_string())));
    }
    replace_labels(ast, schema)?;
    let plan = state.statement_to_plan(statement).await?;
    let lowering = Lowering { schema };
    lowering.check_casts(&plan)?;
    // Optimized without common-subexpression elimination, which would put a projection
    // of shared aggregates (`SUM(kwh)` of `SUM(kwh) / COUNT(*)` and `2 * SUM(kwh)`)
    // between SELECT and the aggregate.
    let rules = state
        .optimizers()
        .iter()
        .filter(|rule| rule.name() != "common_sub_expression_eliminate")
        .cloned()
        .collect();
    let state = SessionStateBuilder::new_from_existing(state)
        .with_optimizer_rules(rules)
        .build();
    let plan = state.optimize(&plan)?;
    lowering.plan(&plan, purpose)
}

/// Lowers `sql` over an empty table of `schema`: what a verifier does to check that a
/// bundle's SQL text means the query its proofs are about.
pub async fn lower_without_data(
    schema: &Schema,
    sql: &str,
    purpose: &str,
) -> Result<ProvableQuery, QueryError> {
    let ctx = SessionContext::new();
    let table = MemTable::try_new(records::stored_schema(schema, true), vec![Vec::new()])?;
    ctx.register_table(schema.name.as_str(), Arc::new(table))?;
    lower(&ctx, schema, sql, purpose).await
}

/// `sql` with dictionary labels replaced by their codes: the same question for plain
/// DataFusion over the stored codes.
pub fn with_codes(schema: &Schema, sql: &str) -> Result<String, QueryError> {
    let ctx = SessionContext::new();
    let mut statement = ctx.state().sql_to_statement(sql, &Default::default())?;
    if let Statement::Statement(ast) = &mut statement {
        replace_labels(ast, schema)?;
    }
    Ok(statement.to_string())
}

fn first_words(text: &str) -> String {
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Replaces string literals compared with a labelled column by their codes.
fn replace_labels(ast: &mut sqlast::Statement, schema: &Schema) -> Result<(), QueryError> {
    let labelled = |e: &sqlast::Expr| -> Option<&Column> {
        let name = match e {
            sqlast::Expr::Identifier(i) => &i.value,
            sqlast::Expr::CompoundIdentifier(parts) => &parts.last()?.value,
            _ => return None,
        };
        schema
            .columns
            .iter()
            .find(|c| c.name == *name && !c.labels.is_empty())
    };
    let code = |column: &Column, e: &mut sqlast::Expr| -> Result<(), QueryError> {
        let mut literal = &*e;
        while let sqlast::Expr::UnaryOp { expr, .. } | sqlast::Expr::Nested(expr) = literal {
            literal = expr;
        }
        if let sqlast::Expr::Value(ValueWithSpan {
            value: Value::Number(number, _),
            ..
        }) = literal
        {
            return Err(QueryError::Invalid(format!(
                "`{}` is labelled: compare it with its labels ({}), not the number {number}",
                column.name,
                column
                    .labels
                    .iter()
                    .map(|l| format!("'{l}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if let sqlast::Expr::Value(ValueWithSpan {
            value: Value::SingleQuotedString(label),
            span,
        }) = e
        {
            let code = column
                .code_of(label)
                .ok_or_else(|| QueryError::UnknownLabel {
                    column: column.name.clone(),
                    label: label.clone(),
                    labels: column.labels.join(", "),
                })?;
            *e = sqlast::Expr::Value(ValueWithSpan {
                value: Value::Number(code.to_string(), false),
                span: *span,
            });
        }
        Ok(())
    };
    let flow = visit_expressions_mut(ast, |e| {
        let result = match e {
            sqlast::Expr::BinaryOp { left, right, .. } => match (labelled(left), labelled(right)) {
                (Some(c), _) => code(c, right),
                (_, Some(c)) => code(c, left),
                _ => Ok(()),
            },
            sqlast::Expr::InList { expr, list, .. } => match labelled(expr) {
                Some(c) => list.iter_mut().try_for_each(|item| code(c, item)),
                None => Ok(()),
            },
            sqlast::Expr::Between {
                expr, low, high, ..
            } => match labelled(expr) {
                Some(c) => code(c, low).and_then(|()| code(c, high)),
                None => Ok(()),
            },
            _ => Ok(()),
        };
        match result {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(e),
        }
    });
    match flow {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Lowers one dataset's optimized plans into provable queries.
struct Lowering<'a> {
    schema: &'a Schema,
}

impl Lowering<'_> {
    fn plan(&self, plan: &LogicalPlan, purpose: &str) -> Result<ProvableQuery, QueryError> {
        // [Limit] [Sort] [Projection] [Sort] [Filter: HAVING] Aggregate, over Filter(s)
        // over TableScan: everything above the aggregate is post-processing of the
        // released table.
        let mut limit: Option<u64> = None;
        let mut sort: Option<(&PlanSort, bool)> = None;
        let mut projection = None;
        let mut having = None;
        let mut node = plan;
        let aggregate = loop {
            match node {
                // A limit below a sort or a HAVING would cut before them.
                LogicalPlan::Limit(l) if sort.is_none() && having.is_none() => {
                    if !matches!(l.get_skip_type()?, SkipType::Literal(0)) {
                        return unsupported("OFFSET");
                    }
                    let FetchType::Literal(fetch) = l.get_fetch_type()? else {
                        return unsupported("LIMIT of an expression");
                    };
                    limit = fetch.map(|f| f as u64);
                    node = &l.input;
                }
                LogicalPlan::Sort(s) if sort.is_none() && having.is_none() => {
                    if let Some(fetch) = s.fetch {
                        limit = Some(limit.map_or(fetch as u64, |l| l.min(fetch as u64)));
                    }
                    sort = Some((s, projection.is_none()));
                    node = &s.input;
                }
                LogicalPlan::Projection(p) if projection.is_none() && having.is_none() => {
                    projection = Some(p);
                    node = &p.input;
                }
                LogicalPlan::Filter(f) if having.is_none() => {
                    having = Some(f);
                    node = &f.input;
                }
                LogicalPlan::Aggregate(a) => break a,
                other => return self.refuse_node(other),
            }
        };
        self.check_casts(plan)?;
        let mut conjuncts = Vec::new();
        self.collect_filters(&aggregate.input, &mut conjuncts)?;
        let filters = self.filters(&conjuncts)?;
        let group_by = self.group_by(aggregate)?;
        let (aggregand, kinds) = self.aggregates(aggregate)?;
        let (outputs, sources) = self.outputs(projection, aggregate, &group_by, &kinds)?;
        // An output named by a column of the aggregate (below the projection), or of the
        // projection (above it).
        let output_of = |column: &PlanColumn, above_projection: bool, what: &str| {
            let found = match (above_projection, projection) {
                (true, Some(p)) => p.schema.index_of_column(column).ok(),
                _ => aggregate
                    .schema
                    .index_of_column(column)
                    .ok()
                    .and_then(|i| sources.iter().position(|s| *s == i)),
            };
            found.map_or_else(
                || unsupported(format!("{what} `{column}`, which SELECT does not show")),
                Ok,
            )
        };
        let having = match having {
            None => Vec::new(),
            Some(f) => split_conjunction(&f.predicate)
                .into_iter()
                .map(|c| self.having(c, |column| output_of(column, false, "HAVING on")))
                .collect::<Result<_, _>>()?,
        };
        let order_by = match sort {
            None => Vec::new(),
            Some((s, above_projection)) => s
                .expr
                .iter()
                .map(|key| {
                    let Some(column) = self.column(&key.expr) else {
                        return unsupported(format!(
                            "ORDER BY `{}` (order by an output column)",
                            key.expr
                        ));
                    };
                    Ok(OrderKey {
                        output: output_of(column, above_projection, "ORDER BY")?,
                        descending: !key.asc,
                        nulls_first: key.nulls_first,
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(ProvableQuery {
            purpose: purpose.to_string(),
            filters,
            group_by,
            aggregand,
            outputs,
            post: PostProcessing {
                having,
                order_by,
                limit,
            },
        })
    }

    /// A HAVING condition: an output aggregate compared with an integer literal.
    fn having(
        &self,
        expr: &Expr,
        output_of: impl Fn(&PlanColumn) -> Result<usize, QueryError>,
    ) -> Result<Having, QueryError> {
        let refuse = || {
            unsupported(format!(
                "HAVING `{expr}` (HAVING compares an aggregate SELECT shows with an integer)"
            ))
        };
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expr else {
            return refuse();
        };
        let (column, op, value) = match (self.column(left), self.column(right)) {
            (Some(c), None) => (c, *op, self.literal(right)),
            (None, Some(c)) => (c, op.swap().unwrap_or(*op), self.literal(left)),
            _ => return refuse(),
        };
        let Some(value) = value.and_then(|v| i64::try_from(v).ok()) else {
            return refuse();
        };
        let comparison = match op {
            Operator::Eq => Comparison::Eq,
            Operator::NotEq => Comparison::NotEq,
            Operator::Lt => Comparison::Lt,
            Operator::LtEq => Comparison::LtEq,
            Operator::Gt => Comparison::Gt,
            Operator::GtEq => Comparison::GtEq,
            _ => return refuse(),
        };
        Ok(Having {
            output: output_of(column)?,
            comparison,
            value,
        })
    }

    fn refuse_node<T>(&self, plan: &LogicalPlan) -> Result<T, QueryError> {
        let construct = match plan {
            LogicalPlan::Join(_) => "a join or subquery".to_string(),
            LogicalPlan::Sort(_) => {
                "ORDER BY here (one ORDER BY, of the query's output columns)".to_string()
            }
            LogicalPlan::Limit(_) => "LIMIT here (one LIMIT, after ORDER BY)".to_string(),
            LogicalPlan::Subquery(_) | LogicalPlan::SubqueryAlias(_) => "a subquery".to_string(),
            LogicalPlan::Union(_) => "UNION".to_string(),
            LogicalPlan::Distinct(_) => "DISTINCT".to_string(),
            LogicalPlan::Aggregate(_) => "COUNT(DISTINCT ...) or a nested aggregate".to_string(),
            LogicalPlan::Window(_) => "a window function".to_string(),
            LogicalPlan::Projection(_) | LogicalPlan::TableScan(_) | LogicalPlan::Filter(_) => {
                "a query without an aggregate (raw rows are never returned)".to_string()
            }
            LogicalPlan::EmptyRelation(_) | LogicalPlan::Values(_) => {
                "a query that reads no dataset table".to_string()
            }
            other => format!("the plan step `{}`", other.display()),
        };
        unsupported(construct)
    }

    /// The conjuncts of every filter between the aggregate and the table scan.
    fn collect_filters<'p>(
        &self,
        plan: &'p LogicalPlan,
        out: &mut Vec<&'p Expr>,
    ) -> Result<(), QueryError> {
        match plan {
            LogicalPlan::Filter(PlanFilter {
                predicate, input, ..
            }) => {
                out.extend(split_conjunction(predicate));
                self.collect_filters(input, out)
            }
            // Plain column selections the optimizer inserts are transparent.
            LogicalPlan::Projection(Projection { expr, input, .. })
                if expr.iter().all(|e| matches!(e, Expr::Column(_))) =>
            {
                self.collect_filters(input, out)
            }
            LogicalPlan::TableScan(TableScan {
                table_name,
                filters,
                fetch,
                ..
            }) => {
                if table_name.table() != self.schema.name {
                    return Err(QueryError::Invalid(format!(
                        "unknown table `{table_name}`; this query runs over `{}`",
                        self.schema.name
                    )));
                }
                if fetch.is_some() {
                    return unsupported("LIMIT");
                }
                for f in filters {
                    out.extend(split_conjunction(f));
                }
                Ok(())
            }
            other => self.refuse_node(other),
        }
    }

    /// Refuses every cast in `plan` that changes a value (see [`Lowering::check_cast`]).
    /// Run on the plan as written, before the optimizer, which may drop a narrowing cast
    /// from a comparison (`CAST(kwh AS TINYINT) > 5` would become `kwh > 5`), and again on
    /// the plan lowered.
    fn check_casts(&self, plan: &LogicalPlan) -> Result<(), QueryError> {
        plan.apply(|node| {
            for expr in node.expressions() {
                expr.apply(|e| self.check_cast(e).map(|()| TreeNodeRecursion::Continue))?;
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .map(|_| ())
        .map_err(|e| match e {
            DataFusionError::External(inner) => match inner.downcast::<QueryError>() {
                Ok(q) => *q,
                Err(other) => QueryError::Sql(DataFusionError::External(other)),
            },
            other => QueryError::Sql(other),
        })
    }

    /// Refuses a cast of a dataset column or a literal that changes a value: only casts
    /// to a type that holds every value the column (or the literal) can have are lowered
    /// (and so unwrapped); `CAST(kwh AS TINYINT) > 5` or `SUM(CAST(kwh AS TINYINT))`
    /// would otherwise be proven as if over `kwh`.
    fn check_cast(&self, expr: &Expr) -> Result<(), DataFusionError> {
        let (inner, target) = match expr {
            Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => {
                (expr.as_ref(), field.data_type())
            }
            _ => return Ok(()),
        };
        let mut innermost = inner;
        while let Expr::Cast(Cast { expr, .. })
        | Expr::TryCast(TryCast { expr, .. })
        | Expr::Alias(Alias { expr, .. }) = innermost
        {
            innermost = expr.as_ref();
        }
        let (largest, what) = match innermost {
            Expr::Column(c) => match self.schema.declared().iter().find(|d| d.name == c.name) {
                Some(column) => (i128::from(column.max_code()), format!("`{}`", c.name)),
                None => return Ok(()),
            },
            literal @ Expr::Literal(..) => match self.literal(literal) {
                Some(v) => (v, v.to_string()),
                None => return Ok(()),
            },
            _ => return Ok(()),
        };
        if holds(target, largest) && holds(target, 0) {
            return Ok(());
        }
        Err(DataFusionError::External(Box::new(
            QueryError::Unsupported {
                construct: format!(
                    "the cast of {what} to {target}, which does not hold all of its values \
                 (only casts that keep every value are proven)"
                ),
            },
        )))
    }

    /// A plain column of the dataset, with casts the planner added unwrapped.
    fn column<'e>(&self, expr: &'e Expr) -> Option<&'e PlanColumn> {
        match expr {
            Expr::Column(c) => Some(c),
            Expr::Cast(Cast { expr, .. }) | Expr::TryCast(TryCast { expr, .. }) => {
                self.column(expr)
            }
            Expr::Alias(Alias { expr, .. }) => self.column(expr),
            _ => None,
        }
    }

    /// The dataset column `c` names, refusing position and consent columns.
    fn dataset_column(&self, c: &PlanColumn, role: &str) -> Result<&Column, QueryError> {
        let column = self
            .schema
            .declared()
            .iter()
            .find(|d| d.name == c.name)
            .ok_or_else(|| {
                QueryError::Invalid(format!(
                    "{role} on `{}`: not a column of {} (its columns: {})",
                    c.name,
                    self.schema.name,
                    self.schema
                        .declared()
                        .iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        if column.kind == ColumnKind::Consent {
            return Err(QueryError::Invalid(format!(
                "{role} on the consent column `{}`: the purpose is chosen with --purpose",
                c.name
            )));
        }
        if column.kind == ColumnKind::Unit {
            return Err(QueryError::Invalid(format!(
                "{role} on `{}`: it is the privacy unit's pseudonym, never filtered on, \
                 grouped by or released",
                c.name
            )));
        }
        Ok(column)
    }

    /// An integer literal, unwrapping casts the planner added (and the decimals of scale
    /// 0 its type coercion makes of integers).
    fn literal(&self, expr: &Expr) -> Option<i128> {
        match expr {
            Expr::Literal(value, _) => match value {
                ScalarValue::Decimal128(Some(v), _, 0) => Some(*v),
                ScalarValue::Int8(Some(v)) => Some(*v as i128),
                ScalarValue::Int16(Some(v)) => Some(*v as i128),
                ScalarValue::Int32(Some(v)) => Some(*v as i128),
                ScalarValue::Int64(Some(v)) => Some(*v as i128),
                ScalarValue::UInt8(Some(v)) => Some(*v as i128),
                ScalarValue::UInt16(Some(v)) => Some(*v as i128),
                ScalarValue::UInt32(Some(v)) => Some(*v as i128),
                ScalarValue::UInt64(Some(v)) => Some(*v as i128),
                _ => None,
            },
            Expr::Cast(Cast { expr, .. }) | Expr::TryCast(TryCast { expr, .. }) => {
                self.literal(expr)
            }
            _ => None,
        }
    }

    /// The column a condition on one column tests and the codes it selects:
    /// comparisons with a literal (`=`, `<>`, `<`, `<=`, `>`, `>=`), BETWEEN and IN, their
    /// negations, and AND, OR and NOT of such conditions on the same column. `None` when
    /// `expr` is none of these, for the caller to name.
    fn condition(&self, expr: &Expr) -> Option<Result<(String, Codes), QueryError>> {
        match expr {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: op @ (Operator::And | Operator::Or),
                right,
            }) => {
                let (left, right) = (self.condition(left)?, self.condition(right)?);
                Some(left.and_then(|(column, a)| {
                    let (other, b) = right?;
                    if other != column {
                        return unsupported(format!(
                            "{op} of conditions on different columns (`{column}` and `{other}`, \
                             in `{expr}`; conditions on different columns are ANDed)"
                        ));
                    }
                    let max = self.max_of(&column);
                    let codes = match op {
                        Operator::And => a.intersect(&b),
                        _ => a.union(&b, max),
                    };
                    Ok((column, codes))
                }))
            }
            Expr::Not(inner) => Some(self.condition(inner)?.map(|(column, codes)| {
                let max = self.max_of(&column);
                (column, codes.complement(max))
            })),
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (column, op, value) = match (self.operand(left), self.operand(right)) {
                    (Some((c, instant)), None) => (c, *op, self.value(right, instant)?),
                    (None, Some((c, instant))) => (c, op.swap()?, self.value(left, instant)?),
                    _ => return None,
                };
                Some(self.dataset_column(column, "a filter").and_then(|c| {
                    let max = c.max_code();
                    let codes = match op {
                        Operator::Eq => Codes::range(value, value, max),
                        Operator::NotEq => Codes::range(value, value, max).complement(max),
                        Operator::Lt => Codes::range(0, value - 1, max),
                        Operator::LtEq => Codes::range(0, value, max),
                        Operator::Gt => Codes::range(value + 1, max.into(), max),
                        Operator::GtEq => Codes::range(value, max.into(), max),
                        op => return unsupported(format!("the operator `{op}`")),
                    };
                    Ok((c.name.clone(), codes))
                }))
            }
            Expr::InList(InList {
                expr,
                list,
                negated,
            }) => {
                let column = self.column(expr)?;
                let values: Vec<i128> = list
                    .iter()
                    .map(|e| self.literal(e))
                    .collect::<Option<_>>()?;
                Some(self.dataset_column(column, "a filter").map(|c| {
                    let max = c.max_code();
                    let codes = Codes::of(values, max);
                    let codes = if *negated {
                        codes.complement(max)
                    } else {
                        codes
                    };
                    (c.name.clone(), codes)
                }))
            }
            Expr::Between(Between {
                expr,
                negated,
                low,
                high,
            }) => {
                let (column, instant) = self.operand(expr)?;
                let (lo, hi) = (self.value(low, instant)?, self.value(high, instant)?);
                Some(self.dataset_column(column, "a filter").map(|c| {
                    let max = c.max_code();
                    let codes = Codes::range(lo, hi, max);
                    let codes = if *negated {
                        codes.complement(max)
                    } else {
                        codes
                    };
                    (c.name.clone(), codes)
                }))
            }
            _ => None,
        }
    }

    /// The column a comparison tests: a plain column, or a time column read as a
    /// timestamp (`to_timestamp(time)`, `to_timestamp_seconds(time)`,
    /// `from_unixtime(CAST(time AS BIGINT))`), whose literals are instants (`true`).
    fn operand<'e>(&self, expr: &'e Expr) -> Option<(&'e PlanColumn, bool)> {
        if let Some(column) = self.column(expr) {
            return Some((column, false));
        }
        let column = self.seconds_of(expr)?;
        let is_time = self
            .schema
            .declared()
            .iter()
            .any(|c| c.name == column.name && c.kind == ColumnKind::Time);
        is_time.then_some((column, true))
    }

    /// The column whose seconds `expr` reads as a timestamp: `to_timestamp(c)`,
    /// `to_timestamp_seconds(c)` or `from_unixtime(c)`, casts unwrapped.
    fn seconds_of<'e>(&self, expr: &'e Expr) -> Option<&'e PlanColumn> {
        match expr {
            Expr::Cast(Cast { expr, .. }) | Expr::Alias(Alias { expr, .. }) => {
                self.seconds_of(expr)
            }
            Expr::ScalarFunction(f)
                if ["to_timestamp", "to_timestamp_seconds", "from_unixtime"]
                    .contains(&f.name()) =>
            {
                match f.args.as_slice() {
                    [arg] => self.column(arg),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// A literal compared with an operand: an integer, or for a timestamp operand an
    /// instant in whole seconds since 1970 (`'2026-01-05'`, `TIMESTAMP '2026-01-05
    /// 06:00:00'`; an instant with a fraction of a second is not lowered).
    fn value(&self, expr: &Expr, instant: bool) -> Option<i128> {
        if !instant {
            return self.literal(expr);
        }
        let (ticks, per_second): (i64, i64) = match expr {
            Expr::Cast(Cast { expr, .. }) | Expr::TryCast(TryCast { expr, .. }) => {
                return self.value(expr, instant)
            }
            Expr::Literal(ScalarValue::TimestampSecond(Some(v), _), _) => (*v, 1),
            Expr::Literal(ScalarValue::TimestampMillisecond(Some(v), _), _) => (*v, 1_000),
            Expr::Literal(ScalarValue::TimestampMicrosecond(Some(v), _), _) => (*v, 1_000_000),
            Expr::Literal(ScalarValue::TimestampNanosecond(Some(v), _), _) => (*v, 1_000_000_000),
            _ => return None,
        };
        (ticks % per_second == 0).then(|| i128::from(ticks / per_second))
    }

    /// The largest code of a column [`Lowering::condition`] has named.
    fn max_of(&self, column: &str) -> u64 {
        self.schema.column(column).map_or(0, |(_, c)| c.max_code())
    }

    /// Canonical filters: per column, the codes every condition on it allows (their
    /// intersection), as the cheapest test that states them: one range; a list when it
    /// has at most two values a range (an IN item costs a row one constraint, a range
    /// about twice the column's width); else a union of up to [`MAX_RANGES`] ranges.
    fn filters(&self, conjuncts: &[&Expr]) -> Result<Vec<Filter>, QueryError> {
        let mut sets: BTreeMap<String, Codes> = BTreeMap::new();
        for expr in conjuncts {
            if matches!(expr, Expr::Literal(ScalarValue::Boolean(Some(true)), _)) {
                continue;
            }
            let Some(condition) = self.condition(expr) else {
                return unsupported(describe(expr));
            };
            let (column, codes) = condition?;
            let codes = match sets.remove(&column) {
                Some(seen) => seen.intersect(&codes),
                None => codes,
            };
            sets.insert(column, codes);
        }
        let mut filters: Vec<(usize, Filter)> = Vec::new();
        for (column, codes) in sets {
            let max = self.max_of(&column);
            let ranges = codes.ranges();
            let test = match ranges {
                [] => Test::Range {
                    lo: EMPTY.0,
                    hi: EMPTY.1,
                },
                [(0, hi)] if *hi == max => continue,
                [(lo, hi)] => Test::Range { lo: *lo, hi: *hi },
                _ if codes.len() <= 2 * ranges.len() as u128 => Test::In(codes.values()),
                _ if ranges.len() <= MAX_RANGES => Test::Ranges(ranges.to_vec()),
                _ if codes.len() <= MAX_IN_ITEMS as u128 => Test::In(codes.values()),
                _ => {
                    return unsupported(format!(
                        "the conditions on `{column}`: they select {} codes in {} ranges; \
                         a filter is one range, a union of at most {MAX_RANGES}, or a list of \
                         at most {MAX_IN_ITEMS} codes",
                        codes.len(),
                        ranges.len()
                    ))
                }
            };
            filters.push((self.position(&column), Filter { column, test }));
        }
        filters.sort_by_key(|(position, _)| *position);
        Ok(filters.into_iter().map(|(_, f)| f).collect())
    }

    fn position(&self, column: &str) -> usize {
        self.schema.column(column).map_or(usize::MAX, |(i, _)| i)
    }

    /// The groupings, in GROUP BY order: up to [`MAX_GROUP_COLUMNS`] dimensions and time
    /// buckets.
    fn group_by(&self, aggregate: &Aggregate) -> Result<Vec<Grouping>, QueryError> {
        if aggregate.group_expr.len() > MAX_GROUP_COLUMNS {
            return unsupported(format!(
                "GROUP BY of {} columns (at most {MAX_GROUP_COLUMNS})",
                aggregate.group_expr.len()
            ));
        }
        let mut groupings: Vec<Grouping> = Vec::new();
        for expr in &aggregate.group_expr {
            let grouping = self.grouping(expr)?;
            if groupings.iter().any(|g| g.column == grouping.column) {
                return unsupported(format!("GROUP BY `{}` twice", grouping.column));
            }
            groupings.push(grouping);
        }
        Ok(groupings)
    }

    /// One GROUP BY expression: a dimension column, or the buckets of the time column
    /// that `date_trunc('minute'|'hour'|'day'|'week', to_timestamp(time))` or
    /// `date_bin(INTERVAL '...', to_timestamp(time))` make.
    fn grouping(&self, expr: &Expr) -> Result<Grouping, QueryError> {
        if let Some(column) = self.column(expr) {
            let c = self.dataset_column(column, "GROUP BY")?;
            if c.kind != ColumnKind::Dimension {
                return unsupported(format!(
                    "GROUP BY `{}` (a {} column; group by a dimension{})",
                    c.name,
                    c.kind,
                    if c.kind == ColumnKind::Time {
                        ", or by date_trunc('hour', to_timestamp(time)) for time buckets"
                    } else {
                        ""
                    }
                ));
            }
            return Ok(Grouping::column(&c.name));
        }
        let mut inner = expr;
        while let Expr::Alias(Alias { expr, .. }) | Expr::Cast(Cast { expr, .. }) = inner {
            inner = expr;
        }
        let Expr::ScalarFunction(f) = inner else {
            return unsupported(format!("GROUP BY `{}`", describe(expr)));
        };
        let (bucket, timestamp) = match (f.name(), f.args.as_slice()) {
            ("date_trunc", [unit, timestamp]) => {
                let unit = match unit {
                    Expr::Literal(
                        ScalarValue::Utf8(Some(u))
                        | ScalarValue::Utf8View(Some(u))
                        | ScalarValue::LargeUtf8(Some(u)),
                        _,
                    ) => u.to_ascii_lowercase(),
                    other => return unsupported(format!("date_trunc of the unit `{other}`")),
                };
                let bucket = match (TimeBucket::named(&unit), unit.as_str()) {
                    (Some(bucket), _) => bucket,
                    (None, "month" | "quarter" | "year") => {
                        return unsupported(format!(
                            "date_trunc('{unit}', ...) in GROUP BY: {unit}s differ in length, \
                             and buckets are proven by division (use 'week' or 'day')"
                        ))
                    }
                    (None, _) => {
                        return unsupported(format!(
                            "date_trunc('{unit}', ...) in GROUP BY (buckets of a minute, an \
                             hour, a day or a week)"
                        ))
                    }
                };
                (bucket, timestamp)
            }
            ("date_bin", [interval, timestamp]) => (self.interval(interval)?, timestamp),
            ("date_bin", _) => {
                return unsupported(
                    "date_bin with an origin in GROUP BY (its buckets count from 1970-01-01)",
                )
            }
            (name, _) => {
                return unsupported(format!(
                    "GROUP BY {name}(...) (group by a dimension, or time buckets: \
                     date_trunc('hour', to_timestamp(time)) or date_bin(INTERVAL '15 minutes', \
                     to_timestamp(time)))"
                ))
            }
        };
        let column = self.seconds_of(timestamp);
        let Some(column) = column else {
            return unsupported(format!(
                "time buckets of `{timestamp}` (bucket to_timestamp(time), the time column's \
                 seconds)"
            ));
        };
        let c = self.dataset_column(column, "GROUP BY")?;
        if c.kind != ColumnKind::Time {
            return unsupported(format!(
                "time buckets of `{}` (a {} column; bucket a time column)",
                c.name, c.kind
            ));
        }
        Ok(Grouping {
            column: c.name.clone(),
            bucket: Some(bucket),
        })
    }

    /// A `date_bin` interval literal as buckets from 1970-01-01: whole seconds, no months.
    fn interval(&self, expr: &Expr) -> Result<TimeBucket, QueryError> {
        let seconds = match expr {
            Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(i)), _) if i.months == 0 => {
                let nanos = i128::from(i.days) * 86_400_000_000_000 + i128::from(i.nanoseconds);
                (nanos % 1_000_000_000 == 0).then_some(nanos / 1_000_000_000)
            }
            Expr::Literal(ScalarValue::IntervalDayTime(Some(i)), _) => {
                let millis = i64::from(i.days) * 86_400_000 + i64::from(i.milliseconds);
                (millis % 1000 == 0).then_some(i128::from(millis / 1000))
            }
            _ => None,
        };
        match seconds
            .and_then(|s| u64::try_from(s).ok())
            .filter(|s| *s > 0)
        {
            Some(seconds) => Ok(TimeBucket::new(seconds, 0)),
            None => unsupported(format!(
                "date_bin of `{expr}` in GROUP BY (an interval of whole seconds, minutes, \
                 hours or days; months differ in length)"
            )),
        }
    }

    /// The aggregand all aggregates share (the measures SUM and AVG name, in order of
    /// first mention, or one predicate), and each aggregate's output kind.
    fn aggregates(
        &self,
        aggregate: &Aggregate,
    ) -> Result<(Aggregand, Vec<OutputKind>), QueryError> {
        let mut measures: Vec<String> = Vec::new();
        let mut predicate: Option<Aggregand> = None;
        let mut kinds = Vec::new();
        let mut measure_index = |m: String| -> Result<usize, QueryError> {
            if let Some(i) = measures.iter().position(|seen| *seen == m) {
                return Ok(i);
            }
            if measures.len() == MAX_MEASURES {
                return unsupported(format!(
                    "SUM or AVG of a {}th measure (`{m}`; a query sums at most {MAX_MEASURES})",
                    MAX_MEASURES + 1
                ));
            }
            measures.push(m);
            Ok(measures.len() - 1)
        };
        for expr in &aggregate.aggr_expr {
            let inner = match expr {
                Expr::Alias(Alias { expr, .. }) => expr.as_ref(),
                e => e,
            };
            let Expr::AggregateFunction(AggregateFunction { func, params }) = inner else {
                return unsupported(format!("`{}`", describe(expr)));
            };
            let name = func.name().to_ascii_lowercase();
            if params.distinct {
                return unsupported(format!("{}(DISTINCT ...)", name.to_uppercase()));
            }
            if params.filter.is_some() || !params.order_by.is_empty() {
                return unsupported(format!("FILTER or ORDER BY inside {name}(...)"));
            }
            let measure = |args: &[Expr]| -> Result<String, QueryError> {
                match args {
                    [arg] => {
                        let Some(column) = self.column(arg) else {
                            return unsupported(format!(
                                "{name}({}): arithmetic on columns",
                                describe(arg)
                            ));
                        };
                        let c = self.dataset_column(column, &name.to_uppercase())?;
                        if c.kind != ColumnKind::Measure {
                            return unsupported(format!(
                                "{}({}) of a {} column (sum a measure)",
                                name.to_uppercase(),
                                c.name,
                                c.kind
                            ));
                        }
                        Ok(c.name.clone())
                    }
                    _ => unsupported(format!("{name} of {} arguments", args.len())),
                }
            };
            let kind = match name.as_str() {
                "count" => {
                    if let [arg] = params.args.as_slice() {
                        if self.literal(arg).is_none() {
                            // COUNT(column) counts every row: columns have no nulls.
                            if let Some(c) = self.column(arg) {
                                self.dataset_column(c, "COUNT")?;
                            } else {
                                return unsupported(format!("COUNT({})", describe(arg)));
                            }
                        }
                    }
                    OutputKind::Count
                }
                "sum" => OutputKind::Sum(measure_index(measure(&params.args)?)?),
                "avg" => OutputKind::Avg(measure_index(measure(&params.args)?)?),
                "bool_and" | "bool_or" => {
                    let negate = name == "bool_and";
                    let [arg] = params.args.as_slice() else {
                        return unsupported(format!("{name} of several arguments"));
                    };
                    let Some(condition) = self.condition(arg) else {
                        return unsupported(format!(
                            "{name}({}): it takes one comparison of a column with a literal",
                            describe(arg)
                        ));
                    };
                    let (column, codes) = condition?;
                    // bool_and(cmp) holds when no selected row meets NOT cmp.
                    let counted = match negate {
                        true => codes.complement(self.max_of(&column)),
                        false => codes,
                    };
                    let (lo, hi) = match counted.ranges() {
                        [] => EMPTY,
                        [range] => *range,
                        ranges => {
                            return unsupported(format!(
                                "{name}({}): the rows it counts lie in {} ranges of `{column}`; \
                                 a predicate takes one comparison of a column with a literal \
                                 (use bool_or, or a one-sided comparison)",
                                describe(arg),
                                ranges.len()
                            ))
                        }
                    };
                    let new = Aggregand::CountWhere {
                        column,
                        lo,
                        hi,
                        negate,
                    };
                    if predicate.as_ref().is_some_and(|p| *p != new) {
                        return unsupported(format!(
                            "{name} beside another predicate (one per query)"
                        ));
                    }
                    predicate = Some(new);
                    OutputKind::Predicate
                }
                "min"
                | "max"
                | "median"
                | "approx_median"
                | "percentile_cont"
                | "approx_percentile_cont"
                | "approx_percentile_cont_with_weight"
                | "first_value"
                | "last_value"
                | "nth_value"
                | "array_agg"
                | "string_agg" => {
                    return unsupported(format!(
                        "{}(...): it releases one person's value, not an aggregate of many",
                        name.to_uppercase()
                    ))
                }
                other => return unsupported(format!("the aggregate function {other}")),
            };
            kinds.push(kind);
        }
        let aggregand = match predicate {
            Some(_) if kinds.iter().any(|k| *k != OutputKind::Predicate) => {
                return unsupported("a predicate beside COUNT, SUM or AVG (ask them separately)")
            }
            Some(predicate) => predicate,
            None if measures.is_empty() => Aggregand::CountOnly,
            None => Aggregand::Sum(measures),
        };
        Ok((aggregand, kinds))
    }

    /// Arithmetic between aggregates (COUNT, SUM, AVG) and integer literals: `+`, `-`,
    /// `*`, `/`, the casts the planner adds for types set aside.
    fn arithmetic(
        &self,
        expr: &Expr,
        aggregate: &Aggregate,
        kinds: &[OutputKind],
    ) -> Result<Arithmetic, QueryError> {
        let groups = aggregate.group_expr.len();
        match expr {
            Expr::Alias(Alias { expr, .. })
            | Expr::Cast(Cast { expr, .. })
            | Expr::TryCast(TryCast { expr, .. }) => self.arithmetic(expr, aggregate, kinds),
            Expr::Column(c) => {
                let i = aggregate.schema.index_of_column(c)?;
                match kinds.get(i.wrapping_sub(groups)) {
                    _ if i < groups => {
                        unsupported(format!("arithmetic on the grouping column `{}`", c.name))
                    }
                    Some(kind @ (OutputKind::Count | OutputKind::Sum(_) | OutputKind::Avg(_))) => {
                        Ok(Arithmetic::Aggregate(Box::new(kind.clone())))
                    }
                    _ => unsupported(format!("arithmetic on `{}`", c.name)),
                }
            }
            Expr::Literal(..) => match self.literal(expr).map(i64::try_from) {
                Some(Ok(v)) => Ok(Arithmetic::Literal(v)),
                _ => unsupported(format!(
                    "the literal `{expr}` in arithmetic (integers only)"
                )),
            },
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let op = match op {
                    Operator::Plus => ArithmeticOp::Add,
                    Operator::Minus => ArithmeticOp::Subtract,
                    Operator::Multiply => ArithmeticOp::Multiply,
                    Operator::Divide => ArithmeticOp::Divide,
                    other => return unsupported(format!("`{other}` between aggregates")),
                };
                Ok(Arithmetic::Binary {
                    op,
                    left: Box::new(self.arithmetic(left, aggregate, kinds)?),
                    right: Box::new(self.arithmetic(right, aggregate, kinds)?),
                })
            }
            other => unsupported(format!(
                "`{}` in SELECT: functions on aggregates",
                describe(other)
            )),
        }
    }

    fn outputs(
        &self,
        projection: Option<&Projection>,
        aggregate: &Aggregate,
        group_by: &[Grouping],
        kinds: &[OutputKind],
    ) -> Result<(Vec<Output>, Vec<usize>), QueryError> {
        let groups = aggregate.group_expr.len();
        let kind_of = |i: usize| {
            if i < groups {
                OutputKind::GroupKey(i)
            } else {
                kinds[i - groups].clone()
            }
        };
        let Some(projection) = projection else {
            let fields = 0..aggregate.schema.fields().len();
            let outputs = fields
                .clone()
                .map(|i| Output {
                    name: match group_by.get(i) {
                        Some(Grouping {
                            column,
                            bucket: None,
                        }) => column.clone(),
                        _ => aggregate.schema.field(i).name().clone(),
                    },
                    kind: kind_of(i),
                })
                .collect();
            return Ok((outputs, fields.collect()));
        };
        projection
            .expr
            .iter()
            .map(|expr| {
                let (name, mut inner) = match expr {
                    Expr::Alias(Alias { expr, name, .. }) => (name.clone(), expr.as_ref()),
                    e => (e.schema_name().to_string(), e),
                };
                while let Expr::Alias(Alias { expr, .. }) = inner {
                    inner = expr;
                }
                let Expr::Column(c) = inner else {
                    // Arithmetic between aggregates: no column of the aggregate is its
                    // source (HAVING and ORDER BY name it above the projection).
                    let arithmetic = self.arithmetic(inner, aggregate, kinds)?;
                    let kind = OutputKind::Arithmetic(arithmetic);
                    return Ok((Output { name, kind }, usize::MAX));
                };
                let i = aggregate.schema.index_of_column(c)?;
                let name = if i < groups && !matches!(expr, Expr::Alias(_)) {
                    match &group_by[i].bucket {
                        None => group_by[i].column.clone(),
                        Some(_) => c.name.clone(),
                    }
                } else {
                    name
                };
                Ok((
                    Output {
                        name,
                        kind: kind_of(i),
                    },
                    i,
                ))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|pairs| pairs.into_iter().unzip())
    }
}

/// The empty range.
const EMPTY: (u64, u64) = (1, 0);

/// Whether values of `data_type` hold `value` exactly: integers within their range,
/// floating point within its exact integers, decimals within their integer digits;
/// anything else does not.
fn holds(data_type: &DataType, value: i128) -> bool {
    let range = match data_type {
        DataType::Int8 => (i8::MIN as i128, i8::MAX as i128),
        DataType::Int16 => (i16::MIN as i128, i16::MAX as i128),
        DataType::Int32 => (i32::MIN as i128, i32::MAX as i128),
        DataType::Int64 => (i64::MIN as i128, i64::MAX as i128),
        DataType::UInt8 => (0, u8::MAX as i128),
        DataType::UInt16 => (0, u16::MAX as i128),
        DataType::UInt32 => (0, u32::MAX as i128),
        DataType::UInt64 => (0, u64::MAX as i128),
        DataType::Float32 => (-(1 << 24), 1 << 24),
        DataType::Float64 => (-(1 << 53), 1 << 53),
        // Integer digits p - s: every integer below 10^(p - s) in magnitude.
        DataType::Decimal128(p, s) if *s >= 0 && *p as i8 - *s <= 38 => {
            let largest = 10i128.pow((*p as i8 - *s) as u32) - 1;
            (-largest, largest)
        }
        _ => return false,
    };
    range.0 <= value && value <= range.1
}

fn has_arithmetic(expr: &Expr) -> bool {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            op.is_numerical_operators() || has_arithmetic(left) || has_arithmetic(right)
        }
        Expr::Cast(Cast { expr, .. }) | Expr::TryCast(TryCast { expr, .. }) => has_arithmetic(expr),
        _ => false,
    }
}

/// A filter expression named the way a user would recognise it.
fn describe(expr: &Expr) -> String {
    let what = match expr {
        e if has_arithmetic(e) => "arithmetic on columns",
        Expr::BinaryExpr(BinaryExpr {
            op: Operator::Or, ..
        }) => "OR",
        Expr::Not(_) => "NOT",
        Expr::InList(InList { negated: true, .. }) => "NOT IN",
        Expr::IsNull(_) | Expr::IsNotNull(_) => "IS [NOT] NULL",
        Expr::Like(_) | Expr::SimilarTo(_) => "LIKE",
        Expr::ScalarFunction(f) => return format!("the function {}(...)", f.name()),
        Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_) => "a subquery",
        _ => "",
    };
    if what.is_empty() {
        format!("`{expr}`")
    } else {
        format!("{what} (in `{expr}`)")
    }
}
