//! Settings: every flag has a `RUSTNET_*` environment fallback, the names
//! that `docker plugin set`, systemd units and scripts use.

use std::net::{IpAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use rustnet_ipam::{DefaultPool, JoinToken};

/// Default pools for networks created without `--subnet`: /24s out of
/// 10.128.0.0/9, away from Docker's own 172.17-31/16 and 192.168/16 pools.
pub(crate) const DEFAULT_POOLS: &str = "10.128.0.0/9:24";

/// The settings of `rustnet daemon`.
#[derive(Debug, Clone, Args)]
pub(crate) struct DaemonConfig {
    /// Unix socket Docker talks to.
    #[arg(
        long,
        env = "RUSTNET_SOCKET",
        default_value = "/run/docker/plugins/rustnet.sock"
    )]
    pub socket: PathBuf,
    /// Directory of the persistent state (Raft log, snapshots).
    #[arg(long, env = "RUSTNET_STATE_DIR", default_value = "/var/lib/rustnet")]
    pub state_dir: PathBuf,
    /// This host's underlay address, for VXLAN and peers
    /// (default: the address of the default-route interface).
    #[arg(long, env = "RUSTNET_ADVERTISE_ADDR")]
    pub advertise_addr: Option<IpAddr>,
    /// gRPC port of the cluster.
    #[arg(long, env = "RUSTNET_PEER_PORT", default_value_t = 7950)]
    pub peer_port: u16,
    /// Comma-separated host:port of existing members; empty bootstraps a one-node cluster.
    #[arg(long, env = "RUSTNET_JOIN", value_delimiter = ',', default_value = "")]
    pub join: Vec<String>,
    /// The cluster's join token, needed to join (`rustnet status --token` on
    /// a member shows it).
    #[arg(long, env = "RUSTNET_JOIN_TOKEN", hide_env_values = true, value_parser = join_token)]
    pub join_token: Option<JoinToken>,
    /// How many voters the cluster keeps (3 or 5); further hosts are learners.
    #[arg(long, env = "RUSTNET_VOTERS", default_value_t = 3, value_parser = voters)]
    pub voters: usize,
    /// How long a new host keeps trying to join through RUSTNET_JOIN, in seconds.
    #[arg(long, env = "RUSTNET_JOIN_TIMEOUT", default_value_t = 30)]
    pub join_timeout_secs: u64,
    /// VXLAN UDP port.
    #[arg(long, env = "RUSTNET_VXLAN_PORT", default_value_t = 4789)]
    pub vxlan_port: u16,
    /// WireGuard's UDP port, for encrypted overlays.
    #[arg(long, env = "RUSTNET_WIREGUARD_PORT", default_value_t = 51871)]
    pub wireguard_port: u16,
    /// Which WireGuard encrypted overlays use: `auto` (the kernel's where
    /// it has WireGuard, else userspace in this process), `kernel` or
    /// `userspace`.
    #[arg(long, env = "RUSTNET_WIREGUARD", default_value = "auto")]
    pub wireguard: rustnet_overlay::tunnel::Implementation,
    /// This host's interface for a macvlan or ipvlan network's parent where
    /// it is named otherwise: NAME=IFACE,... (`eth0=ens5` also maps
    /// `eth0.50` to `ens5.50`).
    #[arg(long, env = "RUSTNET_PARENTS", default_value = "")]
    pub parents: crate::lan::Parents,
    /// Override the derived MTU.
    #[arg(long, env = "RUSTNET_MTU")]
    pub mtu: Option<u32>,
    /// Containers on overlays resolve each other's names across hosts
    /// (rustnet answers the DNS queries Docker forwards); `false` leaves
    /// DNS to Docker alone.
    #[arg(long, env = "RUSTNET_NAMES", default_value_t = true, action = clap::ArgAction::Set)]
    pub names: bool,
    /// Pools for networks created without --subnet: comma-separated BASE/LEN:SIZE.
    #[arg(long, env = "RUSTNET_DEFAULT_POOLS", value_delimiter = ',', default_value = DEFAULT_POOLS)]
    pub default_pools: Vec<DefaultPool>,
    /// Docker Engine API socket.
    #[arg(
        long,
        env = "RUSTNET_DOCKER_SOCKET",
        default_value = "/var/run/docker.sock"
    )]
    pub docker_socket: PathBuf,
    /// The name Docker knows this plugin by, for the overlays rustnet
    /// creates in the local Docker: `rustnet` for the host service, the
    /// plugin's full name (`rustnet:latest`) for a managed plugin.
    #[arg(long, env = "RUSTNET_DRIVER_NAME", default_value = "rustnet")]
    pub driver_name: String,
    /// How long a request may wait for the cluster before it fails, in seconds.
    #[arg(long, env = "RUSTNET_REQUEST_TIMEOUT", default_value_t = 10)]
    pub request_timeout_secs: u64,
    /// Where to serve Prometheus metrics (`/metrics`), e.g.
    /// 127.0.0.1:9464; off when unset.
    #[arg(long, env = "RUSTNET_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl DaemonConfig {
    /// Bound on every cluster operation inside a Docker request: well under
    /// the 30 s after which Docker's client gives up.
    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs.clamp(1, 25))
    }

    /// The members to join, without empty items.
    pub(crate) fn join_addrs(&self) -> Vec<&str> {
        self.join
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// The advertised address: as set, or the source address the kernel
    /// would use for the default route, or loopback on a host without one.
    pub(crate) fn advertise_addr(&self) -> IpAddr {
        self.advertise_addr
            .or_else(default_route_addr)
            .unwrap_or(IpAddr::from([127, 0, 0, 1]))
    }
}

fn join_token(text: &str) -> Result<JoinToken, String> {
    Ok(JoinToken::new(text))
}

/// A Raft cluster of 3 voters survives the loss of one, of 5 the loss of two.
fn voters(text: &str) -> Result<usize, String> {
    match text {
        "3" => Ok(3),
        "5" => Ok(5),
        other => Err(format!("{other}: the cluster keeps 3 or 5 voters")),
    }
}

/// Asks the kernel which source address it would use to reach a public
/// address; connecting a UDP socket sends nothing.
fn default_route_addr() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    Some(socket.local_addr().ok()?.ip())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: DaemonConfig,
    }

    #[test]
    fn defaults_and_lists_parse() {
        let cli = Cli::try_parse_from([
            "rustnet",
            "--join",
            "a:1, ,b:2",
            "--default-pools",
            "10.1.0.0/16:24,fd00::/48:64",
        ])
        .unwrap();
        assert_eq!(cli.config.join_addrs(), ["a:1", "b:2"]);
        assert_eq!(cli.config.default_pools.len(), 2);
        assert!(Cli::try_parse_from(["rustnet", "--default-pools", "10.1.0.0/16"]).is_err());
    }
}
