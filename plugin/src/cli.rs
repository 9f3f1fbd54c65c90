//! The `rustnet status` and `rustnet cluster` commands: they ask the local
//! daemon over its socket and print its answer.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::client::PluginClient;
use crate::render::render;
use crate::status::Status;

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    socket: SocketArg,
    /// Print JSON, for scripts.
    #[arg(long)]
    json: bool,
    /// Print only the cluster's join token (RUSTNET_JOIN_TOKEN for new hosts).
    #[arg(long, conflicts_with = "json")]
    token: bool,
    /// Refresh in place every SECS seconds (2 by default) until interrupted.
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2", conflicts_with_all = ["json", "token"])]
    watch: Option<u64>,
}

pub(crate) async fn run(args: StatusArgs) -> anyhow::Result<()> {
    if args.token {
        println!("{}", token(&args.socket, "/Rustnet.Token").await?);
        return Ok(());
    }
    if let Some(secs) = args.watch {
        let every = std::time::Duration::from_secs(secs.max(1));
        loop {
            let shown = match args.socket.ask("/Rustnet.Status").await {
                Ok(reply) => match serde_json::from_value::<Status>(reply) {
                    Ok(status) => render(&status),
                    Err(e) => format!("rustnet: status reply: {e}\n"),
                },
                Err(e) => format!("rustnet: {e:#}\n"),
            };
            // Home the cursor and clear the screen, then draw.
            print!("\x1b[H\x1b[2J{shown}");
            let _ = std::io::Write::flush(&mut std::io::stdout());
            tokio::time::sleep(every).await;
        }
    }
    let reply = args.socket.ask("/Rustnet.Status").await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
    } else {
        let status: Status = serde_json::from_value(reply).context("status reply")?;
        print!("{}", render(&status));
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

/// `rustnet cluster ...`: membership changes, through the local daemon.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ClusterCmd {
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
    /// Replace the cluster's CA: every member renews its certificate under
    /// the new one within seconds, without downtime; prints the new join
    /// token (it pins the new CA).
    RotateCa(SocketArg),
    /// Replace this host's WireGuard key (encrypted overlays): the new
    /// public key goes to every member, sessions move to it at once.
    RotateKey(SocketArg),
}

/// Where the host service listens.
const SOCKET: &str = "/run/docker/plugins/rustnet.sock";
/// Where Docker puts a managed plugin's sockets: one directory per plugin id.
const MANAGED_DIR: &str = "/run/docker/plugins";

#[derive(Debug, Args)]
pub(crate) struct SocketArg {
    // The help text names a path with a placeholder, so it is given as
    // `help` rather than as a doc comment (which rustdoc reads as HTML).
    #[arg(
        long,
        env = "RUSTNET_SOCKET",
        help = "The daemon's socket [default: /run/docker/plugins/rustnet.sock, or \
                the managed plugin's /run/docker/plugins/<id>/rustnet.sock]"
    )]
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

pub(crate) async fn cluster(cmd: ClusterCmd) -> anyhow::Result<()> {
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
        ClusterCmd::RotateKey(socket) => {
            let reply = socket.ask("/Rustnet.RotateKey").await?;
            let key = reply["Key"]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("the daemon's answer has no key"))?;
            println!("this host's WireGuard public key is now {key}");
            return Ok(());
        }
        ClusterCmd::RotateCa(socket) => {
            let token = token(&socket, "/Rustnet.RotateCa").await?;
            eprintln!(
                "the cluster's CA is being replaced: members renew their certificates within \
                 seconds (`rustnet status` shows the rotation until it is done); new hosts \
                 join with this token:"
            );
            println!("{token}");
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
