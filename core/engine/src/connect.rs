//! Turns meta-store rows into connector configurations, resolving secrets at the last moment.
//!
//! The JSON shapes here are the contract between the engine and the built-in connectors:
//! sources get `{host, port, database, user, password, path, options}` (SQLite reads `path`),
//! the SharePoint target gets `{graph_base_url, authority_host, tenant_id, client_id,
//! client_secret, scopes, site_hostname, site_path}`, a plugin target its connection's `options`
//! plus `{connection, site_hostname, site_path, client_secret?}`. Secrets are decrypted (or their `${env:…}` /
//! `${file:…}` reference resolved) only here, and live only in the connector's config.

use secrecy::ExposeSecret as _;
use syncbridge_api::ConnectorError;
use syncbridge_config::SecretRef;
use syncbridge_store::definitions::{SourceRow, TargetRow};
use syncbridge_store::secrets::MasterKey;
use syncbridge_store::sharepoint::SiteRow;

/// Loads the master key when a secret actually needs it.
pub type KeySource<'a> = &'a dyn Fn() -> Result<std::sync::Arc<MasterKey>, ConnectorError>;

/// Reads a secret stored as ciphertext or as a reference; `None` when neither is set. The master
/// key is only loaded for ciphertext.
pub fn resolve_secret(
    key: KeySource<'_>,
    encrypted: Option<&str>,
    reference: Option<&str>,
    column: &str,
) -> Result<Option<String>, ConnectorError> {
    if let Some(reference) = reference {
        let parsed = SecretRef::parse(reference).ok_or_else(|| {
            ConnectorError::user(format!(
                "{column} holds `{reference}`, which is not a reference"
            ))
            .with_hint("apply the config again")
        })?;
        return parsed
            .resolve()
            .map(Some)
            .map_err(|message| ConnectorError::user(format!("{column}: {message}")));
    }
    match encrypted {
        Some(stored) => key()?
            .decrypt(stored, column)
            .map(|secret| Some(secret.expose_secret().to_owned()))
            .map_err(|error| ConnectorError::user(error.to_string())),
        None => Ok(None),
    }
}

/// The configuration of one source instance.
pub fn source_config(
    database_name: &str,
    instance: &SourceRow,
    key: KeySource<'_>,
) -> Result<serde_json::Value, ConnectorError> {
    let password = resolve_secret(
        key,
        instance.db_password.as_deref(),
        instance.db_password_ref.as_deref(),
        "database_instances.db_password",
    )?;
    let database = instance
        .db_name
        .clone()
        .unwrap_or_else(|| database_name.to_owned());
    let mut config = serde_json::json!({
        "host": instance.host,
        "port": instance.port,
        "database": database,
        "path": database,
        "user": instance.db_user,
        "password": password,
        "options": instance.config.0,
    });
    // Unset settings are left out, so connectors apply their own defaults.
    if let Some(map) = config.as_object_mut() {
        map.retain(|_, value| !value.is_null());
    }
    Ok(config)
}

/// The configuration of the SharePoint connection and site a target row uses.
pub fn target_config(
    row: &TargetRow,
    key: KeySource<'_>,
) -> Result<serde_json::Value, ConnectorError> {
    sharepoint_config(
        &SharePointSite {
            connection_name: &row.connection_name,
            connector: &row.connector,
            options: row.options.as_ref().map(|o| &o.0),
            tenant_id: &row.tenant_id,
            client_id: &row.client_id,
            client_secret: row.client_secret.as_deref(),
            client_secret_ref: row.client_secret_ref.as_deref(),
            authority_host: &row.authority_host,
            graph_base_url: &row.graph_base_url,
            scopes: &row.scopes.0,
            hostname: &row.hostname,
            site_path: &row.site_path,
        },
        key,
    )
}

/// The configuration of a site of a SharePoint connection (discovery).
pub fn site_config(row: &SiteRow, key: KeySource<'_>) -> Result<serde_json::Value, ConnectorError> {
    sharepoint_config(
        &SharePointSite {
            connection_name: &row.connection_name,
            connector: &row.connector,
            options: row.options.as_ref().map(|o| &o.0),
            tenant_id: &row.tenant_id,
            client_id: &row.client_id,
            client_secret: row.client_secret.as_deref(),
            client_secret_ref: row.client_secret_ref.as_deref(),
            authority_host: &row.authority_host,
            graph_base_url: &row.graph_base_url,
            scopes: &row.scopes.0,
            hostname: &row.hostname,
            site_path: &row.site_path,
        },
        key,
    )
}

/// What a SharePoint target's configuration is made of, wherever the row came from.
struct SharePointSite<'a> {
    connection_name: &'a str,
    connector: &'a str,
    options: Option<&'a serde_json::Value>,
    tenant_id: &'a str,
    client_id: &'a str,
    client_secret: Option<&'a str>,
    client_secret_ref: Option<&'a str>,
    authority_host: &'a str,
    graph_base_url: &'a str,
    scopes: &'a [String],
    hostname: &'a str,
    site_path: &'a str,
}

fn sharepoint_config(
    site: &SharePointSite<'_>,
    key: KeySource<'_>,
) -> Result<serde_json::Value, ConnectorError> {
    if site.connector != "sharepoint" {
        return plugin_target_config(site, key);
    }
    let secret = resolve_secret(
        key,
        site.client_secret,
        site.client_secret_ref,
        "sharepoint_connections.client_secret",
    )?
    .ok_or_else(|| {
        ConnectorError::user(format!(
            "connection `{}` has no client secret",
            site.connection_name
        ))
        .with_hint("set `client_secret` in the config and apply it")
    })?;
    Ok(serde_json::json!({
        "graph_base_url": site.graph_base_url,
        "authority_host": site.authority_host,
        "tenant_id": site.tenant_id,
        "client_id": site.client_id,
        "client_secret": secret,
        "scopes": site.scopes,
        "site_hostname": site.hostname,
        "site_path": site.site_path,
    }))
}

/// A plugin target's configuration: its `options`, plus the connection's name, the site and the
/// client secret when one is set (resolved here, like every secret).
fn plugin_target_config(
    site: &SharePointSite<'_>,
    key: KeySource<'_>,
) -> Result<serde_json::Value, ConnectorError> {
    let mut config = match site.options {
        Some(serde_json::Value::Object(options)) => options.clone(),
        _ => serde_json::Map::new(),
    };
    config.insert("connection".into(), site.connection_name.into());
    config.insert("site_hostname".into(), site.hostname.into());
    config.insert("site_path".into(), site.site_path.into());
    let secret = resolve_secret(
        key,
        site.client_secret,
        site.client_secret_ref,
        "sharepoint_connections.client_secret",
    )?;
    if let Some(secret) = secret {
        config.insert("client_secret".into(), secret.into());
    }
    Ok(serde_json::Value::Object(config))
}
