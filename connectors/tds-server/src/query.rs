//! Answers T-SQL from the in-memory model: the text is parsed with sqlparser's MS SQL dialect
//! and evaluated, so a query is answered from data whatever its exact wording — and a query the
//! real server would reject (an unknown column, a syntax error) is rejected here too.
//!
//! The subset: `SELECT [TOP (n)] items FROM one relation [WHERE …] [ORDER BY …]` where the
//! relation is a table, a catalog view (`sys.schemas`, `sys.tables`, `sys.views`, `sys.columns`,
//! `sys.types`, `sys.key_constraints`, `sys.indexes`, `sys.index_columns`,
//! `sys.dm_db_partition_stats`, `sys.change_tracking_tables`) or
//! `CHANGETABLE(CHANGES table, @version)`; expressions are columns, parameters, literals,
//! comparisons, `AND`/`OR`/`NOT`, `IS [NOT] NULL`, `IN (…)`, `CAST`, and the functions
//! `OBJECT_ID`, `DB_NAME`, `CHANGE_TRACKING_CURRENT_VERSION`, `CHANGE_TRACKING_MIN_VALID_VERSION`
//! and `MIN_ACTIVE_ROWVERSION`. `SET …`, `BEGIN TRAN`, `COMMIT` are accepted and do nothing.
//! Anything else is an error naming what is not supported, so a source cannot silently depend
//! on something this server would get wrong.

use std::collections::HashMap;

use sqlparser::ast::{
    self, BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName,
    OrderByKind, SelectItem, SetExpr, Statement, TableFactor, TopQuantity, UnaryOperator,
};
use sqlparser::dialect::MsSqlDialect;
use sqlparser::parser::Parser;

use crate::model::{Database, Table};
use crate::types::{SqlType, SqlValue};

/// An error as SQL Server reports it: number, severity class, message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Msg {number}, Level {class}: {message}")]
pub struct SqlError {
    pub number: i32,
    pub class: u8,
    pub message: String,
}

impl SqlError {
    pub fn new(number: i32, message: impl Into<String>) -> Self {
        Self {
            number,
            class: 16,
            message: message.into(),
        }
    }

    fn unsupported(what: impl std::fmt::Display) -> Self {
        Self::new(
            40000,
            format!("the TDS test server does not support {what}"),
        )
    }
}

/// A result column: name, type, nullable.
pub type ResultColumn = (String, SqlType, bool);

/// What one statement produced.
#[derive(Debug, Clone)]
pub enum Outcome {
    Rows {
        columns: Vec<ResultColumn>,
        rows: Vec<Vec<SqlValue>>,
        /// The relation read (schema-less table name), for fault injection.
        source: Option<String>,
    },
    /// A statement without a result set.
    Done,
}

/// `CHANGETABLE(CHANGES t, v)` is not in sqlparser's grammar: spell it as a table function
/// call, the one rewrite made before parsing.
pub fn rewrite_changetable(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.to_ascii_uppercase().find("CHANGETABLE") {
        let (before, after) = rest.split_at(at);
        out.push_str(before);
        let after_name = &after["CHANGETABLE".len()..];
        let trimmed = after_name.trim_start();
        if let Some(inner) = trimmed.strip_prefix('(') {
            let inner_trimmed = inner.trim_start();
            if inner_trimmed.len() >= 7 && inner_trimmed[..7].eq_ignore_ascii_case("CHANGES") {
                out.push_str("CHANGETABLE(");
                rest = &inner_trimmed[7..];
                continue;
            }
        }
        out.push_str("CHANGETABLE");
        rest = after_name;
    }
    out.push_str(rest);
    out
}

/// Parses `sql` as SQL Server would (after the `CHANGETABLE` rewrite).
pub fn parse(sql: &str) -> Result<Vec<Statement>, SqlError> {
    Parser::parse_sql(&MsSqlDialect {}, &rewrite_changetable(sql))
        .map_err(|e| SqlError::new(102, format!("Incorrect syntax: {e}")))
}

/// Runs every statement of `sql` against `db` with the named parameters.
pub fn execute(
    db: &Database,
    sql: &str,
    params: &HashMap<String, SqlValue>,
) -> Result<Vec<Outcome>, SqlError> {
    let statements = parse(sql)?;
    statements
        .iter()
        .map(|statement| match statement {
            Statement::Query(query) => select(db, query, params),
            Statement::Set(_)
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. } => Ok(Outcome::Done),
            other => Err(SqlError::unsupported(format!(
                "the statement `{}`",
                other.to_string().chars().take(60).collect::<String>()
            ))),
        })
        .collect()
}

/// A relation being read: its columns and rows, and the names it can be referred to by.
struct Relation {
    names: Vec<String>,
    columns: Vec<ResultColumn>,
    rows: Vec<Vec<SqlValue>>,
    source: Option<String>,
}

fn ident_names(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .filter_map(|part| part.as_ident().map(|i| i.value.clone()))
        .collect()
}

