//! Write SyncBridge WASM plugins as plain Rust functions.
//!
//! A **field rule** (`transform: wasm:MODULE#NAME` in a mapping) is
//! `fn(value: Value, row: &[Field], args: &[String]) -> Result<Value, String>`: `value` is the
//! mapped column's value, `row` the other columns, `args` the rule's arguments; an `Err` sends the
//! row to the dead-letter queue with that message.
//!
//! A **sharding predicate** (`sharding: wasm:MODULE#NAME` in a sync) is
//! `fn(row: &[Field], targets: &[String]) -> Result<Option<String>, String>`: `Some(name)` routes
//! the row to that target, `None` to the default target, `Err` dead-letters it.
//!
//! One module may hold several functions; the name after `#` picks one:
//!
//! ```ignore
//! use syncbridge_guest::{Field, Value};
//!
//! fn shout(value: Value, _row: &[Field], _args: &[String]) -> Result<Value, String> {
//!     match value {
//!         Value::Text(t) => Ok(Value::Text(t.to_uppercase())),
//!         other => Ok(other),
//!     }
//! }
//!
//! syncbridge_guest::field_rules! { "shout" => shout }
//! ```
//!
//! A module may check itself: `field_rules! { "shout" => shout; self_test = checks }` with
//! `fn checks() -> Result<(), String>`; `syncbridge plugins check` runs it.
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm` in
//! `target/wasm32-wasip2/release/` is the component SyncBridge loads.

pub mod transform_world {
    wit_bindgen::generate!({
        world: "transform",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "export_transform_world",
        default_bindings_module: "syncbridge_guest::transform_world",
    });
}

pub mod shard_world {
    wit_bindgen::generate!({
        world: "shard",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "export_shard_world",
        default_bindings_module: "syncbridge_guest::shard_world",
        with: {
            "syncbridge:plugin/types@0.1.0": crate::transform_world::syncbridge::plugin::types,
            "syncbridge:plugin/host@0.1.0": crate::transform_world::syncbridge::plugin::host,
        },
    });
}

pub use transform_world::syncbridge::plugin::host::{Level, log};
pub use transform_world::syncbridge::plugin::types::{
    ErrorKind, Field, Outcome, Row, RowError, Timestamptz, Value,
};

/// A field rule: the mapped value, the other columns, the rule's arguments.
pub type FieldFn = fn(Value, &[Field], &[String]) -> Result<Value, String>;
/// A sharding predicate: the row, the sync's target names.
pub type RouteFn = fn(&[Field], &[String]) -> Result<Option<String>, String>;

/// The value of a column by name.
pub fn get<'a>(row: &'a [Field], name: &str) -> Option<&'a Value> {
    row.iter().find(|f| f.name == name).map(|f| &f.value)
}

/// Used by the macros; not part of the API.
#[doc(hidden)]
pub mod __private {
    use std::sync::OnceLock;

    use super::*;

    static FIELD_RULE: OnceLock<(FieldFn, Vec<String>)> = OnceLock::new();

    /// One exported field rule: its name, function and the other columns it reads.
    pub type FieldEntry = (&'static str, FieldFn, &'static [&'static str]);
    static ROUTER: OnceLock<(RouteFn, Vec<String>)> = OnceLock::new();

    fn function_of(config: &[(String, String)]) -> Result<&str, String> {
        config
            .iter()
            .find(|(k, _)| k == "function")
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| "no `function` in the configuration".to_owned())
    }

    pub fn init_field_rule(
        rules: &[FieldEntry],
        config: Vec<(String, String)>,
    ) -> Result<Vec<String>, String> {
        let name = function_of(&config)?;
        let Some((_, function, reads)) = rules.iter().find(|(n, _, _)| *n == name) else {
            let known: Vec<&str> = rules.iter().map(|(n, _, _)| *n).collect();
            return Err(format!(
                "no rule `{name}` in this module; it has: {}",
                known.join(", ")
            ));
        };
        let mut args: Vec<(usize, String)> = config
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("arg")?.parse().ok()?, v.clone())))
            .collect();
        args.sort();
        let _ = FIELD_RULE.set((*function, args.into_iter().map(|(_, v)| v).collect()));
        Ok(reads.iter().map(|r| (*r).to_owned()).collect())
    }

    pub fn apply_values(
        columns: Vec<String>,
        rows: Vec<Vec<Value>>,
    ) -> Vec<Result<Value, RowError>> {
        let Some((function, args)) = FIELD_RULE.get() else {
            return rows
                .iter()
                .map(|_| {
                    Err(row_error(
                        ErrorKind::Internal,
                        "the rule was not initialised".into(),
                    ))
                })
                .collect();
        };
        rows.into_iter()
            .map(|values| {
                let mut values = values.into_iter();
                let Some(value) = values.next() else {
                    return Err(row_error(ErrorKind::InvalidInput, "an empty row".into()));
                };
                let rest: Vec<Field> = columns
                    .iter()
                    .skip(1)
                    .zip(values)
                    .map(|(name, value)| Field {
                        name: name.clone(),
                        value,
                    })
                    .collect();
                function(value, &rest, args).map_err(|m| row_error(ErrorKind::InvalidInput, m))
            })
            .collect()
    }

    pub fn apply_field_rule(row: Row) -> Outcome {
        let Some((function, args)) = FIELD_RULE.get() else {
            return dead_letter(ErrorKind::Internal, "the rule was not initialised".into());
        };
        let mut fields = row.into_iter();
        let Some(first) = fields.next() else {
            return dead_letter(ErrorKind::InvalidInput, "an empty row".into());
        };
        let rest: Vec<Field> = fields.collect();
        match function(first.value, &rest, args) {
            Ok(value) => Outcome::Emit(vec![vec![Field {
                name: first.name,
                value,
            }]]),
            Err(message) => dead_letter(ErrorKind::InvalidInput, message),
        }
    }

    pub fn init_router(
        routers: &[(&str, RouteFn)],
        config: Vec<(String, String)>,
        targets: Vec<String>,
    ) -> Result<(), String> {
        let name = function_of(&config)?;
        let Some((_, function)) = routers.iter().find(|(n, _)| *n == name) else {
            let known: Vec<&str> = routers.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "no predicate `{name}` in this module; it has: {}",
                known.join(", ")
            ));
        };
        let _ = ROUTER.set((*function, targets));
        Ok(())
    }

    pub fn route(row: Row) -> Result<Option<String>, RowError> {
        let Some((function, targets)) = ROUTER.get() else {
            return Err(row_error(
                ErrorKind::Internal,
                "the predicate was not initialised".into(),
            ));
        };
        function(&row, targets).map_err(|m| row_error(ErrorKind::InvalidInput, m))
    }

    /// The self-test of a module that declares none.
    pub fn no_self_test() -> Result<(), String> {
        Ok(())
    }

    fn row_error(kind: ErrorKind, message: String) -> RowError {
        RowError {
            kind,
            message,
            field: None,
        }
    }

    fn dead_letter(kind: ErrorKind, message: String) -> Outcome {
        Outcome::DeadLetter(row_error(kind, message))
    }
}

/// Exports field rules by name: `field_rules! { "title_case" => title_case, … }`. A rule that
/// reads other columns names them: `"full_name" => full_name reads ["first", "last"]`; the host
/// then sends those columns, and only those, after the mapped one.
#[macro_export]
macro_rules! field_rules {
    ($($name:literal => $function:ident $(reads [$($column:literal),* $(,)?])?),+ $(,)?) => {
        $crate::field_rules! { $($name => $function $(reads [$($column),*])?),+ ; self_test = $crate::__private::no_self_test }
    };
    ($($name:literal => $function:ident $(reads [$($column:literal),* $(,)?])?),+ ; self_test = $self_test:path $(,)?) => {
        struct __SyncBridgeFieldRules;

        const __SYNCBRIDGE_FIELD_RULES: &[$crate::__private::FieldEntry] =
            &[$(($name, $function, &[$($($column),*)?])),+];

        impl $crate::transform_world::exports::syncbridge::plugin::transformer::Guest
            for __SyncBridgeFieldRules
        {
            fn init(config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>)
                -> ::std::result::Result<::std::vec::Vec<::std::string::String>, ::std::string::String> {
                $crate::__private::init_field_rule(__SYNCBRIDGE_FIELD_RULES, config)
            }
            fn transform(row: $crate::Row) -> $crate::Outcome {
                $crate::__private::apply_field_rule(row)
            }
            fn transform_batch(rows: ::std::vec::Vec<$crate::Row>) -> ::std::vec::Vec<$crate::Outcome> {
                rows.into_iter().map($crate::__private::apply_field_rule).collect()
            }
            fn transform_values(
                columns: ::std::vec::Vec<::std::string::String>,
                rows: ::std::vec::Vec<::std::vec::Vec<$crate::Value>>,
            ) -> ::std::vec::Vec<::std::result::Result<$crate::Value, $crate::RowError>> {
                $crate::__private::apply_values(columns, rows)
            }
            fn self_test() -> ::std::result::Result<(), ::std::string::String> {
                $self_test()
            }
        }

        $crate::transform_world::export_transform_world!(__SyncBridgeFieldRules with_types_in $crate::transform_world);
    };
}

/// Exports sharding predicates by name: `routers! { "by_status" => by_status, … }`.
#[macro_export]
macro_rules! routers {
    ($($name:literal => $function:ident),+ $(,)?) => {
        $crate::routers! { $($name => $function),+ ; self_test = $crate::__private::no_self_test }
    };
    ($($name:literal => $function:ident),+ ; self_test = $self_test:path $(,)?) => {
        struct __SyncBridgeRouters;

        const __SYNCBRIDGE_ROUTERS: &[(&str, $crate::RouteFn)] = &[$(($name, $function)),+];

        impl $crate::shard_world::exports::syncbridge::plugin::router::Guest for __SyncBridgeRouters {
            fn init(
                config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                targets: ::std::vec::Vec<::std::string::String>,
            ) -> ::std::result::Result<(), ::std::string::String> {
                $crate::__private::init_router(__SYNCBRIDGE_ROUTERS, config, targets)
            }
            fn route(row: $crate::Row)
                -> ::std::result::Result<::std::option::Option<::std::string::String>, $crate::RowError> {
                $crate::__private::route(row)
            }
            fn route_batch(rows: ::std::vec::Vec<$crate::Row>)
                -> ::std::vec::Vec<::std::result::Result<::std::option::Option<::std::string::String>, $crate::RowError>> {
                rows.into_iter().map($crate::__private::route).collect()
            }
            fn self_test() -> ::std::result::Result<(), ::std::string::String> {
                $self_test()
            }
        }

        $crate::shard_world::export_shard_world!(__SyncBridgeRouters with_types_in $crate::shard_world);
    };
}
