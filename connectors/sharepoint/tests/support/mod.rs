//! Scaffolding shared by this crate's integration tests and benches (the benches include it
//! with `#[path]`): the Graph emulator on a free port and a target config that points at it.
//! It cannot live in the library, where the emulator (a dev-dependency) is not available.

use syncbridge_graph_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use syncbridge_sharepoint::SharePointConfig;

/// The emulator, started on a free local port.
pub async fn emulator(config: EmulatorConfig) -> RunningEmulator {
    Emulator::start_local(config)
        .await
        .expect("emulator starts")
}

/// A target config for the emulator's site, signing in with `secret`.
pub fn config(emulator: &RunningEmulator, secret: &str) -> SharePointConfig {
    let info = emulator.connection_info();
    serde_json::from_value(serde_json::json!({
        "graph_base_url": info.base_url,
        "authority_host": info.authority_host,
        "tenant_id": info.tenant_id,
        "client_id": info.client_id,
        "client_secret": secret,
        "site_hostname": info.site_hostname,
        "site_path": info.site_path,
    }))
    .expect("config")
}
