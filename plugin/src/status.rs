//! `rustnet status`: asks the local daemon over its socket.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use serde_json::Value;

use crate::client::PluginClient;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The daemon's socket.
    #[arg(
        long,
        env = "RUSTNET_SOCKET",
        default_value = "/run/docker/plugins/rustnet.sock"
    )]
    socket: PathBuf,
    /// Print JSON, for scripts.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let (status, reply) = PluginClient::new(&args.socket)
        .call("/Rustnet.Status", "")
        .await?;
    if !status.is_success() {
        bail!(
            "daemon answered {status}: {}",
            reply["Err"].as_str().unwrap_or_default()
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
    } else {
        print!("{}", render(&reply));
    }
    Ok(())
}

/// The human-readable form of the status reply.
fn render(status: &Value) -> String {
    let mut out = format!(
        "host {} ({})\n",
        status["name"].as_str().unwrap_or("?"),
        status["host"]
    );
    let pools = status["pools"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    out.push_str(&format!("{} pool(s)\n", pools.len()));
    for pool in pools {
        let range = pool["range"]
            .as_str()
            .map(|r| format!(" range {r}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {}{range}\n",
            pool["pool"].as_str().unwrap_or("?")
        ));
        for address in pool["addresses"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            out.push_str(&format!(
                "    {:<40} {}\n",
                address["address"].as_str().unwrap_or("?"),
                address["holder"].as_str().unwrap_or("?")
            ));
        }
    }
    out
}