fn select(
    db: &Database,
    query: &ast::Query,
    params: &HashMap<String, SqlValue>,
) -> Result<Outcome, SqlError> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Err(SqlError::unsupported("set operations (UNION …)"));
    };
    if query.limit_clause.is_some() || query.fetch.is_some() {
        return Err(SqlError::unsupported("OFFSET / FETCH"));
    }
    if select.distinct.is_some() || select.having.is_some() {
        return Err(SqlError::unsupported("DISTINCT / HAVING"));
    }
    if !matches!(&select.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty()) {
        return Err(SqlError::unsupported("GROUP BY"));
    }
    let relation = match select.from.as_slice() {
        [] => Relation {
            names: Vec::new(),
            columns: Vec::new(),
            rows: vec![Vec::new()],
            source: None,
        },
        [one] if one.joins.is_empty() => relation(db, &one.relation, params)?,
        _ => return Err(SqlError::unsupported("joins or several tables in FROM")),
    };
    let context = |row: &[SqlValue]| Context {
        db,
        relation: &relation,
        row: row.to_vec(),
        params,
    };

    let mut rows: Vec<Vec<SqlValue>> = Vec::new();
    for row in &relation.rows {
        let keep = match &select.selection {
            Some(condition) => matches!(context(row).eval(condition)?, SqlValue::Bool(true)),
            None => true,
        };
        if keep {
            rows.push(row.clone());
        }
    }

    if let Some(order_by) = &query.order_by {
        let OrderByKind::Expressions(exprs) = &order_by.kind else {
            return Err(SqlError::unsupported("ORDER BY ALL"));
        };
        let mut keyed: Vec<(Vec<SqlValue>, Vec<SqlValue>)> = rows
            .into_iter()
            .map(|row| {
                let keys = exprs
                    .iter()
                    .map(|e| context(&row).eval(&e.expr))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((keys, row))
            })
            .collect::<Result<_, SqlError>>()?;
        keyed.sort_by(|a, b| {
            for (i, e) in exprs.iter().enumerate() {
                let ordering = match (&a.0[i], &b.0[i]) {
                    (SqlValue::Null, SqlValue::Null) => std::cmp::Ordering::Equal,
                    (SqlValue::Null, _) => std::cmp::Ordering::Less,
                    (_, SqlValue::Null) => std::cmp::Ordering::Greater,
                    (x, y) => x.compare(y).unwrap_or(std::cmp::Ordering::Equal),
                };
                let ordering = if e.options.asc == Some(false) {
                    ordering.reverse()
                } else {
                    ordering
                };
                if ordering.is_ne() {
                    return ordering;
                }
            }
            std::cmp::Ordering::Equal
        });
        rows = keyed.into_iter().map(|(_, row)| row).collect();
    }

    if let Some(top) = &select.top {
        let n = match &top.quantity {
            Some(TopQuantity::Constant(n)) => *n as i64,
            Some(TopQuantity::Expr(e)) => match context(&[]).eval(e)? {
                SqlValue::Int(n) => n,
                other => {
                    return Err(SqlError::new(
                        1060,
                        format!(
                            "The number of rows in the TOP clause must be an integer, not {other:?}."
                        ),
                    ));
                }
            },
            None => i64::MAX,
        };
        rows.truncate(n.max(0) as usize);
    }

    // The projection.
    let mut columns: Vec<ResultColumn> = Vec::new();
    let mut projections: Vec<Projection> = Vec::new();
    for item in &select.projection {
        match item {
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                for (i, column) in relation.columns.iter().enumerate() {
                    columns.push(column.clone());
                    projections.push(Projection::Column(i));
                }
            }
            SelectItem::UnnamedExpr(expr) => {
                let (column, projection) = project(&relation, expr, None)?;
                columns.push(column);
                projections.push(projection);
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                let (column, projection) = project(&relation, expr, Some(&alias.value))?;
                columns.push(column);
                projections.push(projection);
            }
        }
    }
    let mut out_rows = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut out = Vec::with_capacity(projections.len());
        for projection in &projections {
            out.push(match projection {
                Projection::Column(i) => row[*i].clone(),
                Projection::Expr(e) => context(row).eval(e)?,
            });
        }
        out_rows.push(out);
    }
    // Expression columns without a declared type take their values' type.
    for (i, projection) in projections.iter().enumerate() {
        if let Projection::Expr(expr) = projection
            && declared_type(expr).is_none()
        {
            let natural = out_rows
                .iter()
                .map(|r| &r[i])
                .find(|v| !v.is_null())
                .map(SqlValue::natural_type)
                .unwrap_or(SqlType::NVarChar(None));
            columns[i].1 = natural;
        }
    }
    // A column the wire subset cannot carry is refused rather than sent (tiberius panics on
    // UDT and sql_variant type infos).
    for (name, ty, _) in &columns {
        if let SqlType::Unsupported(type_name) = ty {
            return Err(SqlError::new(
                40001,
                format!(
                    "column '{name}' is of type {type_name}, which this server (like tiberius) cannot send; CAST it in the SELECT"
                ),
            ));
        }
    }
    Ok(Outcome::Rows {
        columns,
        rows: out_rows,
        source: relation.source.clone(),
    })
}

