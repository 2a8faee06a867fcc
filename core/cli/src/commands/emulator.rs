//! `syncbridge emulator`: the local Graph emulator, for development and scripts.

use syncbridge_graph_emulator::{Emulator, EmulatorConfig};

use crate::cli::{EmulatorArgs, GlobalArgs};
use crate::commands::print_json;
use crate::exit::{CliError, Exit};

pub async fn run(global: &GlobalArgs, args: &EmulatorArgs) -> Result<Exit, CliError> {
    let mut config = match &args.config {
        Some(path) => {
            EmulatorConfig::from_file(path).map_err(|e| CliError::bad_input(e.to_string()))?
        }
        None => EmulatorConfig::default(),
    };
    if args.data.is_some() {
        config.data_file = args.data.clone();
    }
    let running = Emulator::start(config, args.listen)
        .await
        .map_err(|e| CliError::bad_input(e.to_string()))?;
    let info = running.connection_info();
    if global.json {
        print_json(&info)?;
    } else {
        println!("Graph emulator listening on {}", running.address());
        println!("  base URL        {}", info.base_url);
        println!("  token URL       {}", info.token_url);
        println!("  authority host  {}", info.authority_host);
        println!("  tenant          {}", info.tenant_id);
        println!("  client id       {}", info.client_id);
        println!("  client secret   {}", info.client_secret);
        println!(
            "  site            {}:{}",
            info.site_hostname, info.site_path
        );
        println!("  admin           {}/counts", running.admin_url());
        println!("Press Ctrl-C to stop.");
    }
    let _ = tokio::signal::ctrl_c().await;
    running.shutdown().await;
    Ok(Exit::Ok)
}
