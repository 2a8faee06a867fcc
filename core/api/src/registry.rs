//! The explicit registry of what exists: source and target connectors by kind, field rules by
//! name. Built-ins are registered by the binary at start-up in one visible place; native plugins
//! and WASM modules are registered into the same registry when they load. There is no link-time
//! registration magic, so "what can I use?" always has one answer: [`Registry::source_kinds`] and
//! friends, which every "unknown name" error lists.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::{
    BoxFuture, ConnectorError, ErasedSource, ErasedTarget, FieldRule, RuleError, ShardRouter,
    Source, Target,
};

/// Builds a connected source from its JSON configuration.
pub type SourceFactory = Arc<
    dyn Fn(serde_json::Value) -> BoxFuture<'static, Result<Box<dyn ErasedSource>, ConnectorError>>
        + Send
        + Sync,
>;

/// Builds a connected target from its JSON configuration.
pub type TargetFactory = Arc<
    dyn Fn(serde_json::Value) -> BoxFuture<'static, Result<Box<dyn ErasedTarget>, ConnectorError>>
        + Send
        + Sync,
>;

/// Builds a field rule from the arguments written after its name (`round(2)` → `["2"]`).
pub type RuleFactory =
    Arc<dyn Fn(&[String]) -> Result<Box<dyn FieldRule>, RuleError> + Send + Sync>;

/// Where a WASM rule or predicate comes from: `wasm:MODULE#FUNCTION` in a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmRef {
    /// The module: a path to a `.wasm` file, or a name looked up in the plugin directory.
    pub module: String,
    /// The function the module dispatches to (it may hold several).
    pub function: String,
}

impl WasmRef {
    /// Parses `wasm:MODULE#FUNCTION` (the `wasm:` prefix is optional).
    pub fn parse(text: &str) -> Result<Self, RuleError> {
        let body = text.trim();
        let body = body.strip_prefix("wasm:").unwrap_or(body).trim();
        match body.rsplit_once('#') {
            Some((module, function)) if !module.is_empty() && !function.is_empty() => Ok(Self {
                module: module.to_owned(),
                function: function.to_owned(),
            }),
            _ => Err(RuleError::new(format!(
                "`{text}` is not a WASM reference; write `wasm:MODULE#FUNCTION`, e.g. `wasm:format.wasm#title_case`"
            ))),
        }
    }
}

/// Builds a WASM field rule: the reference, the mapped source column, the rule's arguments.
pub type WasmRuleFactory =
    Arc<dyn Fn(&WasmRef, &str, &[String]) -> Result<Box<dyn FieldRule>, RuleError> + Send + Sync>;

/// Builds a WASM sharding predicate: the reference and the names of the sync's targets.
pub type WasmRouterFactory =
    Arc<dyn Fn(&WasmRef, &[String]) -> Result<Box<dyn ShardRouter>, RuleError> + Send + Sync>;

/// A name the registry does not know, with the names it does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{name}`; available: {}", if available.is_empty() { "none in this build".to_owned() } else { available.join(", ") })]
pub struct UnknownName {
    pub what: &'static str,
    pub name: String,
    pub available: Vec<String>,
}

/// Everything SyncBridge can use by name.
#[derive(Default, Clone)]
pub struct Registry {
    sources: BTreeMap<String, SourceFactory>,
    targets: BTreeMap<String, TargetFactory>,
    rules: BTreeMap<String, RuleFactory>,
    wasm_rules: Option<WasmRuleFactory>,
    wasm_routers: Option<WasmRouterFactory>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("sources", &self.source_kinds())
            .field("targets", &self.target_kinds())
            .field("rules", &self.rule_names())
            .finish()
    }
}