enum Projection {
    Column(usize),
    Expr(Box<Expr>),
}

fn project(
    relation: &Relation,
    expr: &Expr,
    alias: Option<&str>,
) -> Result<(ResultColumn, Projection), SqlError> {
    if let Some(index) = column_ref(relation, expr)? {
        let (name, ty, nullable) = relation.columns[index].clone();
        return Ok((
            (alias.map(str::to_owned).unwrap_or(name), ty, nullable),
            Projection::Column(index),
        ));
    }
    let ty = declared_type(expr).unwrap_or(SqlType::NVarChar(None));
    Ok((
        (alias.unwrap_or_default().to_owned(), ty, true),
        Projection::Expr(Box::new(expr.clone())),
    ))
}

/// The column an expression names, if it is a plain column reference.
fn column_ref(relation: &Relation, expr: &Expr) -> Result<Option<usize>, SqlError> {
    let (qualifier, name) = match expr {
        Expr::Identifier(ident) if !ident.value.starts_with('@') => (None, &ident.value),
        Expr::CompoundIdentifier(parts) if parts.len() >= 2 => (
            Some(&parts[parts.len() - 2].value),
            &parts[parts.len() - 1].value,
        ),
        _ => return Ok(None),
    };
    if let Some(qualifier) = qualifier
        && !relation
            .names
            .iter()
            .any(|n| n.eq_ignore_ascii_case(qualifier))
    {
        return Err(SqlError::new(
            4104,
            format!("The multi-part identifier \"{qualifier}.{name}\" could not be bound."),
        ));
    }
    relation
        .columns
        .iter()
        .position(|(c, _, _)| c.eq_ignore_ascii_case(name))
        .map(Some)
        .ok_or_else(|| SqlError::new(207, format!("Invalid column name '{name}'.")))
}

/// The type an expression declares by itself (a CAST, or a function with a fixed type).
fn declared_type(expr: &Expr) -> Option<SqlType> {
    match expr {
        Expr::Cast { data_type, .. } => cast_type(data_type).ok(),
        Expr::Nested(inner) => declared_type(inner),
        Expr::Function(f) => match function_name(&f.name).as_str() {
            "CHANGE_TRACKING_CURRENT_VERSION" | "CHANGE_TRACKING_MIN_VALID_VERSION" => {
                Some(SqlType::BigInt)
            }
            "OBJECT_ID" => Some(SqlType::Int),
            "MIN_ACTIVE_ROWVERSION" => Some(SqlType::RowVersion),
            "DB_NAME" => Some(SqlType::NVarChar(Some(128))),
            _ => None,
        },
        _ => None,
    }
}

fn function_name(name: &ObjectName) -> String {
    ident_names(name)
        .last()
        .cloned()
        .unwrap_or_default()
        .to_ascii_uppercase()
}

fn cast_type(data_type: &ast::DataType) -> Result<SqlType, SqlError> {
    use ast::DataType as D;
    let length = |l: &Option<ast::CharacterLength>| match l {
        Some(ast::CharacterLength::IntegerLength { length, .. }) => Some(*length as u16),
        _ => None,
    };
    Ok(match data_type {
        D::BigInt(_) => SqlType::BigInt,
        D::Int(_) | D::Integer(_) => SqlType::Int,
        D::SmallInt(_) => SqlType::SmallInt,
        D::TinyInt(_) => SqlType::TinyInt,
        D::Nvarchar(l) => SqlType::NVarChar(length(l)),
        D::Varchar(l) => SqlType::VarChar(length(l)),
        D::Varbinary(l) => SqlType::VarBinary(match l {
            Some(ast::BinaryLength::IntegerLength { length }) => Some(*length as u16),
            _ => None,
        }),
        D::Binary(_) => SqlType::RowVersion,
        D::Float(_) | D::Double(_) => SqlType::Float,
        D::Date => SqlType::Date,
        D::Datetime(scale) => SqlType::DateTime2(scale.map_or(7, |s| s as u8)),
        other => return Err(SqlError::unsupported(format!("CAST to {other}"))),
    })
}

struct Context<'a> {
    db: &'a Database,
    relation: &'a Relation,
    row: Vec<SqlValue>,
    params: &'a HashMap<String, SqlValue>,
}

fn truth(value: Option<bool>) -> SqlValue {
    value.map_or(SqlValue::Null, SqlValue::Bool)
}

fn as_truth(value: &SqlValue) -> Option<bool> {
    match value {
        SqlValue::Bool(b) => Some(*b),
        SqlValue::Int(i) => Some(*i != 0),
        _ => None,
    }
}

