//! Built-in transform rules, named in a mapping's `transform_rule`: `trim`, `upper`, `lower`,
//! `round(N)`, `date_format('%d.%m.%Y')`, `default('n/a')`, `map(A=Active, C=Closed, *=Other)`,
//! `concat(first_name, ' ', last_name)`.
//!
//! Arguments are separated by commas; a quoted argument (`'…'` or `"…"`) is a literal, a bare one
//! is a literal for `round`/`map` and a column name for `concat`. Rules are registered in the same
//! [`Registry`] the WASM rules join, so `syncbridge` knows every rule by one list of names.

use std::sync::Arc;

use syncbridge_api::{FieldRule, Registry, RowView, RuleError, Value};

use crate::identity::canonical_text;

/// A parsed `name(arg, …)` rule reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    pub name: String,
    /// Arguments as written, quotes kept (see [`unquote`]).
    pub args: Vec<String>,
}

/// Parses `name` or `name(arg, 'quoted, with comma', …)`.
pub fn parse_rule_spec(spec: &str) -> Result<RuleSpec, RuleError> {
    let spec = spec.trim();
    let Some(open) = spec.find('(') else {
        if spec.is_empty() {
            return Err(RuleError::new("empty transform rule"));
        }
        return Ok(RuleSpec {
            name: spec.to_owned(),
            args: Vec::new(),
        });
    };
    let name = spec[..open].trim().to_owned();
    let inner = spec[open + 1..]
        .strip_suffix(')')
        .ok_or_else(|| RuleError::new(format!("`{spec}`: missing closing parenthesis")))?;
    let mut args = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    for ch in inner.chars() {
        match (quote, ch) {
            (None, '\'' | '"') => {
                quote = Some(ch);
                current.push(ch);
            }
            (Some(q), c) if c == q => {
                quote = None;
                current.push(ch);
            }
            (None, ',') => args.push(std::mem::take(&mut current).trim().to_owned()),
            _ => current.push(ch),
        }
    }
    if quote.is_some() {
        return Err(RuleError::new(format!("`{spec}`: unclosed quote")));
    }
    if !current.trim().is_empty() || !args.is_empty() {
        args.push(current.trim().to_owned());
    }
    Ok(RuleSpec { name, args })
}

/// The literal text of an argument, and whether it was quoted.
pub fn unquote(arg: &str) -> (&str, bool) {
    for q in ['\'', '"'] {
        if let Some(inner) = arg.strip_prefix(q).and_then(|a| a.strip_suffix(q)) {
            return (inner, true);
        }
    }
    (arg, false)
}

/// Registers every built-in rule.
pub fn register_builtin_rules(registry: &mut Registry) {
    registry.register_rule(
        "trim",
        Arc::new(|args| no_args("trim", args, TextRule(str::trim, "trim"))),
    );
    registry.register_rule(
        "upper",
        Arc::new(|args| no_args("upper", args, Case::Upper)),
    );
    registry.register_rule(
        "lower",
        Arc::new(|args| no_args("lower", args, Case::Lower)),
    );
    registry.register_rule("round", Arc::new(Round::build));
    registry.register_rule("date_format", Arc::new(DateFormat::build));
    registry.register_rule("default", Arc::new(DefaultValue::build));
    registry.register_rule("map", Arc::new(MapValues::build));
    registry.register_rule("concat", Arc::new(Concat::build));
}

/// Builds a rule from a spec string with the rules of `registry`.
pub fn build_rule(registry: &Registry, spec: &str) -> Result<Box<dyn FieldRule>, RuleError> {
    let parsed = parse_rule_spec(spec)?;
    let factory = registry
        .rule(&parsed.name)
        .map_err(|e| RuleError::new(e.to_string()))?;
    factory(&parsed.args)
}

fn no_args(
    name: &str,
    args: &[String],
    rule: impl FieldRule + 'static,
) -> Result<Box<dyn FieldRule>, RuleError> {
    if args.is_empty() {
        Ok(Box::new(rule))
    } else {
        Err(RuleError::new(format!(
            "`{name}` takes no arguments, got {}",
            args.len()
        )))
    }
}

