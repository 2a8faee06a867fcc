//! What a keyset-reading SQL source does before its first query, whatever the engine: resolve
//! the requested columns against the catalog, refuse those it cannot read (naming the column,
//! its type and a way out), choose the order (the key, or the watermark column then the key) and
//! parse the position to resume from.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ConnectorError, CursorSpec, Position, ReadRequest};

/// A catalog column as the plan needs it.
pub trait PlanColumn: Clone {
    fn name(&self) -> &str;
    /// The native type when SyncBridge cannot read the column, `None` when it can.
    fn unreadable(&self) -> Option<&str>;
}

/// Where a keyset read stopped: the watermark (for `UPDATED_AT`) and the order values of the
/// last row, as text. Serialized as the read's [`Position`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeysetPosition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<Option<String>>,
    pub after: Vec<Option<String>>,
}

impl KeysetPosition {
    pub fn to_position(&self) -> Option<Position> {
        serde_json::to_string(self).ok().map(Position)
    }
}

/// A read, resolved against the catalog.
#[derive(Debug, Clone)]
pub struct KeysetPlan<C> {
    /// The output column names, in order.
    pub columns: Vec<String>,
    /// Their catalog entries.
    pub read: Vec<C>,
    /// The columns to order and page by: the key, or the watermark column then the key.
    pub order: Vec<C>,
    /// The `UPDATED_AT` column.
    pub watermark: Option<C>,
    pub look_back: Duration,
    /// The position to resume from.
    pub from: Option<KeysetPosition>,
}

impl<C: PlanColumn> KeysetPlan<C> {
    /// `engine` names the database in messages (`PostgreSQL`); `convert` spells a conversion of
    /// a column to text in its SQL, for the hint on an unreadable column.
    pub fn new(
        request: &ReadRequest,
        catalog: &[C],
        engine: &str,
        convert: impl Fn(&str) -> String,
    ) -> Result<Self, ConnectorError> {
        let columns: Vec<String> = if request.columns.is_empty() {
            catalog.iter().map(|c| c.name().to_owned()).collect()
        } else {
            request.columns.clone()
        };
        let find = |name: &str| {
            catalog
                .iter()
                .find(|c| c.name() == name)
                .cloned()
                .ok_or_else(|| {
                    ConnectorError::user(format!(
                        "table `{}` has no column `{name}`",
                        request.table
                    ))
                    .with_hint("correct the mapping, or run `syncbridge drift` to see what changed")
                })
        };
        let mut read = Vec::with_capacity(columns.len());
        for name in &columns {
            let column = find(name)?;
            if let Some(native) = column.unreadable() {
                return Err(ConnectorError::user(format!(
                    "column `{name}` of `{}` has type `{native}`, which SyncBridge cannot read",
                    request.table
                ))
                .with_hint(format!(
                    "read it through a view that converts it, e.g. `{}`",
                    convert(name)
                )));
            }
            read.push(column);
        }
        if request.key.is_empty() {
            return Err(ConnectorError::user(format!(
                "reading `{}` needs key columns to page by",
                request.table
            )));
        }
        let (order, watermark, look_back) = match &request.cursor {
            CursorSpec::FullScan => (request.key.clone(), None, Duration::ZERO),
            CursorSpec::UpdatedAt { column, look_back } => {
                let mut order = vec![column.clone()];
                order.extend(request.key.iter().cloned());
                (order, Some(find(column)?), *look_back)
            }
            CursorSpec::Lsn { .. } => {
                return Err(ConnectorError::user(format!(
                    "the LSN cursor (change log) is not implemented for {engine} yet"
                ))
                .with_hint("use cursor strategy UPDATED_AT or FULL_SCAN"));
            }
        };
        let order = order.iter().map(|c| find(c)).collect::<Result<_, _>>()?;
        let from = match &request.from {
            Some(position) => Some(serde_json::from_str(&position.0).map_err(|e| {
                ConnectorError::internal(format!(
                    "unreadable {engine} position `{}`: {e}",
                    position.0
                ))
            })?),
            None => None,
        };
        Ok(Self {
            columns,
            read,
            order,
            watermark,
            look_back,
            from,
        })
    }