impl Context<'_> {
    fn param(&self, name: &str) -> Result<SqlValue, SqlError> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .ok_or_else(|| {
                SqlError::new(137, format!("Must declare the scalar variable \"{name}\"."))
            })
    }

    fn eval(&self, expr: &Expr) -> Result<SqlValue, SqlError> {
        match expr {
            Expr::Identifier(ident) if ident.value.starts_with('@') => self.param(&ident.value),
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
                match column_ref(self.relation, expr)? {
                    Some(index) => Ok(self.row.get(index).cloned().unwrap_or(SqlValue::Null)),
                    None => Err(SqlError::unsupported(format!("the expression `{expr}`"))),
                }
            }
            Expr::Value(value) => literal(&value.value),
            Expr::Nested(inner) => self.eval(inner),
            Expr::IsNull(inner) => Ok(SqlValue::Bool(self.eval(inner)?.is_null())),
            Expr::IsNotNull(inner) => Ok(SqlValue::Bool(!self.eval(inner)?.is_null())),
            Expr::UnaryOp {
                op: UnaryOperator::Not,
                expr,
            } => Ok(truth(as_truth(&self.eval(expr)?).map(|b| !b))),
            Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr,
            } => match self.eval(expr)? {
                SqlValue::Int(v) => Ok(SqlValue::Int(-v)),
                SqlValue::Decimal(m, s) => Ok(SqlValue::Decimal(-m, s)),
                SqlValue::Float(v) => Ok(SqlValue::Float(-v)),
                other => Err(SqlError::new(8117, format!("cannot negate {other:?}"))),
            },
            Expr::BinaryOp { left, op, right } => {
                let l = self.eval(left)?;
                match op {
                    BinaryOperator::And => {
                        let r = self.eval(right)?;
                        Ok(truth(match (as_truth(&l), as_truth(&r)) {
                            (Some(false), _) | (_, Some(false)) => Some(false),
                            (Some(true), Some(true)) => Some(true),
                            _ => None,
                        }))
                    }
                    BinaryOperator::Or => {
                        let r = self.eval(right)?;
                        Ok(truth(match (as_truth(&l), as_truth(&r)) {
                            (Some(true), _) | (_, Some(true)) => Some(true),
                            (Some(false), Some(false)) => Some(false),
                            _ => None,
                        }))
                    }
                    BinaryOperator::Eq
                    | BinaryOperator::NotEq
                    | BinaryOperator::Lt
                    | BinaryOperator::LtEq
                    | BinaryOperator::Gt
                    | BinaryOperator::GtEq => {
                        let r = self.eval(right)?;
                        if !l.is_null() && !r.is_null() && l.compare(&r).is_none() {
                            return Err(SqlError::new(
                                245,
                                format!("Conversion failed when comparing {l:?} with {r:?}."),
                            ));
                        }
                        Ok(truth(l.compare(&r).map(|o| match op {
                            BinaryOperator::Eq => o.is_eq(),
                            BinaryOperator::NotEq => o.is_ne(),
                            BinaryOperator::Lt => o.is_lt(),
                            BinaryOperator::LtEq => o.is_le(),
                            BinaryOperator::Gt => o.is_gt(),
                            _ => o.is_ge(),
                        })))
                    }
                    other => Err(SqlError::unsupported(format!("the operator {other}"))),
                }
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                let value = self.eval(expr)?;
                let mut found = Some(false);
                for item in list {
                    match value.compare(&self.eval(item)?) {
                        Some(o) if o.is_eq() => {
                            found = Some(true);
                            break;
                        }
                        None => found = None,
                        _ => {}
                    }
                }
                Ok(truth(found.map(|f| f != *negated)))
            }
            Expr::Cast {
                expr, data_type, ..
            } => cast(self.eval(expr)?, &cast_type(data_type)?),
            Expr::Function(function) => self.function(function),
            other => Err(SqlError::unsupported(format!("the expression `{other}`"))),
        }
    }

    fn function(&self, function: &ast::Function) -> Result<SqlValue, SqlError> {
        let args: Vec<&Expr> = match &function.args {
            FunctionArguments::None => Vec::new(),
            FunctionArguments::List(list) => list
                .args
                .iter()
                .map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
                    other => Err(SqlError::unsupported(format!("the argument `{other}`"))),
                })
                .collect::<Result<_, _>>()?,
            FunctionArguments::Subquery(_) => {
                return Err(SqlError::unsupported("subqueries"));
            }
        };
        let name = function_name(&function.name);
        let arity = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(SqlError::new(
                    174,
                    format!("The {name} function requires {n} argument(s)."),
                ))
            }
        };
        match name.as_str() {
            "CHANGE_TRACKING_CURRENT_VERSION" => {
                arity(0)?;
                Ok(SqlValue::Int(self.db.change_version))
            }
            "CHANGE_TRACKING_MIN_VALID_VERSION" => {
                arity(1)?;
                let id = self.eval(args[0])?;
                Ok(self
                    .db
                    .tables
                    .iter()
                    .find(|t| SqlValue::Int(i64::from(t.object_id)) == id)
                    .and_then(|t| t.change_tracking.as_ref())
                    .map_or(SqlValue::Null, |ct| SqlValue::Int(ct.min_valid_version)))
            }
            "OBJECT_ID" => {
                arity(1)?;
                match self.eval(args[0])? {
                    SqlValue::Text(name) => Ok(object_id(self.db, &name)
                        .map_or(SqlValue::Null, |id| SqlValue::Int(i64::from(id)))),
                    _ => Ok(SqlValue::Null),
                }
            }
            "DB_NAME" => {
                arity(0)?;
                Ok(SqlValue::Text(self.db.name.clone()))
            }
            "MIN_ACTIVE_ROWVERSION" => {
                arity(0)?;
                let min = self
                    .db
                    .active_rowversions
                    .iter()
                    .copied()
                    .min()
                    .unwrap_or(self.db.rowversion + 1);
                Ok(SqlValue::Bytes(min.to_be_bytes().to_vec()))
            }
            other => Err(SqlError::new(
                195,
                format!("'{other}' is not a recognized built-in function name."),
            )),
        }
    }
}