fn needs_text(rule: &str, value: &Value) -> RuleError {
    RuleError::new(format!(
        "`{rule}` needs text, got a {} value `{value}`",
        value.type_name()
    ))
}

struct TextRule(fn(&str) -> &str, &'static str);

impl FieldRule for TextRule {
    fn depends_only_on_row(&self) -> bool {
        true
    }

    fn apply(&self, value: Value, _row: RowView<'_>) -> Result<Value, RuleError> {
        match value {
            Value::Null => Ok(Value::Null),
            Value::Text(text) => Ok(Value::Text((self.0)(&text).to_owned())),
            other => Err(needs_text(self.1, &other)),
        }
    }
}

enum Case {
    Upper,
    Lower,
}

impl FieldRule for Case {
    fn depends_only_on_row(&self) -> bool {
        true
    }

    fn apply(&self, value: Value, _row: RowView<'_>) -> Result<Value, RuleError> {
        match (self, value) {
            (_, Value::Null) => Ok(Value::Null),
            (Case::Upper, Value::Text(text)) => Ok(Value::Text(text.to_uppercase())),
            (Case::Lower, Value::Text(text)) => Ok(Value::Text(text.to_lowercase())),
            (Case::Upper, other) => Err(needs_text("upper", &other)),
            (Case::Lower, other) => Err(needs_text("lower", &other)),
        }
    }
}

struct Round(u8);

impl Round {
    fn build(args: &[String]) -> Result<Box<dyn FieldRule>, RuleError> {
        let digits = match args {
            [] => 0,
            [n] => unquote(n)
                .0
                .parse::<u8>()
                .ok()
                .filter(|d| *d <= 38)
                .ok_or_else(|| {
                    RuleError::new(format!(
                        "`round({n})`: the argument must be a number of digits, 0 to 38"
                    ))
                })?,
            _ => {
                return Err(RuleError::new(
                    "`round` takes one argument: the number of digits",
                ));
            }
        };
        Ok(Box::new(Round(digits)))
    }
}

impl FieldRule for Round {
    fn depends_only_on_row(&self) -> bool {
        true
    }

    fn apply(&self, value: Value, _row: RowView<'_>) -> Result<Value, RuleError> {
        match value {
            Value::Null | Value::Int(_) => Ok(value),
            Value::Decimal(d) => Ok(Value::Decimal(d.round_to(self.0))),
            Value::Float(f) => {
                let factor = 10f64.powi(i32::from(self.0));
                Ok(Value::Float((f * factor).round() / factor))
            }
            other => Err(RuleError::new(format!(
                "`round` needs a number, got a {} value `{other}`",
                other.type_name()
            ))),
        }
    }
}

struct DateFormat(String);

impl DateFormat {
    fn build(args: &[String]) -> Result<Box<dyn FieldRule>, RuleError> {
        let [format] = args else {
            return Err(RuleError::new(
                "`date_format` takes one argument, e.g. date_format('%d.%m.%Y')",
            ));
        };
        let (format, _) = unquote(format);
        let items: Vec<_> = chrono::format::StrftimeItems::new(format).collect();
        if items
            .iter()
            .any(|item| matches!(item, chrono::format::Item::Error))
        {
            return Err(RuleError::new(format!(
                "`{format}` is not a valid strftime format"
            )));
        }
        Ok(Box::new(DateFormat(format.to_owned())))
    }
}

impl FieldRule for DateFormat {
    fn depends_only_on_row(&self) -> bool {
        true
    }

    fn apply(&self, value: Value, _row: RowView<'_>) -> Result<Value, RuleError> {
        let text = match &value {
            Value::Null => return Ok(Value::Null),
            Value::Date(d) => d.format(&self.0).to_string(),
            Value::Timestamp(t) => t.format(&self.0).to_string(),
            Value::TimestampTz(t) => t.format(&self.0).to_string(),
            Value::Time(t) => t.format(&self.0).to_string(),
            other => {
                return Err(RuleError::new(format!(
                    "`date_format` needs a date or time, got a {} value `{other}`",
                    other.type_name()
                )));
            }
        };
        Ok(Value::Text(text))
    }
}

struct DefaultValue(String);

impl DefaultValue {
    fn build(args: &[String]) -> Result<Box<dyn FieldRule>, RuleError> {
        match args {
            [value] => Ok(Box::new(DefaultValue(unquote(value).0.to_owned()))),
            _ => Err(RuleError::new(
                "`default` takes one argument: the value for NULL, e.g. default('n/a')",
            )),
        }
    }
}

impl FieldRule for DefaultValue {
    fn depends_only_on_row(&self) -> bool {
        true
    }

    fn apply(&self, value: Value, _row: RowView<'_>) -> Result<Value, RuleError> {
        match value {
            Value::Null => Ok(Value::Text(self.0.clone())),
            Value::Text(text) if text.is_empty() => Ok(Value::Text(self.0.clone())),
            other => Ok(other),
        }
    }
}

struct MapValues {
    pairs: Vec<(String, String)>,
    otherwise: Option<String>,
}

impl MapValues {
    fn build(args: &[String]) -> Result<Box<dyn FieldRule>, RuleError> {
        if args.is_empty() {
            return Err(RuleError::new(
                "`map` needs pairs, e.g. map(A=Active, C=Closed, *=Other)",
            ));
        }
        let mut pairs = Vec::new();
        let mut otherwise = None;
        for arg in args {
            let Some((from, to)) = arg.split_once('=') else {
                return Err(RuleError::new(format!(
                    "`map` argument `{arg}` is not FROM=TO"
                )));
            };
            let (from, to) = (
                unquote(from.trim()).0.to_owned(),
                unquote(to.trim()).0.to_owned(),
            );
            if from == "*" {
                otherwise = Some(to);
            } else {
                pairs.push((from, to));
            }
        }
        Ok(Box::new(MapValues { pairs, otherwise }))
    }
}

impl FieldRule for MapValues {
    fn depends_only_on_row(&self) -> bool {
        true
    }

    fn apply(&self, value: Value, _row: RowView<'_>) -> Result<Value, RuleError> {
        let Some(text) = canonical_text(&value) else {
            return Ok(Value::Null);
        };
        if let Some((_, to)) = self.pairs.iter().find(|(from, _)| *from == text) {
            return Ok(Value::Text(to.clone()));
        }
        Ok(match &self.otherwise {
            Some(to) => Value::Text(to.clone()),
            None => value,
        })
    }
}

enum Part {
    Literal(String),
    Column(String),
}

struct Concat(Vec<Part>);

impl Concat {
    fn build(args: &[String]) -> Result<Box<dyn FieldRule>, RuleError> {
        if args.is_empty() {
            return Err(RuleError::new(
                "`concat` needs columns and 'literals', e.g. concat(first, ' ', last)",
            ));
        }
        let parts = args
            .iter()
            .map(|arg| match unquote(arg) {
                (text, true) => Part::Literal(text.to_owned()),
                (name, false) => Part::Column(name.to_owned()),
            })
            .collect();
        Ok(Box::new(Concat(parts)))
    }
}

impl FieldRule for Concat {
    fn depends_only_on_row(&self) -> bool {
        true
    }

    fn columns(&self) -> Vec<String> {
        self.0
            .iter()
            .filter_map(|part| match part {
                Part::Column(name) => Some(name.clone()),
                Part::Literal(_) => None,
            })
            .collect()
    }

    fn apply(&self, _value: Value, row: RowView<'_>) -> Result<Value, RuleError> {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Column(name) => {
                    let value = row.get(name).ok_or_else(|| {
                        RuleError::new(format!(
                            "`concat` names column `{name}`, which the row does not have"
                        ))
                    })?;
                    out.push_str(&canonical_text(value).unwrap_or_default());
                }
            }
        }
        Ok(Value::Text(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        let mut registry = Registry::new();
        register_builtin_rules(&mut registry);
        registry
    }

    fn run(spec: &str, value: Value) -> Result<Value, RuleError> {
        let columns = vec!["first".to_owned(), "last".to_owned(), "n".to_owned()];
        let values = vec![Value::from("Ada"), Value::from("Lovelace"), Value::Null];
        let rule = build_rule(&registry(), spec)?;
        rule.apply(
            value,
            RowView {
                columns: &columns,
                values: &values,
            },
        )
    }

    #[test]
    fn parses_specs_with_quotes_and_commas() {
        let spec = parse_rule_spec("concat(first, ', ', last)").expect("parses");
        assert_eq!(spec.name, "concat");
        assert_eq!(spec.args, vec!["first", "', '", "last"]);
        assert_eq!(
            parse_rule_spec("trim").expect("parses").args,
            Vec::<String>::new()
        );
        assert!(parse_rule_spec("round(2").is_err());
        assert!(parse_rule_spec("default('x)").is_err());
    }

    #[test]
    fn text_rules() {
        assert_eq!(run("trim", Value::from("  a b ")), Ok(Value::from("a b")));
        assert_eq!(
            run("upper", Value::from("straße")),
            Ok(Value::from("STRASSE"))
        );
        assert_eq!(run("lower", Value::from("ÀB")), Ok(Value::from("àb")));
        assert_eq!(run("trim", Value::Null), Ok(Value::Null));
        let error = run("upper", Value::Int(3)).expect_err("ints are not text");
        assert!(error.message.contains("needs text"), "{error}");
    }

    #[test]
    fn round_keeps_decimals_exact() {
        let value = Value::Decimal("1234.5678".parse().expect("valid"));
        assert_eq!(
            run("round(2)", value),
            Ok(Value::Decimal("1234.57".parse().expect("valid")))
        );
        assert_eq!(run("round(1)", Value::Float(2.25)), Ok(Value::Float(2.3)));
        assert!(run("round(x)", Value::Int(1)).is_err());
        assert!(run("round(2)", Value::from("1.5")).is_err());
    }

    #[test]
    fn dates_format_and_bad_formats_are_refused_up_front() {
        let date = chrono::NaiveDate::from_ymd_opt(2024, 2, 29).expect("valid");
        assert_eq!(
            run("date_format('%d.%m.%Y')", Value::Date(date)),
            Ok(Value::from("29.02.2024"))
        );
        assert!(build_rule(&registry(), "date_format('%Q')").is_err());
    }

    #[test]
    fn default_map_and_concat() {
        assert_eq!(run("default('n/a')", Value::Null), Ok(Value::from("n/a")));
        assert_eq!(
            run("default('n/a')", Value::from("x")),
            Ok(Value::from("x"))
        );
        assert_eq!(
            run("map(A=Active, C=Closed)", Value::from("A")),
            Ok(Value::from("Active"))
        );
        assert_eq!(run("map(A=Active)", Value::from("Z")), Ok(Value::from("Z")));
        assert_eq!(
            run("map(A=Active, *=Other)", Value::from("Z")),
            Ok(Value::from("Other"))
        );
        assert_eq!(run("map(1=One)", Value::Int(1)), Ok(Value::from("One")));
        assert_eq!(
            run("concat(first, ' ', last, n)", Value::Null),
            Ok(Value::from("Ada Lovelace"))
        );
        assert!(run("concat(first, missing)", Value::Null).is_err());
    }

    #[test]
    fn unknown_rules_list_the_known_ones() {
        let error = build_rule(&registry(), "titlecase").err().expect("unknown");
        assert!(
            error
                .message
                .contains("concat, date_format, default, lower, map, round, trim, upper"),
            "{error}"
        );
    }
}
