//! Field mappings: which source columns become which list columns, through which rules.
//!
//! Only `PUSH_ONLY` and `BIDIRECTIONAL` mappings are pushed, and never to a SharePoint system
//! field. Transforms run in mapping order; a rule that fails fails the row (it goes to the
//! dead-letter queue with the rule's message), never the batch.

use std::sync::Arc;

use syncbridge_api::{FieldRule, Registry, Row, RowView, RuleError, Value, WasmRef};

use crate::rules::{build_rule, parse_rule_spec, unquote};

/// A built-in rule by name, or `wasm:MODULE#FUNCTION(args…)` through the registry's WASM host.
fn build_any_rule(
    registry: &Registry,
    text: &str,
    source_column: &str,
) -> Result<Box<dyn FieldRule>, RuleError> {
    if !text.trim_start().starts_with("wasm:") {
        return build_rule(registry, text);
    }
    let reference = WasmRef::parse(text)?;
    // Arguments ride on the function: `wasm:format.wasm#prefix('PRJ-')`.
    let call = parse_rule_spec(&reference.function)?;
    let args: Vec<String> = call.args.iter().map(|a| unquote(a).0.to_owned()).collect();
    let reference = WasmRef {
        module: reference.module,
        function: call.name,
    };
    registry.wasm_rules()?(&reference, source_column, &args)
}

/// One mapping as the meta-store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingSpec {
    pub source: String,
    pub target: String,
    /// `PUSH_ONLY`, `PULL_ONLY` or `BIDIRECTIONAL`.
    pub direction: String,
    pub transform: Option<String>,
    pub is_system_field: bool,
}

impl MappingSpec {
    /// Whether a push writes this field.
    pub fn is_pushed(&self) -> bool {
        !self.is_system_field && matches!(self.direction.as_str(), "PUSH_ONLY" | "BIDIRECTIONAL")
    }
}

struct Compiled {
    source: String,
    /// Shared by every mapped row's field (a copy per row cost an allocation per field).
    target: Arc<str>,
    rule: Option<Box<dyn FieldRule>>,
    rule_text: Option<String>,
}

/// Mappings compiled once per run.
pub struct Mapper {
    mappings: Vec<Compiled>,
}

impl std::fmt::Debug for Mapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapper")
            .field(
                "mappings",
                &self
                    .mappings
                    .iter()
                    .map(|m| (&m.source, &m.target, &m.rule_text))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A pushed field: the target column (shared by the rows of a mapping) and its value.
pub type Field = (Arc<str>, Value);

/// Whether [`Mapper::map_batch_with`] builds each row's [`MappedRow::view`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceView {
    Keep,
    /// The rows' `source_values` stay empty: nothing will read their view.
    Skip,
}

/// A row after mapping: the source view (transformed values, by source column, for routing) and
/// the fields to push (by target column).
#[derive(Debug, Clone, PartialEq)]
pub struct MappedRow {
    /// Shared by the rows of a batch.
    pub source_columns: Arc<[String]>,
    pub source_values: Vec<Value>,
    pub fields: Vec<Field>,
}

impl MappedRow {
    pub fn view(&self) -> RowView<'_> {
        RowView {
            columns: &self.source_columns,
            values: &self.source_values,
        }
    }
}

impl Mapper {
    /// Whether every rule's result depends on the row alone
    /// ([`FieldRule::depends_only_on_row`]).
    pub fn depends_only_on_row(&self) -> bool {
        self.mappings
            .iter()
            .filter_map(|m| m.rule.as_deref())
            .all(FieldRule::depends_only_on_row)
    }