fn config_error(kind: &str, error: serde_json::Error) -> ConnectorError {
    ConnectorError::user(format!("invalid configuration for `{kind}`: {error}"))
        .with_hint("compare the connection settings with `syncbridge schema`")
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a typed source under its `KIND`.
    pub fn register_source<S: Source>(&mut self) {
        let factory: SourceFactory = Arc::new(|config| {
            Box::pin(async move {
                let config: S::Config =
                    serde_json::from_value(config).map_err(|e| config_error(S::KIND, e))?;
                let source = S::connect(config).await?;
                Ok(Box::new(source) as Box<dyn ErasedSource>)
            })
        });
        self.sources.insert(S::KIND.to_owned(), factory);
    }

    /// Registers an already erased source factory (native plugins).
    pub fn register_source_factory(&mut self, kind: &str, factory: SourceFactory) {
        self.sources.insert(kind.to_owned(), factory);
    }

    /// Registers a typed target under its `KIND`.
    pub fn register_target<T: Target>(&mut self) {
        let factory: TargetFactory = Arc::new(|config| {
            Box::pin(async move {
                let config: T::Config =
                    serde_json::from_value(config).map_err(|e| config_error(T::KIND, e))?;
                let target = T::connect(config).await?;
                Ok(Box::new(target) as Box<dyn ErasedTarget>)
            })
        });
        self.targets.insert(T::KIND.to_owned(), factory);
    }

    /// Registers an already erased target factory (native plugins).
    pub fn register_target_factory(&mut self, kind: &str, factory: TargetFactory) {
        self.targets.insert(kind.to_owned(), factory);
    }

    /// Registers a field rule by name (`trim`, `round`, `wasm:fmt#title`).
    pub fn register_rule(&mut self, name: &str, factory: RuleFactory) {
        self.rules.insert(name.to_owned(), factory);
    }

    /// Registers the WASM host: `wasm:MODULE#FUNCTION` rules and sharding predicates.
    pub fn register_wasm(&mut self, rules: WasmRuleFactory, routers: WasmRouterFactory) {
        self.wasm_rules = Some(rules);
        self.wasm_routers = Some(routers);
    }

    /// The WASM rule factory, or why there is none.
    pub fn wasm_rules(&self) -> Result<&WasmRuleFactory, RuleError> {
        self.wasm_rules
            .as_ref()
            .ok_or_else(|| RuleError::new("this build has no WASM host registered"))
    }

    /// The WASM sharding predicate factory, or why there is none.
    pub fn wasm_routers(&self) -> Result<&WasmRouterFactory, RuleError> {
        self.wasm_routers
            .as_ref()
            .ok_or_else(|| RuleError::new("this build has no WASM host registered"))
    }

    pub fn source(&self, kind: &str) -> Result<&SourceFactory, UnknownName> {
        self.sources.get(kind).ok_or_else(|| UnknownName {
            what: "source connector",
            name: kind.to_owned(),
            available: self.source_kinds(),
        })
    }

    pub fn target(&self, kind: &str) -> Result<&TargetFactory, UnknownName> {
        self.targets.get(kind).ok_or_else(|| UnknownName {
            what: "target connector",
            name: kind.to_owned(),
            available: self.target_kinds(),
        })
    }

    pub fn rule(&self, name: &str) -> Result<&RuleFactory, UnknownName> {
        self.rules.get(name).ok_or_else(|| UnknownName {
            what: "transform rule",
            name: name.to_owned(),
            available: self.rule_names(),
        })
    }

    pub fn source_kinds(&self) -> Vec<String> {
        self.sources.keys().cloned().collect()
    }

    pub fn target_kinds(&self) -> Vec<String> {
        self.targets.keys().cloned().collect()
    }

    pub fn rule_names(&self) -> Vec<String> {
        self.rules.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RowView, Value};

    struct Upper;

    impl FieldRule for Upper {
        fn apply(&self, value: Value, _row: RowView<'_>) -> Result<Value, RuleError> {
            match value {
                Value::Text(text) => Ok(Value::Text(text.to_uppercase())),
                other => Err(RuleError::new(format!(
                    "upper needs text, got {}",
                    other.type_name()
                ))),
            }
        }
    }

    #[test]
    fn unknown_names_list_what_exists() {
        let mut registry = Registry::new();
        registry.register_rule(
            "upper",
            Arc::new(|_| Ok(Box::new(Upper) as Box<dyn FieldRule>)),
        );
        registry.register_rule(
            "lower",
            Arc::new(|_| Ok(Box::new(Upper) as Box<dyn FieldRule>)),
        );
        let error = registry.rule("uper").err().expect("unknown rule");
        assert_eq!(
            error.to_string(),
            "unknown transform rule `uper`; available: lower, upper"
        );
        let error = registry
            .source("oracle")
            .err()
            .expect("no sources registered");
        assert_eq!(error.available, Vec::<String>::new());
    }

    #[test]
    fn registered_rules_run() {
        let mut registry = Registry::new();
        registry.register_rule(
            "upper",
            Arc::new(|_| Ok(Box::new(Upper) as Box<dyn FieldRule>)),
        );
        let rule = registry.rule("upper").expect("registered")(&[]).expect("builds");
        let columns = vec!["name".to_owned()];
        let values = vec![Value::from("ada")];
        let row = RowView {
            columns: &columns,
            values: &values,
        };
        assert_eq!(rule.apply(Value::from("ada"), row), Ok(Value::from("ADA")));
        assert!(rule.apply(Value::Int(1), row).is_err());
    }
}
