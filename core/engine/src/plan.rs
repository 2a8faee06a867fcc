//! The ledger diff: for each source row, what must happen in the target.
//!
//! Pure decisions over (the row's routed list and content hash, the ledger's record of the row),
//! kept apart from I/O so every rule of the sync semantics is a unit test:
//! - unknown row → create;
//! - same list, same content hash → skip (no Graph call for an unchanged row);
//! - same list, different hash → update (PATCH is idempotent);
//! - different list → move: create in the new list, then delete from the old (never zero copies,
//!   never two once the move completes);
//! - `ARCHIVE_ONLY` writes a row once and never updates, moves or deletes it;
//! - a ledger row whose source row is gone → delete (except `ARCHIVE_ONLY`).

use serde::Serialize;

/// How a definition treats the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `ONE_WAY_PUSH` and `TWO_WAY` (whose pull side is separate).
    Mirror,
    /// `ARCHIVE_ONLY`.
    ArchiveOnly,
}

impl Mode {
    /// From the meta-store's `sync_mode`.
    pub fn from_sync_mode(mode: &str) -> Self {
        if mode.eq_ignore_ascii_case("ARCHIVE_ONLY") {
            Mode::ArchiveOnly
        } else {
            Mode::Mirror
        }
    }
}

/// What the ledger knows of a row that was synced before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced<'a> {
    pub list: &'a str,
    pub item_id: i64,
    pub content_hash: &'a str,
}

/// The decision for one row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Planned {
    Create,
    Update {
        item_id: i64,
    },
    Skip,
    /// Create in the routed list, then delete `from_item` in `from_list`.
    Move {
        from_list: String,
        from_item: i64,
    },
}

/// Decides what to do with a row routed to `list` whose content hashes to `content_hash`.
pub fn plan_row(
    mode: Mode,
    ledger: Option<&Synced<'_>>,
    list: &str,
    content_hash: &str,
) -> Planned {
    let Some(synced) = ledger else {
        return Planned::Create;
    };
    if mode == Mode::ArchiveOnly {
        return Planned::Skip;
    }
    if synced.list != list {
        return Planned::Move {
            from_list: synced.list.to_owned(),
            from_item: synced.item_id,
        };
    }
    if synced.content_hash == content_hash {
        Planned::Skip
    } else {
        Planned::Update {
            item_id: synced.item_id,
        }
    }
}

/// Whether a ledger row whose source row disappeared is deleted from the target.
pub fn deletes_vanished_rows(mode: Mode) -> bool {
    mode == Mode::Mirror
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synced<'a>(list: &'a str, hash: &'a str) -> Synced<'a> {
        Synced {
            list,
            item_id: 7,
            content_hash: hash,
        }
    }

    #[test]
    fn mirror_mode_rules() {
        assert_eq!(plan_row(Mode::Mirror, None, "A", "h1"), Planned::Create);
        assert_eq!(
            plan_row(Mode::Mirror, Some(&synced("A", "h1")), "A", "h1"),
            Planned::Skip
        );
        assert_eq!(
            plan_row(Mode::Mirror, Some(&synced("A", "h1")), "A", "h2"),
            Planned::Update { item_id: 7 }
        );
        assert_eq!(
            plan_row(Mode::Mirror, Some(&synced("A", "h1")), "B", "h1"),
            Planned::Move {
                from_list: "A".into(),
                from_item: 7
            }
        );
        assert!(deletes_vanished_rows(Mode::Mirror));
    }

    #[test]
    fn archive_only_writes_once() {
        assert_eq!(
            plan_row(Mode::ArchiveOnly, None, "A", "h1"),
            Planned::Create
        );
        assert_eq!(
            plan_row(Mode::ArchiveOnly, Some(&synced("A", "h1")), "A", "h2"),
            Planned::Skip
        );
        assert_eq!(
            plan_row(Mode::ArchiveOnly, Some(&synced("A", "h1")), "B", "h1"),
            Planned::Skip
        );
        assert!(!deletes_vanished_rows(Mode::ArchiveOnly));
        assert_eq!(Mode::from_sync_mode("ARCHIVE_ONLY"), Mode::ArchiveOnly);
        assert_eq!(Mode::from_sync_mode("TWO_WAY"), Mode::Mirror);
    }
}