fn literal(value: &ast::Value) -> Result<SqlValue, SqlError> {
    match value {
        ast::Value::Null => Ok(SqlValue::Null),
        ast::Value::Boolean(b) => Ok(SqlValue::Bool(*b)),
        ast::Value::Number(text, _) => {
            if let Ok(v) = text.parse::<i64>() {
                return Ok(SqlValue::Int(v));
            }
            let (int, frac) = text.split_once('.').unwrap_or((text, ""));
            let mantissa: i128 = format!("{int}{frac}")
                .parse()
                .map_err(|_| SqlError::new(8114, format!("cannot read the number {text}")))?;
            Ok(SqlValue::Decimal(mantissa, frac.len() as u8))
        }
        ast::Value::SingleQuotedString(s) | ast::Value::NationalStringLiteral(s) => {
            Ok(SqlValue::Text(s.clone()))
        }
        other => Err(SqlError::unsupported(format!("the literal {other}"))),
    }
}

fn cast(value: SqlValue, to: &SqlType) -> Result<SqlValue, SqlError> {
    let failed = |value: &SqlValue| {
        SqlError::new(
            8114,
            format!("Error converting {value:?} to {}.", to.name()),
        )
    };
    Ok(match (to, value) {
        (_, SqlValue::Null) => SqlValue::Null,
        (
            SqlType::BigInt | SqlType::Int | SqlType::SmallInt | SqlType::TinyInt,
            SqlValue::Bytes(b),
        ) => {
            let mut a = [0u8; 8];
            let start = 8usize.saturating_sub(b.len());
            a[start..].copy_from_slice(&b[b.len().saturating_sub(8)..]);
            SqlValue::Int(i64::from_be_bytes(a))
        }
        (
            SqlType::BigInt | SqlType::Int | SqlType::SmallInt | SqlType::TinyInt,
            SqlValue::Int(v),
        ) => SqlValue::Int(v),
        (
            SqlType::BigInt | SqlType::Int | SqlType::SmallInt | SqlType::TinyInt,
            SqlValue::Text(t),
        ) => SqlValue::Int(
            t.trim()
                .parse()
                .map_err(|_| failed(&SqlValue::Text(t.clone())))?,
        ),
        (SqlType::RowVersion | SqlType::VarBinary(_), SqlValue::Int(v)) => {
            SqlValue::Bytes(v.to_be_bytes().to_vec())
        }
        (SqlType::RowVersion | SqlType::VarBinary(_), SqlValue::Bytes(b)) => SqlValue::Bytes(b),
        (SqlType::NVarChar(_) | SqlType::VarChar(_), v) => SqlValue::Text(crate::wire::display(&v)),
        (SqlType::Float, SqlValue::Int(v)) => SqlValue::Float(v as f64),
        (SqlType::Float, SqlValue::Float(v)) => SqlValue::Float(v),
        (SqlType::Date, SqlValue::DateTime(t)) => SqlValue::Date(t.date()),
        (SqlType::Date, SqlValue::Date(d)) => SqlValue::Date(d),
        (SqlType::DateTime2(_), SqlValue::DateTime(t)) => SqlValue::DateTime(t),
        (SqlType::DateTime2(_), SqlValue::Date(d)) => {
            SqlValue::DateTime(d.and_hms_opt(0, 0, 0).unwrap_or_default())
        }
        (_, v) => return Err(failed(&v)),
    })
}

/// `OBJECT_ID('[schema].[name]')` (brackets and the schema optional; `dbo` by default).
fn object_id(db: &Database, name: &str) -> Option<i32> {
    let parts: Vec<String> = name
        .split('.')
        .map(|p| {
            p.trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned()
        })
        .collect();
    let (schema, table) = match parts.as_slice() {
        [table] => ("dbo", table.as_str()),
        [schema, table] => (schema.as_str(), table.as_str()),
        [_db, schema, table] => (schema.as_str(), table.as_str()),
        _ => return None,
    };
    db.table(schema, table).map(|t| t.object_id)
}

fn schema_id(db: &Database, schema: &str) -> i64 {
    if schema.eq_ignore_ascii_case("dbo") {
        return 1;
    }
    let mut names: Vec<String> = db
        .tables
        .iter()
        .map(|t| t.schema.to_ascii_lowercase())
        .filter(|s| s != "dbo")
        .collect();
    names.sort();
    names.dedup();
    names
        .iter()
        .position(|s| s.eq_ignore_ascii_case(schema))
        .map_or(0, |i| 5 + i as i64)
}

