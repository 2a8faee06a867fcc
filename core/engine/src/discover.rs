//! `syncbridge sharepoint discover CONNECTION`: reads every list of a connection's sites, with
//! columns and item counts, into the meta-store (`sharepoint_lists`, `sharepoint_columns`,
//! `target_list_metrics`), whether SyncBridge created the lists or not.

use serde::Serialize;
use syncbridge_store::sharepoint::{
    DiscoveredColumn, DiscoveredList, connection_sites, put_discovered,
};

use crate::connect::site_config;
use crate::run::{Engine, EngineError};

/// One list as discovery recorded it.
#[derive(Debug, Clone, Serialize)]
pub struct ListDiscovered {
    pub site: String,
    pub list: String,
    pub list_id: String,
    pub columns: usize,
    pub items: Option<u64>,
}

impl Engine {
    /// Discovers the lists of every active site of `connection` and records them.
    pub async fn discover(&self, connection: &str) -> Result<Vec<ListDiscovered>, EngineError> {
        let sites = connection_sites(self.store(), connection).await?;
        if sites.is_empty() {
            return Err(EngineError::UnknownConnection {
                name: connection.to_owned(),
            });
        }
        let failed = |error| EngineError::Connector {
            sync: connection.to_owned(),
            error,
        };
        let mut out = Vec::new();
        for site in &sites {
            let factory =
                self.registry()
                    .target(&site.connector)
                    .map_err(|e| EngineError::Config {
                        sync: connection.to_owned(),
                        message: e.to_string(),
                    })?;
            let key = || self.master_key();
            let target = factory(site_config(site, &key).map_err(failed)?)
                .await
                .map_err(failed)?;
            let collections = target.discover().await.map_err(failed)?;
            let lists: Vec<DiscoveredList> = collections
                .iter()
                .map(|c| DiscoveredList {
                    list_id: c.collection.id.clone(),
                    display_name: c.collection.name.clone(),
                    template: c.template.clone(),
                    item_count: c.item_count.and_then(|n| i64::try_from(n).ok()),
                    last_modified: c.last_modified,
                    columns: c
                        .fields
                        .iter()
                        .map(|f| DiscoveredColumn {
                            name: f.name.clone(),
                            display_name: f.display_name.clone(),
                            column_type: f.field_type.clone(),
                            required: f.required,
                            read_only: f.read_only,
                            indexed: f.indexed,
                            hidden: f.hidden,
                        })
                        .collect(),
                })
                .collect();
            let location = target.location();
            put_discovered(
                self.store(),
                site.site_row_id,
                location.as_ref().map(|l| (l.id.as_str(), l.url.as_deref())),
                &lists,
            )
            .await?;
            let site_name = format!("{}{}", site.hostname, site.site_path);
            out.extend(collections.iter().map(|c| ListDiscovered {
                site: site_name.clone(),
                list: c.collection.name.clone(),
                list_id: c.collection.id.clone(),
                columns: c.fields.len(),
                items: c.item_count,
            }));
        }
        Ok(out)
    }
}
