//! Driving a cluster of simulated hosts: allocation storms through the
//! plugin sockets (with the `ipam-client` test binary), what the cluster
//! holds, and cutting a host off its peers.

use std::collections::BTreeSet;
use std::process::{Child, Stdio};

use crate::{SimHost, run};

/// One answered request of a storm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The address acknowledged (without its prefix), or `None` for a
    /// failure.
    pub address: Option<String>,
    /// How long the request took, in milliseconds.
    pub ms: u64,
    /// The failure's message.
    pub error: String,
}

/// A storm of `n` allocations in `pool` on `host`, in the background.
pub fn start_storm(host: &SimHost, client: &str, pool: &str, n: usize, tag: &str) -> Child {
    host.cmd(client)
        .args([host.socket().as_str(), "storm", pool, &n.to_string(), tag])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn storm: {e}"))
}

/// Every answer of a storm, once it ended.
pub fn answers(storm: Child) -> Vec<Answer> {
    let out = storm
        .wait_with_output()
        .unwrap_or_else(|e| panic!("storm: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut words = line.splitn(3, ' ');
            match (
                words.next()?,
                words.next()?,
                words.next().unwrap_or_default(),
            ) {
                ("ok", address, ms) => Some(Answer {
                    address: Some(address.split('/').next().unwrap_or(address).to_owned()),
                    ms: ms.trim().parse().ok()?,
                    error: String::new(),
                }),
                ("err", ms, error) => Some(Answer {
                    address: None,
                    ms: ms.parse().ok()?,
                    error: error.to_owned(),
                }),
                _ => None,
            }
        })
        .collect()
}

/// The addresses a storm got acknowledged.
pub fn acked(storm: Child) -> Vec<String> {
    answers(storm)
        .into_iter()
        .filter_map(|a| a.address)
        .collect()
}

/// Every address held in `pool`, as `host` reports it.
pub fn held(host: &SimHost, pool: &str) -> BTreeSet<String> {
    let status = host.status();
    let pools = status["pools"].as_array().cloned().unwrap_or_default();
    pools
        .iter()
        .filter(|p| p["pool"] == pool)
        .flat_map(|p| p["addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["address"].as_str().map(str::to_owned))
        .collect()
}

/// Inserts (`-I`) or deletes (`-D`) rules that drop the host's peer
/// traffic (port `port`) both ways: the host is cut off from the cluster.
pub fn cut(host: &SimHost, action: &str, port: u16) {
    let port = port.to_string();
    for (chain, side) in [
        ("INPUT", "--dport"),
        ("INPUT", "--sport"),
        ("OUTPUT", "--dport"),
        ("OUTPUT", "--sport"),
    ] {
        let out = run(host
            .cmd("iptables")
            .args([action, chain, "-p", "tcp", side, &port, "-j", "DROP"]));
        out.unwrap_or_else(|e| panic!("iptables {action} {chain} {side}: {e}"));
    }
}
