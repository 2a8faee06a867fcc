//! PostgreSQL source connector