    /// Compiles the pushed mappings; an unknown or malformed rule names the mapping.
    pub fn new(registry: &Registry, specs: &[MappingSpec]) -> Result<Self, RuleError> {
        let mappings = specs
            .iter()
            .filter(|spec| spec.is_pushed())
            .map(|spec| {
                let rule = spec
                    .transform
                    .as_deref()
                    .map(|text| {
                        build_any_rule(registry, text, &spec.source).map_err(|e| {
                            RuleError::new(format!(
                                "mapping {} → {}: {}",
                                spec.source, spec.target, e.message
                            ))
                        })
                    })
                    .transpose()?;
                Ok(Compiled {
                    source: spec.source.clone(),
                    target: spec.target.as_str().into(),
                    rule,
                    rule_text: spec.transform.clone(),
                })
            })
            .collect::<Result<_, RuleError>>()?;
        Ok(Self { mappings })
    }

    /// Source columns a run reads for the mappings: the mapped columns, then those their rules
    /// read besides ([`FieldRule::columns`]), each once.
    pub fn source_columns(&self) -> Vec<String> {
        let mut columns: Vec<String> = Vec::new();
        for mapping in &self.mappings {
            let read_by_rule = mapping.rule.iter().flat_map(|rule| rule.columns());
            for column in std::iter::once(mapping.source.clone()).chain(read_by_rule) {
                if !columns.contains(&column) {
                    columns.push(column);
                }
            }
        }
        columns
    }

    /// Maps one row read with `columns`.
    pub fn map_row(&self, columns: &[String], row: &Row) -> Result<MappedRow, RuleError> {
        self.map_batch(columns, &[row])
            .pop()
            .unwrap_or_else(|| Err(RuleError::new("no row")))
    }

    /// Maps rows read with `columns`, one result per row. Each rule runs once per batch
    /// ([`FieldRule::apply_batch`]) over the rows that have not failed yet; a rule sees the
    /// row as read.
    pub fn map_batch(
        &self,
        columns: &[String],
        rows: &[&Row],
    ) -> Vec<Result<MappedRow, RuleError>> {
        self.map_batch_with(columns, rows, SourceView::Keep)
    }

