//! `rustnet status`: asks the local daemon over its socket.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use serde_json::Value;

use rustnet_ipam::{HostId, State};
use serde_json::json;

use crate::client::PluginClient;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    socket: SocketArg,
    /// Print JSON, for scripts.
    #[arg(long)]
    json: bool,
    /// Print only the cluster's join token (RUSTNET_JOIN_TOKEN for new hosts).
    #[arg(long, conflicts_with = "json")]
    token: bool,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    if args.token {
        println!("{}", token(&args.socket, "/Rustnet.Token").await?);
        return Ok(());
    }
    let reply = args.socket.ask("/Rustnet.Status").await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
    } else {
        print!("{}", render(&reply));
    }
    Ok(())
}

/// Asks the daemon for the join token (`path` shows or rotates it).
async fn token(socket: &SocketArg, path: &str) -> anyhow::Result<String> {
    let reply = socket.ask(path).await?;
    reply["Token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("the daemon's answer has no token"))
}

/// The human-readable form of the status reply.
fn render(status: &Value) -> String {
    let mut out = format!(
        "host {} ({})\n",
        status["name"].as_str().unwrap_or("?"),
        status["host"]
    );
    let cluster = &status["cluster"];
    out.push_str(&format!(
        "cluster {} term {}, this node: {}, leader: {}\n",
        cluster["cluster"].as_str().unwrap_or("-"),
        cluster["term"],
        cluster["state"].as_str().unwrap_or("?"),
        cluster["leader"]
    ));
    let short = |v: &Value| {
        v.as_str()
            .map_or("none".to_owned(), |f| f[..f.len().min(16)].to_owned())
    };
    out.push_str(&format!(
        "mutual TLS: cluster CA {}, this member's certificate {}\n",
        short(&status["tls"]["ca"]),
        short(&status["tls"]["certificate"])
    ));
    for member in cluster["members"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let role = if member["voter"] == true {
            "voter"
        } else {
            "learner"
        };
        out.push_str(&format!(
            "  member {} {} {role}\n",
            member["id"],
            member["addr"].as_str().unwrap_or("?")
        ));
    }
    for a in status["allocations"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        out.push_str(&format!(
            "  {} address(es) held by {}\n",
            a["addresses"],
            a["name"].as_str().unwrap_or("?")
        ));
    }
    let networks = status["networks"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    out.push_str(&format!("{} network(s) on this host\n", networks.len()));
    for network in networks {
        out.push_str(&format!(
            "  {} bridge {} subnet {}{}\n",
            network["id"]
                .as_str()
                .map(|id| id.get(..12).unwrap_or(id))
                .unwrap_or("?"),
            network["bridge"].as_str().unwrap_or("?"),
            network["subnet"].as_str().unwrap_or("-"),
            if network["internal"] == true {
                " internal"
            } else {
                ""
            }
        ));
        for endpoint in network["endpoints"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            out.push_str(&format!(
                "    {} {} {}{}\n",
                endpoint["id"]
                    .as_str()
                    .map(|id| id.get(..12).unwrap_or(id))
                    .unwrap_or("?"),
                endpoint["address"].as_str().unwrap_or("-"),
                endpoint["mac"].as_str().unwrap_or("-"),
                if endpoint["joined"] == true {
                    " joined"
                } else {
                    ""
                }
            ));
        }
    }
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

/// The status of `host` as the daemon reports it: its name, its networks
/// with their endpoints, and every pool of the cluster with its holders.
pub fn view(state: &State, host: HostId) -> Value {
    let tables = state.tables();
    let networks: Vec<Value> = tables
        .networks_of(host)
        .map(|n| {
            let endpoints: Vec<Value> = tables
                .endpoints_of(&n.id)
                .map(|e| json!({ "id": e.id, "address": e.address, "mac": e.mac, "joined": e.joined, "ports": e.ports }))
                .collect();
            json!({
                "id": n.id, "bridge": n.bridge, "subnet": n.subnet, "gateway": n.gateway,
                "mtu": n.mtu, "internal": n.internal, "endpoints": endpoints,
            })
        })
        .collect();
    let pools: Vec<Value> = state
        .pools()
        .map(|p| {
            let addresses: Vec<Value> = p
                .addresses
                .iter()
                .map(|(a, h)| json!({ "address": a, "host": h.host, "holder": state.describe(h) }))
                .collect();
            json!({ "pool": p.id(), "range": p.range, "hosts": p.refs, "addresses": addresses })
        })
        .collect();
    let allocations: Vec<Value> = state
        .allocations()
        .into_iter()
        .map(|(h, n)| json!({ "host": h, "name": state.host_name(h), "addresses": n }))
        .collect();
    json!({
        "host": host, "name": state.host_name(host), "networks": networks, "pools": pools,
        "allocations": allocations,
    })
}

/// `rustnet cluster ...`: membership changes, through the local daemon.
#[derive(Debug, clap::Subcommand)]
pub enum ClusterCmd {
    /// Take this host out of the cluster and free what it held.
    Leave(SocketArg),
    /// Remove a (dead) host by its id, freeing what it held.
    Remove {
        /// The host's id (see `rustnet status`).
        node: u64,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Replace the join token: members stay, new hosts need the new token.
    RotateToken(SocketArg),
}

/// Where the host service listens.
const SOCKET: &str = "/run/docker/plugins/rustnet.sock";
/// Where Docker puts a managed plugin's sockets: one directory per plugin id.
const MANAGED_DIR: &str = "/run/docker/plugins";

#[derive(Debug, Args)]
pub struct SocketArg {
    /// The daemon's socket [default: /run/docker/plugins/rustnet.sock, or
    /// the managed plugin's /run/docker/plugins/<id>/rustnet.sock]
    #[arg(long, env = "RUSTNET_SOCKET")]
    socket: Option<PathBuf>,
}

impl SocketArg {
    /// The socket given, or the host service's, or the one managed
    /// rustnet plugin's.
    fn path(&self) -> PathBuf {
        if let Some(socket) = &self.socket {
            return socket.clone();
        }
        let service = PathBuf::from(SOCKET);
        if service.exists() {
            return service;
        }
        let managed: Vec<PathBuf> = std::fs::read_dir(MANAGED_DIR)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path().join("rustnet.sock"))
            .filter(|socket| socket.exists())
            .collect();
        match managed.as_slice() {
            [one] => one.clone(),
            _ => service,
        }
    }

    /// The daemon's answer at `path`, or its error.
    async fn ask(&self, path: &str) -> anyhow::Result<Value> {
        let (status, reply) = PluginClient::new(&self.path()).call(path, "").await?;
        if !status.is_success() {
            bail!(
                "daemon answered {status}: {}",
                reply["Err"].as_str().unwrap_or_default()
            );
        }
        Ok(reply)
    }
}

pub async fn cluster(cmd: ClusterCmd) -> anyhow::Result<()> {
    let (socket, node) = match cmd {
        ClusterCmd::Leave(socket) => {
            let reply = socket.ask("/Rustnet.Status").await?;
            let node = reply["host"]
                .as_u64()
                .ok_or_else(|| anyhow::anyhow!("status has no host id"))?;
            (socket, node)
        }
        ClusterCmd::Remove { node, socket } => (socket, node),
        ClusterCmd::RotateToken(socket) => {
            println!("{}", token(&socket, "/Rustnet.RotateToken").await?);
            return Ok(());
        }
    };
    let body = json!({ "Node": node }).to_string();
    let (status, reply) = PluginClient::new(&socket.path())
        .call("/Rustnet.Remove", body)
        .await?;
    if !status.is_success() {
        bail!(
            "remove {node}: {}",
            reply["Err"].as_str().unwrap_or_default()
        );
    }
    println!("host {node} removed from the cluster; what it held is free");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_shows_members_and_tls() {
        let status = json!({
            "name": "a (10.0.0.1)", "host": 1,
            "cluster": { "cluster": "c1", "term": 2, "state": "Leader", "leader": 1,
                "members": [{ "id": 1, "addr": "10.0.0.1:7950", "voter": true }] },
            "tls": { "ca": "0123456789abcdef0123", "certificate": null },
        });
        let text = render(&status);
        assert!(text.contains("member 1 10.0.0.1:7950 voter"), "{text}");
        assert!(
            text.contains(
                "mutual TLS: cluster CA 0123456789abcdef, this member's certificate none"
            ),
            "{text}"
        );
    }
}
