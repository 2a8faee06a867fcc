//! Sharding predicates in CEL (the Common Expression Language): `status == 'Active'`,
//! `budget > 100000.0 && region in ['EU', 'UK']`, `ended_on < now - duration('8760h')`.
//!
//! Each row's mapped columns are CEL variables (dates and timestamps become CEL timestamps,
//! decimals doubles, NULL `null`), plus `now`, the time the batch is routed. Targets are tried in
//! priority order; the first predicate that is `true` wins; none → the default target. A predicate
//! that errors or is not a boolean for a row routes that row to the dead-letter queue, naming the
//! target, the expression and the reason.

use std::sync::Arc;

use cel::{Context, Program};
use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use syncbridge_api::{RouteDecision, RowView, RuleError, ShardRouter, Value};

/// A compiled CEL predicate per target, in priority order.
pub struct CelRouter {
    rules: Vec<CompiledRule>,
    /// The standard environment, built once: building it per row dominated routing time.
    env: Arc<cel::Env>,
    clock: Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>,
}

impl std::fmt::Debug for CelRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CelRouter")
            .field(
                "rules",
                &self
                    .rules
                    .iter()
                    .map(|r| (&r.target, &r.source))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

struct CompiledRule {
    target: String,
    source: String,
    program: Program,
}

impl CelRouter {
    /// Compiles `(target, predicate)` pairs; a syntax error names the target and the expression.
    pub fn new(rules: &[(String, String)]) -> Result<Self, RuleError> {
        let compiled = rules
            .iter()
            .map(|(target, source)| {
                let program = Program::compile(source).map_err(|error| {
                    RuleError::new(format!(
                        "the predicate of target `{target}` is not valid CEL: `{source}`: {error}"
                    ))
                })?;
                Ok(CompiledRule {
                    target: target.clone(),
                    source: source.clone(),
                    program,
                })
            })
            .collect::<Result<_, RuleError>>()?;
        Ok(Self {
            rules: compiled,
            env: Arc::new(cel::Env::stdlib()),
            clock: Arc::new(Utc::now),
        })
    }

    /// Uses `clock` for `now` (tests pin the time).
    pub fn with_clock(mut self, clock: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    fn route_row(&self, base: &Context<'_, '_>, row: &RowView<'_>) -> RouteDecision {
        let mut scope = base.new_inner_scope();
        for (name, value) in row.columns.iter().zip(row.values) {
            scope.add_variable_from_value(name.clone(), to_cel(value));
        }
        for rule in &self.rules {
            match rule.program.execute(&scope) {
                Ok(cel::Value::Bool(true)) => return RouteDecision::Target(rule.target.clone()),
                Ok(cel::Value::Bool(false)) => {}
                Ok(other) => {
                    return RouteDecision::Failed(RuleError::new(format!(
                        "the predicate of target `{}` (`{}`) gave {:?}, not a boolean",
                        rule.target,
                        rule.source,
                        other.type_of()
                    )));
                }
                Err(error) => {
                    return RouteDecision::Failed(RuleError::new(format!(
                        "the predicate of target `{}` (`{}`) failed: {error}",
                        rule.target, rule.source
                    )));
                }
            }
        }
        RouteDecision::Default
    }
}

impl ShardRouter for CelRouter {
    fn route(&self, rows: &[RowView<'_>]) -> Vec<RouteDecision> {
        let mut base = Context::with_env(self.env.clone());
        let now: DateTime<FixedOffset> = (self.clock)().fixed_offset();
        base.add_variable_from_value("now", cel::Value::Timestamp(now));
        rows.iter().map(|row| self.route_row(&base, row)).collect()
    }

    /// CEL has no other outside input than `now` (a column named `now` counts too).
    fn depends_only_on_row(&self) -> bool {
        !self
            .rules
            .iter()
            .any(|rule| rule.program.references().has_variable("now"))
    }
}

fn utc_midnight(date: chrono::NaiveDate) -> DateTime<FixedOffset> {
    Utc.from_utc_datetime(&date.and_time(chrono::NaiveTime::MIN))
        .fixed_offset()
}

/// Converts a row value into CEL.
fn to_cel(value: &Value) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(v) => cel::Value::Bool(*v),
        Value::Int(v) => cel::Value::Int(*v),
        Value::Float(v) => cel::Value::Float(*v),
        Value::Decimal(v) => cel::Value::Float(v.to_f64()),
        Value::Text(v) => cel::Value::String(Arc::new(v.clone())),
        Value::Bytes(v) => cel::Value::Bytes(Arc::new(v.clone())),
        Value::Date(v) => cel::Value::Timestamp(utc_midnight(*v)),
        Value::Time(v) => cel::Value::String(Arc::new(v.to_string())),
        Value::Timestamp(v) => cel::Value::Timestamp(Utc.from_utc_datetime(v).fixed_offset()),
        Value::TimestampTz(v) => cel::Value::Timestamp(*v),
        Value::Uuid(v) => cel::Value::String(Arc::new(v.to_string())),
        Value::Json(v) => json_to_cel(v),
    }
}

fn json_to_cel(value: &serde_json::Value) -> cel::Value {
    match value {
        serde_json::Value::Null => cel::Value::Null,
        serde_json::Value::Bool(b) => cel::Value::Bool(*b),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(cel::Value::Int)
            .unwrap_or_else(|| cel::Value::Float(n.as_f64().unwrap_or(f64::NAN))),
        serde_json::Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(items) => {
            cel::Value::List(Arc::new(items.iter().map(json_to_cel).collect()))
        }
        serde_json::Value::Object(map) => {
            let entries: std::collections::HashMap<String, cel::Value> = map
                .iter()
                .map(|(k, v)| (k.clone(), json_to_cel(v)))
                .collect();
            entries.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> CelRouter {
        let rules = vec![
            ("Active".to_owned(), "status == 'Active'".to_owned()),
            (
                "Closed".to_owned(),
                "status == 'Closed' && ended_on > now - duration('8760h')".to_owned(),
            ),
        ];
        let pinned = Utc
            .with_ymd_and_hms(2026, 6, 1, 12, 0, 0)
            .single()
            .expect("valid time");
        CelRouter::new(&rules)
            .expect("compiles")
            .with_clock(move || pinned)
    }

    fn route(status: Value, ended_on: Value) -> RouteDecision {
        let columns = vec!["status".to_owned(), "ended_on".to_owned()];
        let values = vec![status, ended_on];
        router()
            .route(&[RowView {
                columns: &columns,
                values: &values,
            }])
            .remove(0)
    }

    fn date(y: i32, m: u32, d: u32) -> Value {
        Value::Date(chrono::NaiveDate::from_ymd_opt(y, m, d).expect("valid date"))
    }

    #[test]
    fn seed_example_active_closed_archived() {
        assert_eq!(
            route(Value::from("Active"), Value::Null),
            RouteDecision::Target("Active".into())
        );
        assert_eq!(
            route(Value::from("Closed"), date(2026, 1, 10)),
            RouteDecision::Target("Closed".into())
        );
        // Closed more than 365 days ago: no predicate matches, so the default (Archived) takes it.
        assert_eq!(
            route(Value::from("Closed"), date(2024, 1, 10)),
            RouteDecision::Default
        );
        assert_eq!(
            route(Value::from("On hold"), Value::Null),
            RouteDecision::Default
        );
    }

    #[test]
    fn only_predicates_without_now_depend_on_the_row_alone() {
        assert!(!router().depends_only_on_row());
        let pure = CelRouter::new(&[
            ("Active".to_owned(), "status == 'Active'".to_owned()),
            (
                "Big".to_owned(),
                "budget > 10.0 || region in ['EU']".to_owned(),
            ),
        ])
        .expect("compiles");
        assert!(pure.depends_only_on_row());
        let nested = CelRouter::new(&[(
            "Old".to_owned(),
            "status == 'Closed' && (ended_on < now - duration('24h'))".to_owned(),
        )])
        .expect("compiles");
        assert!(!nested.depends_only_on_row());
    }

    #[test]
    fn comparisons_in_and_null_checks() {
        let rules = vec![
            (
                "Big".to_owned(),
                "budget >= 100000.0 && region in ['EU', 'UK']".to_owned(),
            ),
            ("NoOwner".to_owned(), "owner == null".to_owned()),
        ];
        let router = CelRouter::new(&rules).expect("compiles");
        let columns = vec!["budget".to_owned(), "region".to_owned(), "owner".to_owned()];
        let big = vec![
            Value::Decimal("250000.00".parse().expect("valid")),
            Value::from("EU"),
            Value::from("ada"),
        ];
        let orphan = vec![
            Value::Decimal("5".parse().expect("valid")),
            Value::from("US"),
            Value::Null,
        ];
        let decisions = router.route(&[
            RowView {
                columns: &columns,
                values: &big,
            },
            RowView {
                columns: &columns,
                values: &orphan,
            },
        ]);
        assert_eq!(
            decisions,
            vec![
                RouteDecision::Target("Big".into()),
                RouteDecision::Target("NoOwner".into())
            ]
        );
    }

    #[test]
    fn a_failing_predicate_fails_only_that_row() {
        let rules = vec![("Odd".to_owned(), "count % 2 == 1".to_owned())];
        let router = CelRouter::new(&rules).expect("compiles");
        let columns = vec!["count".to_owned()];
        let good = vec![Value::Int(3)];
        let bad = vec![Value::from("three")];
        let decisions = router.route(&[
            RowView {
                columns: &columns,
                values: &bad,
            },
            RowView {
                columns: &columns,
                values: &good,
            },
        ]);
        match &decisions[0] {
            RouteDecision::Failed(error) => assert!(error.message.contains("Odd"), "{error}"),
            other => panic!("expected a failure, got {other:?}"),
        }
        assert_eq!(decisions[1], RouteDecision::Target("Odd".into()));
    }

    #[test]
    fn non_boolean_results_and_syntax_errors_are_explained() {
        let router = CelRouter::new(&[("X".to_owned(), "1 + 1".to_owned())]).expect("compiles");
        let decision = router
            .route(&[RowView {
                columns: &[],
                values: &[],
            }])
            .remove(0);
        assert!(
            matches!(decision, RouteDecision::Failed(e) if e.message.contains("not a boolean"))
        );
        let error =
            CelRouter::new(&[("X".to_owned(), "status ==".to_owned())]).expect_err("bad syntax");
        assert!(
            error.message.contains("target `X`") && error.message.contains("status =="),
            "{error}"
        );
    }
}