    /// [`Mapper::map_batch`], building each row's [`MappedRow::view`] only when asked (only a
    /// router reads it, and it costs a copy of every value of every row).
    pub fn map_batch_with(
        &self,
        columns: &[String],
        rows: &[&Row],
        view: SourceView,
    ) -> Vec<Result<MappedRow, RuleError>> {
        let mut indexes = Vec::with_capacity(self.mappings.len());
        for mapping in &self.mappings {
            match columns.iter().position(|c| *c == mapping.source) {
                Some(index) => indexes.push(index),
                None => {
                    let error = RuleError::new(format!(
                        "the source row has no column `{}`",
                        mapping.source
                    ));
                    return rows.iter().map(|_| Err(error.clone())).collect();
                }
            }
        }
        let mut mapped: Vec<Result<Vec<Field>, RuleError>> = rows
            .iter()
            .map(|_| Ok(Vec::with_capacity(self.mappings.len())))
            .collect();
        for (mapping, &index) in self.mappings.iter().zip(&indexes) {
            let alive: Vec<usize> = (0..rows.len()).filter(|&i| mapped[i].is_ok()).collect();
            let results: Vec<Result<Value, RuleError>> = match &mapping.rule {
                None => alive
                    .iter()
                    .map(|&i| Ok(rows[i].values[index].clone()))
                    .collect(),
                Some(rule) => {
                    let values = alive
                        .iter()
                        .map(|&i| rows[i].values[index].clone())
                        .collect();
                    let views: Vec<RowView<'_>> = alive
                        .iter()
                        .map(|&i| RowView {
                            columns,
                            values: &rows[i].values,
                        })
                        .collect();
                    rule.apply_batch(values, &views)
                }
            };
            for (i, result) in alive.into_iter().zip(results) {
                match result {
                    Ok(value) => {
                        if let Ok(fields) = &mut mapped[i] {
                            fields.push((mapping.target.clone(), value));
                        }
                    }
                    Err(error) => {
                        mapped[i] = Err(RuleError::new(format!(
                            "transform `{}` on {} failed: {}",
                            mapping.rule_text.as_deref().unwrap_or_default(),
                            mapping.source,
                            error.message
                        )));
                    }
                }
            }
        }
        let shared: Arc<[String]> = columns.into();
        mapped
            .into_iter()
            .zip(rows)
            .map(|(fields, row)| {
                let fields = fields?;
                let source_values = match view {
                    SourceView::Keep => {
                        let mut values = row.values.clone();
                        for ((_, value), &index) in fields.iter().zip(&indexes) {
                            values[index] = value.clone();
                        }
                        values
                    }
                    SourceView::Skip => Vec::new(),
                };
                Ok(MappedRow {
                    source_columns: shared.clone(),
                    source_values,
                    fields,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(source: &str, target: &str, direction: &str, transform: Option<&str>) -> MappingSpec {
        MappingSpec {
            source: source.into(),
            target: target.into(),
            direction: direction.into(),
            transform: transform.map(Into::into),
            is_system_field: target == "Created",
        }
    }

    fn registry() -> Registry {
        let mut registry = Registry::new();
        crate::rules::register_builtin_rules(&mut registry);
        registry
    }

    #[test]
    fn only_pushed_non_system_fields_are_written() {
        let specs = vec![
            spec("name", "Title", "PUSH_ONLY", Some("trim")),
            spec("status", "Status", "BIDIRECTIONAL", Some("upper")),
            spec("notes", "Notes", "PULL_ONLY", None),
            spec("created", "Created", "PUSH_ONLY", None),
        ];
        let mapper = Mapper::new(&registry(), &specs).expect("compiles");
        let columns: Vec<String> = ["name", "status", "notes", "created"]
            .map(String::from)
            .to_vec();
        let row = Row::new(vec![
            Value::from(" Apollo "),
            Value::from("active"),
            Value::from("n"),
            Value::Int(1),
        ]);
        let mapped = mapper.map_row(&columns, &row).expect("maps");
        assert_eq!(
            mapped.fields,
            vec![
                ("Title".into(), Value::from("Apollo")),
                ("Status".into(), Value::from("ACTIVE"))
            ]
        );
        assert_eq!(
            mapped.view().get("status"),
            Some(&Value::from("ACTIVE")),
            "routing sees transformed values"
        );
    }

    #[test]
    fn the_read_includes_the_columns_rules_read() {
        let specs = vec![
            spec(
                "first",
                "Title",
                "PUSH_ONLY",
                Some("concat(first, ' ', last)"),
            ),
            spec("status", "Status", "PUSH_ONLY", None),
            spec("notes", "Notes", "PULL_ONLY", Some("concat(notes, secret)")),
        ];
        let mapper = Mapper::new(&registry(), &specs).expect("compiles");
        assert_eq!(mapper.source_columns(), ["first", "last", "status"]);
        let columns: Vec<String> = ["first", "status", "last"].map(String::from).to_vec();
        let row = Row::new(vec![
            Value::from("Ada"),
            Value::from("active"),
            Value::from("Lovelace"),
        ]);
        let mapped = mapper.map_row(&columns, &row).expect("maps");
        assert_eq!(
            mapped.fields[0],
            ("Title".into(), Value::from("Ada Lovelace"))
        );
    }

    #[test]
    fn a_failing_rule_names_the_mapping() {
        let mapper = Mapper::new(
            &registry(),
            &[spec("budget", "Budget", "PUSH_ONLY", Some("upper"))],
        )
        .expect("compiles");
        let error = mapper
            .map_row(&["budget".to_owned()], &Row::new(vec![Value::Int(5)]))
            .expect_err("upper on int");
        assert!(
            error.message.contains("budget") && error.message.contains("upper"),
            "{error}"
        );
        let error = Mapper::new(&registry(), &[spec("a", "A", "PUSH_ONLY", Some("nope"))])
            .expect_err("unknown rule");
        assert!(error.message.contains("a → A"), "{error}");
    }
}