fn relation(
    db: &Database,
    factor: &TableFactor,
    params: &HashMap<String, SqlValue>,
) -> Result<Relation, SqlError> {
    let TableFactor::Table {
        name, alias, args, ..
    } = factor
    else {
        return Err(SqlError::unsupported("derived tables"));
    };
    let parts = ident_names(name);
    let mut names = vec![parts.last().cloned().unwrap_or_default()];
    if let Some(alias) = alias {
        names = vec![alias.name.value.clone()];
    }
    let mut relation = if let Some(args) = args {
        if !parts
            .last()
            .is_some_and(|p| p.eq_ignore_ascii_case("CHANGETABLE"))
        {
            return Err(SqlError::unsupported(format!("the table function {name}")));
        }
        change_table(db, &args.args, params)?
    } else {
        let (schema, table) = match parts.as_slice() {
            [table] => ("dbo".to_owned(), table.clone()),
            [schema, table] => (schema.clone(), table.clone()),
            [_db, schema, table] => (schema.clone(), table.clone()),
            _ => return Err(SqlError::new(208, format!("Invalid object name '{name}'."))),
        };
        if schema.eq_ignore_ascii_case("sys")
            && table.eq_ignore_ascii_case("dm_db_partition_stats")
            && db.deny_view_database_state
        {
            return Err(SqlError::new(
                300,
                format!(
                    "VIEW DATABASE STATE permission denied in database '{}'.",
                    db.name
                ),
            ));
        }
        if schema.eq_ignore_ascii_case("sys") {
            catalog(db, &table)
                .ok_or_else(|| SqlError::new(208, format!("Invalid object name 'sys.{table}'.")))?
        } else {
            let table = db
                .table(&schema, &table)
                .ok_or_else(|| SqlError::new(208, format!("Invalid object name '{name}'.")))?;
            base_table(table)
        }
    };
    relation.names = names;
    Ok(relation)
}

fn base_table(table: &Table) -> Relation {
    Relation {
        names: Vec::new(),
        columns: table
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.ty.clone(), c.nullable))
            .collect(),
        rows: table.rows.clone(),
        source: Some(table.name.clone()),
    }
}

fn change_table(
    db: &Database,
    args: &[FunctionArg],
    params: &HashMap<String, SqlValue>,
) -> Result<Relation, SqlError> {
    let [
        FunctionArg::Unnamed(FunctionArgExpr::Expr(table)),
        FunctionArg::Unnamed(FunctionArgExpr::Expr(version)),
    ] = args
    else {
        return Err(SqlError::new(
            102,
            "Incorrect syntax near 'CHANGETABLE': write CHANGETABLE(CHANGES table, version)",
        ));
    };
    let parts: Vec<String> = match table {
        Expr::Identifier(i) => vec!["dbo".to_owned(), i.value.clone()],
        Expr::CompoundIdentifier(parts) => parts.iter().map(|p| p.value.clone()).collect(),
        other => {
            return Err(SqlError::new(
                102,
                format!("Incorrect syntax near '{other}'."),
            ));
        }
    };
    let (schema, name) = (&parts[parts.len() - 2], &parts[parts.len() - 1]);
    let table = db
        .table(schema, name)
        .ok_or_else(|| SqlError::new(208, format!("Invalid object name '{schema}.{name}'.")))?;
    let tracking = table.change_tracking.as_ref().ok_or_else(|| {
        SqlError::new(
            22105,
            format!("Change tracking is not enabled on table '{schema}.{name}'."),
        )
    })?;
    let empty = Relation {
        names: Vec::new(),
        columns: Vec::new(),
        rows: Vec::new(),
        source: None,
    };
    let context = Context {
        db,
        relation: &empty,
        row: Vec::new(),
        params,
    };
    let since = match context.eval(version)? {
        SqlValue::Int(v) => Some(v),
        SqlValue::Null => None,
        other => {
            return Err(SqlError::new(
                22106,
                format!("The CHANGETABLE version must be a bigint, not {other:?}."),
            ));
        }
    };
    let key_columns: Vec<&crate::model::Column> = table
        .primary_key
        .as_ref()
        .map(|(_, cols)| {
            cols.iter()
                .filter_map(|c| table.column_index(c).map(|i| &table.columns[i]))
                .collect()
        })
        .unwrap_or_default();
    let mut columns: Vec<ResultColumn> = vec![
        ("SYS_CHANGE_VERSION".into(), SqlType::BigInt, true),
        ("SYS_CHANGE_CREATION_VERSION".into(), SqlType::BigInt, true),
        (
            "SYS_CHANGE_OPERATION".into(),
            SqlType::NVarChar(Some(1)),
            true,
        ),
        (
            "SYS_CHANGE_COLUMNS".into(),
            SqlType::VarBinary(Some(4100)),
            true,
        ),
        (
            "SYS_CHANGE_CONTEXT".into(),
            SqlType::VarBinary(Some(128)),
            true,
        ),
    ];
    for column in &key_columns {
        columns.push((column.name.clone(), column.ty.clone(), false));
    }
    let mut rows = Vec::new();
    for (key, change) in &tracking.changes {
        if since.is_some_and(|since| change.version <= since) {
            continue;
        }
        let mut row = vec![
            SqlValue::Int(change.version),
            change
                .creation_version
                .map_or(SqlValue::Null, SqlValue::Int),
            SqlValue::Text(change.operation.to_string()),
            SqlValue::Null,
            SqlValue::Null,
        ];
        for (part, column) in key.iter().zip(&key_columns) {
            row.push(match (part, &column.ty) {
                (crate::model::KeyPart::Int(v), _) => SqlValue::Int(*v),
                (crate::model::KeyPart::Text(t), _) => SqlValue::Text(t.clone()),
                (crate::model::KeyPart::Null, _) => SqlValue::Null,
                (crate::model::KeyPart::Other(t), _) => SqlValue::Text(t.clone()),
            });
        }
        rows.push(row);
    }
    Ok(Relation {
        names: Vec::new(),
        columns,
        rows,
        source: None,
    })
}

