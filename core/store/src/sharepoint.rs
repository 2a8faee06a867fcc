//! What discovery learns about SharePoint: the lists of each configured site with their columns,
//! and a metrics row per list (item count, last modification).

use chrono::{DateTime, Utc};

use crate::{BeginWrite, Id, Store, StoreError, with_pool};

/// A configured site with its connection, as discovery connects to it.
#[derive(Clone, sqlx::FromRow)]
pub struct SiteRow {
    pub site_row_id: Id,
    pub hostname: String,
    pub site_path: String,
    pub connection_id: Id,
    pub connection_name: String,
    /// The target connector (`sharepoint`, or a plugin's target kind).
    pub connector: String,
    /// A plugin target's settings.
    pub options: Option<sqlx::types::Json<serde_json::Value>>,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub client_secret_ref: Option<String>,
    pub authority_host: String,
    pub graph_base_url: String,
    pub scopes: sqlx::types::Json<Vec<String>>,
}

impl std::fmt::Debug for SiteRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteRow")
            .field("hostname", &self.hostname)
            .field("site_path", &self.site_path)
            .field("connection_name", &self.connection_name)
            .finish_non_exhaustive()
    }
}

/// The sites of a SharePoint connection, by the connection's name.
pub async fn connection_sites(store: &Store, connection: &str) -> Result<Vec<SiteRow>, StoreError> {
    with_pool!(store, pool => sqlx::query_as::<_, SiteRow>(
        "SELECT s.id AS site_row_id, s.hostname, s.site_path, c.id AS connection_id,
                c.name AS connection_name, c.connector, c.options, c.tenant_id, c.client_id, c.client_secret,
                c.client_secret_ref, c.authority_host, c.graph_base_url, c.scopes
         FROM sharepoint_sites s JOIN sharepoint_connections c ON c.id = s.connection_id
         WHERE c.name = $1 AND s.status = 'ACTIVE'
         ORDER BY s.hostname, s.site_path")
        .bind(connection).fetch_all(pool).await)
    .map_err(StoreError::query("reading the sites of a connection"))
}

/// A list as discovery found it.
#[derive(Debug, Clone)]
pub struct DiscoveredList {
    pub list_id: String,
    pub display_name: String,
    pub template: Option<String>,
    pub item_count: Option<i64>,
    pub last_modified: Option<DateTime<Utc>>,
    pub columns: Vec<DiscoveredColumn>,
}

#[derive(Debug, Clone)]
pub struct DiscoveredColumn {
    pub name: String,
    pub display_name: String,
    pub column_type: String,
    pub required: bool,
    pub read_only: bool,
    pub indexed: bool,
    pub hidden: bool,
}

/// Records a site (its Graph id and URL, when known) and its lists in one transaction: each list
/// is matched by its Graph id, then by
/// display name, and created when new (not marked provisioned: SyncBridge did not create it);
/// its columns are replaced by what was found; a metrics row is added.
pub async fn put_discovered(
    store: &Store,
    site_row_id: Id,
    site: Option<(&str, Option<&str>)>,
    lists: &[DiscoveredList],
) -> Result<(), StoreError> {
    let now = Utc::now();
    with_pool!(store, pool => async {
        let mut tx = pool.begin_write().await?;
        if let Some((site_id, web_url)) = site {
            sqlx::query("UPDATE sharepoint_sites SET site_id = $2, web_url = $3 WHERE id = $1")
                .bind(site_row_id).bind(site_id).bind(web_url)
                .execute(&mut *tx).await?;
        }
        for list in lists {
            let existing: Option<Id> = sqlx::query_scalar(
                "SELECT id FROM sharepoint_lists WHERE site_id = $1 AND (list_id = $2 OR display_name = $3)
                 ORDER BY (list_id = $2) DESC LIMIT 1")
                .bind(site_row_id).bind(&list.list_id).bind(&list.display_name)
                .fetch_optional(&mut *tx).await?;
            let list_row = match existing {
                Some(id) => {
                    sqlx::query("UPDATE sharepoint_lists SET list_id = $2, display_name = $3, template = $4 WHERE id = $1")
                        .bind(id).bind(&list.list_id).bind(&list.display_name).bind(&list.template)
                        .execute(&mut *tx).await?;
                    id
                }
                None => {
                    let id = Id::new();
                    sqlx::query("INSERT INTO sharepoint_lists (id, site_id, list_id, display_name, template, is_provisioned)
                                 VALUES ($1, $2, $3, $4, $5, FALSE)")
                        .bind(id).bind(site_row_id).bind(&list.list_id).bind(&list.display_name).bind(&list.template)
                        .execute(&mut *tx).await?;
                    id
                }
            };
            sqlx::query("DELETE FROM sharepoint_columns WHERE list_id = $1")
                .bind(list_row).execute(&mut *tx).await?;
            for column in &list.columns {
                sqlx::query("INSERT INTO sharepoint_columns (id, list_id, column_name, display_name, column_type,
                                is_required, is_readonly, is_indexed, is_hidden)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                    .bind(Id::new()).bind(list_row).bind(&column.name).bind(&column.display_name)
                    .bind(&column.column_type).bind(column.required).bind(column.read_only)
                    .bind(column.indexed).bind(column.hidden)
                    .execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO target_list_metrics (id, target_list_id, captured_at, item_count, last_modified_at)
                         VALUES ($1, $2, $3, $4, $5)")
                .bind(Id::new()).bind(list_row).bind(now).bind(list.item_count).bind(list.last_modified)
                .execute(&mut *tx).await?;
        }
        tx.commit().await
    }.await)
    .map_err(StoreError::query("recording discovered lists"))
}

/// A list as the meta-store knows it, with its latest metrics.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct KnownList {
    pub display_name: String,
    pub list_id: Option<String>,
    pub is_provisioned: bool,
    pub columns: i64,
    pub item_count: Option<i64>,
    pub metrics: i64,
}

/// The lists recorded for a connection's sites, by name.
pub async fn known_lists(store: &Store, connection: &str) -> Result<Vec<KnownList>, StoreError> {
    with_pool!(store, pool => sqlx::query_as::<_, KnownList>(
        "SELECT l.display_name, l.list_id, l.is_provisioned,
                (SELECT count(*) FROM sharepoint_columns sc WHERE sc.list_id = l.id) AS columns,
                (SELECT m.item_count FROM target_list_metrics m WHERE m.target_list_id = l.id
                  ORDER BY m.captured_at DESC LIMIT 1) AS item_count,
                (SELECT count(*) FROM target_list_metrics m WHERE m.target_list_id = l.id) AS metrics
         FROM sharepoint_lists l
         JOIN sharepoint_sites s ON s.id = l.site_id
         JOIN sharepoint_connections c ON c.id = s.connection_id
         WHERE c.name = $1
         ORDER BY l.display_name")
        .bind(connection).fetch_all(pool).await)
    .map_err(StoreError::query("reading known lists"))
}

/// A site's Graph id and web URL, once discovery resolved them.
pub async fn site_location(
    store: &Store,
    connection: &str,
) -> Result<Vec<(Option<String>, Option<String>)>, StoreError> {
    with_pool!(store, pool => sqlx::query_as::<_, (Option<String>, Option<String>)>(
        "SELECT s.site_id, s.web_url FROM sharepoint_sites s
         JOIN sharepoint_connections c ON c.id = s.connection_id WHERE c.name = $1")
        .bind(connection).fetch_all(pool).await)
    .map_err(StoreError::query("reading site locations"))
}
