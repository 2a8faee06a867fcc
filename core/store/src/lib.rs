//! SyncBridge meta-store on sqlx: SQLite and PostgreSQL