/// The catalog views, derived from the model.
fn catalog(db: &Database, view: &str) -> Option<Relation> {
    let int = |v: i64| SqlValue::Int(v);
    let text = |v: &str| SqlValue::Text(v.to_owned());
    let bit = |v: bool| SqlValue::Bool(v);
    let col = |name: &str, ty: SqlType| (name.to_owned(), ty, false);
    let (columns, rows): (Vec<ResultColumn>, Vec<Vec<SqlValue>>) =
        match view.to_ascii_lowercase().as_str() {
            "schemas" => {
                let mut schemas: Vec<(i64, String)> = vec![(1, "dbo".to_owned())];
                for table in &db.tables {
                    let id = schema_id(db, &table.schema);
                    if !schemas.iter().any(|(i, _)| *i == id) {
                        schemas.push((id, table.schema.clone()));
                    }
                }
                (
                    vec![
                        col("schema_id", SqlType::Int),
                        col("name", SqlType::NVarChar(Some(128))),
                    ],
                    schemas
                        .into_iter()
                        .map(|(id, name)| vec![int(id), SqlValue::Text(name)])
                        .collect(),
                )
            }
            "tables" | "views" => {
                let views = view.eq_ignore_ascii_case("views");
                (
                    vec![
                        col("object_id", SqlType::Int),
                        col("name", SqlType::NVarChar(Some(128))),
                        col("schema_id", SqlType::Int),
                        col("type", SqlType::NVarChar(Some(2))),
                    ],
                    db.tables
                        .iter()
                        .filter(|t| t.is_view == views)
                        .map(|t| {
                            vec![
                                int(i64::from(t.object_id)),
                                text(&t.name),
                                int(schema_id(db, &t.schema)),
                                text(if views { "V" } else { "U" }),
                            ]
                        })
                        .collect(),
                )
            }
            "columns" => (
                vec![
                    col("object_id", SqlType::Int),
                    col("column_id", SqlType::Int),
                    col("name", SqlType::NVarChar(Some(128))),
                    col("user_type_id", SqlType::Int),
                    col("max_length", SqlType::SmallInt),
                    col("precision", SqlType::TinyInt),
                    col("scale", SqlType::TinyInt),
                    col("is_nullable", SqlType::Bit),
                    col("is_identity", SqlType::Bit),
                    col("is_computed", SqlType::Bit),
                ],
                db.tables
                    .iter()
                    .flat_map(|t| {
                        t.columns.iter().enumerate().map(move |(i, c)| {
                            let (precision, scale) = c.ty.precision_scale();
                            vec![
                                int(i64::from(t.object_id)),
                                int(i as i64 + 1),
                                text(&c.name),
                                int(i64::from(c.ty.type_id())),
                                int(i64::from(c.ty.max_length())),
                                int(i64::from(precision)),
                                int(i64::from(scale)),
                                bit(c.nullable),
                                bit(c.identity),
                                bit(c.computed),
                            ]
                        })
                    })
                    .collect(),
            ),
            "types" => {
                let mut types: Vec<(i32, &'static str)> = db
                    .tables
                    .iter()
                    .flat_map(|t| t.columns.iter().map(|c| (c.ty.type_id(), c.ty.name())))
                    .collect();
                for ty in [
                    SqlType::TinyInt,
                    SqlType::SmallInt,
                    SqlType::Int,
                    SqlType::BigInt,
                    SqlType::Bit,
                    SqlType::Decimal(18, 0),
                    SqlType::Float,
                    SqlType::Real,
                    SqlType::NVarChar(None),
                    SqlType::VarChar(None),
                    SqlType::VarBinary(None),
                    SqlType::Date,
                    SqlType::Time(7),
                    SqlType::DateTime,
                    SqlType::DateTime2(7),
                    SqlType::DateTimeOffset(7),
                    SqlType::UniqueIdentifier,
                    SqlType::RowVersion,
                ] {
                    types.push((ty.type_id(), ty.name()));
                }
                types.sort();
                types.dedup();
                (
                    vec![
                        col("user_type_id", SqlType::Int),
                        col("system_type_id", SqlType::TinyInt),
                        col("name", SqlType::NVarChar(Some(128))),
                    ],
                    types
                        .into_iter()
                        .map(|(id, name)| {
                            vec![int(i64::from(id)), int(i64::from(id).min(255)), text(name)]
                        })
                        .collect(),
                )
            }
            "key_constraints" => (
                vec![
                    col("object_id", SqlType::Int),
                    col("name", SqlType::NVarChar(Some(128))),
                    col("parent_object_id", SqlType::Int),
                    col("type", SqlType::NVarChar(Some(2))),
                    col("unique_index_id", SqlType::Int),
                ],
                db.tables
                    .iter()
                    .flat_map(|t| {
                        let pk = t.primary_key.iter().map(move |(name, _)| {
                            vec![
                                int(i64::from(t.object_id) + 1),
                                text(name),
                                int(i64::from(t.object_id)),
                                text("PK"),
                                int(1),
                            ]
                        });
                        let uq = t.unique.iter().enumerate().map(move |(i, (name, _))| {
                            vec![
                                int(i64::from(t.object_id) + 2 + i as i64),
                                text(name),
                                int(i64::from(t.object_id)),
                                text("UQ"),
                                int(2 + i as i64),
                            ]
                        });
                        pk.chain(uq)
                    })
                    .collect(),
            ),
            "indexes" => (
                vec![
                    col("object_id", SqlType::Int),
                    col("index_id", SqlType::Int),
                    col("name", SqlType::NVarChar(Some(128))),
                    col("is_unique", SqlType::Bit),
                    col("is_primary_key", SqlType::Bit),
                    col("is_unique_constraint", SqlType::Bit),
                    col("type_desc", SqlType::NVarChar(Some(60))),
                ],
                db.tables
                    .iter()
                    .flat_map(|t| {
                        let pk = t.primary_key.iter().map(move |(name, _)| {
                            vec![
                                int(i64::from(t.object_id)),
                                int(1),
                                text(name),
                                bit(true),
                                bit(true),
                                bit(false),
                                text("CLUSTERED"),
                            ]
                        });
                        let uq = t.unique.iter().enumerate().map(move |(i, (name, _))| {
                            vec![
                                int(i64::from(t.object_id)),
                                int(2 + i as i64),
                                text(name),
                                bit(true),
                                bit(false),
                                bit(true),
                                text("NONCLUSTERED"),
                            ]
                        });
                        pk.chain(uq)
                    })
                    .collect(),
            ),
            "index_columns" => (
                vec![
                    col("object_id", SqlType::Int),
                    col("index_id", SqlType::Int),
                    col("column_id", SqlType::Int),
                    col("key_ordinal", SqlType::TinyInt),
                    col("is_included_column", SqlType::Bit),
                ],
                db.tables
                    .iter()
                    .flat_map(|t| {
                        let indexes = t.primary_key.iter().map(|(_, cols)| (1i64, cols)).chain(
                            t.unique
                                .iter()
                                .enumerate()
                                .map(|(i, (_, cols))| (2 + i as i64, cols)),
                        );
                        indexes
                            .flat_map(|(index_id, cols)| {
                                cols.iter().enumerate().filter_map(move |(ordinal, c)| {
                                    let column_id = t.column_index(c)? as i64 + 1;
                                    Some(vec![
                                        int(i64::from(t.object_id)),
                                        int(index_id),
                                        int(column_id),
                                        int(ordinal as i64 + 1),
                                        bit(false),
                                    ])
                                })
                            })
                            .collect::<Vec<_>>()
                    })
                    .collect(),
            ),
            "dm_db_partition_stats" | "partitions" => (
                vec![
                    col("object_id", SqlType::Int),
                    col("index_id", SqlType::Int),
                    col(
                        if view.eq_ignore_ascii_case("partitions") {
                            "rows"
                        } else {
                            "row_count"
                        },
                        SqlType::BigInt,
                    ),
                ],
                db.tables
                    .iter()
                    .filter(|t| !t.is_view)
                    .map(|t| {
                        vec![
                            int(i64::from(t.object_id)),
                            int(if t.primary_key.is_some() { 1 } else { 0 }),
                            int(t.rows.len() as i64),
                        ]
                    })
                    .collect(),
            ),
            "change_tracking_tables" => (
                vec![
                    col("object_id", SqlType::Int),
                    col("min_valid_version", SqlType::BigInt),
                    col("is_track_columns_updated_on", SqlType::Bit),
                ],
                db.tables
                    .iter()
                    .filter_map(|t| {
                        let ct = t.change_tracking.as_ref()?;
                        Some(vec![
                            int(i64::from(t.object_id)),
                            int(ct.min_valid_version),
                            bit(false),
                        ])
                    })
                    .collect(),
            ),
            _ => return None,
        };
    Some(Relation {
        names: Vec::new(),
        columns,
        rows,
        source: None,
    })
}