    /// Where the first query starts: after the resumed key (`FULL_SCAN`), or from the watermark
    /// minus the look-back (`UPDATED_AT`; `None` before the first committed run).
    pub fn start(&self) -> (Option<Vec<Option<String>>>, Option<String>) {
        match (&self.from, &self.watermark) {
            (Some(from), None) => (Some(from.after.clone()), None),
            (Some(from), Some(_)) => (None, from.watermark.clone().flatten()),
            (None, _) => (None, None),
        }
    }

    /// The position after a row whose order values are `last`.
    pub fn position_after(&self, last: &[Option<String>]) -> KeysetPosition {
        KeysetPosition {
            watermark: self
                .watermark
                .as_ref()
                .map(|_| last.first().cloned().flatten()),
            after: last.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TableRef;

    #[derive(Debug, Clone)]
    struct Column(&'static str, Option<&'static str>);

    impl PlanColumn for Column {
        fn name(&self) -> &str {
            self.0
        }
        fn unreadable(&self) -> Option<&str> {
            self.1
        }
    }

    fn request(cursor: CursorSpec, from: Option<Position>, columns: &[&str]) -> ReadRequest {
        ReadRequest {
            table: TableRef::new(None, "t"),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            key: vec!["id".into()],
            cursor,
            from,
            batch_size: 10,
            defer_conversion: false,
        }
    }

    const CATALOG: [Column; 3] = [
        Column("id", None),
        Column("changed", None),
        Column("shape", Some("geometry")),
    ];

    #[test]
    fn updated_at_orders_by_watermark_then_key_and_resumes_from_the_watermark() {
        let updated = CursorSpec::UpdatedAt {
            column: "changed".into(),
            look_back: Duration::from_secs(5),
        };
        let plan = KeysetPlan::new(
            &request(updated.clone(), None, &["id"]),
            &CATALOG,
            "X",
            |c| c.to_owned(),
        )
        .expect("plan");
        let order: Vec<&str> = plan.order.iter().map(|c| c.0).collect();
        assert_eq!(order, ["changed", "id"]);
        let position = plan.position_after(&[Some("2024".into()), Some("7".into())]);
        assert_eq!(position.watermark, Some(Some("2024".into())));
        let resumed = KeysetPlan::new(
            &request(updated, position.to_position(), &["id"]),
            &CATALOG,
            "X",
            |c| c.to_owned(),
        )
        .expect("plan");
        assert_eq!(resumed.start(), (None, Some("2024".into())));
    }

    #[test]
    fn full_scan_resumes_after_the_key() {
        let position = KeysetPosition {
            watermark: None,
            after: vec![Some("7".into())],
        };
        let plan = KeysetPlan::new(
            &request(CursorSpec::FullScan, position.to_position(), &[]),
            &CATALOG[..2],
            "X",
            |c| c.to_owned(),
        )
        .expect("plan");
        assert_eq!(plan.columns, ["id", "changed"]);
        assert_eq!(plan.start(), (Some(vec![Some("7".into())]), None));
    }

    #[test]
    fn unreadable_and_unknown_columns_are_named() {
        let error = KeysetPlan::new(
            &request(CursorSpec::FullScan, None, &["shape"]),
            &CATALOG,
            "X",
            |c| format!("CAST({c} AS TEXT)"),
        )
        .expect_err("unreadable");
        assert!(error.to_string().contains("`shape`") && error.to_string().contains("geometry"));
        assert!(
            error
                .hint()
                .is_some_and(|h| h.contains("CAST(shape AS TEXT)"))
        );
        let error = KeysetPlan::new(
            &request(CursorSpec::FullScan, None, &["nope"]),
            &CATALOG,
            "X",
            |c| c.to_owned(),
        )
        .expect_err("unknown");
        assert!(error.to_string().contains("no column `nope`"));
    }
}
