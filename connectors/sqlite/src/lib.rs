//! SQLite source connector
