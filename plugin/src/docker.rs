//! A few Docker Engine API calls over its Unix socket (hyperlocal): what
//! overlay propagation and name learning need. Only ever used from
//! background tasks, never inside a plugin request (dockerd may be waiting
//! on that very request).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyperlocal::{UnixClientExt, UnixConnector, Uri};
use serde_json::{Value, json};

/// `text` safe in a URL query.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A container on a network, as Docker shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attached {
    pub(crate) container: String,
    pub(crate) name: String,
    pub(crate) endpoint: String,
    pub(crate) address: Option<IpAddr>,
}

/// The local dockerd's API.
#[derive(Debug, Clone)]
pub(crate) struct Docker {
    socket: PathBuf,
    /// The name this plugin answers to in Docker, for the networks it creates.
    driver: String,
    client: Client<UnixConnector, Full<Bytes>>,
}

/// A subnet of a network to create, with its gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pool {
    pub subnet: String,
    pub gateway: Option<String>,
    /// `--ip-range`.
    pub range: Option<String>,
}

impl Docker {
    pub(crate) fn new(socket: &Path, driver: &str) -> Self {
        Self {
            socket: socket.to_owned(),
            driver: driver.to_owned(),
            client: Client::unix(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = Request::builder()
            .method(method.clone())
            .uri(Uri::new(&self.socket, path))
            .header("Content-Type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let response =
            tokio::time::timeout(Duration::from_secs(10), self.client.request(request)).await??;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            anyhow::bail!(
                "docker {method} {path}: {status}: {}",
                value["message"].as_str().unwrap_or_default()
            );
        }
        Ok(value)
    }

    /// The engine's version (`GET /version`), say `28.5.2`.
    pub(crate) async fn version(&self) -> anyhow::Result<String> {
        let version = self.call(Method::GET, "/version", None).await?;
        version["Version"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("docker GET /version: no Version"))
    }

    /// The name of the network with id `id`.
    pub(crate) async fn network_name(&self, id: &str) -> anyhow::Result<String> {
        let network = self
            .call(Method::GET, &format!("/networks/{id}"), None)
            .await?;
        network["Name"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("network {id} has no name"))
    }

    /// `docker network create -d DRIVER --ipam-driver DRIVER -o mode=overlay ...`
    pub(crate) async fn create_overlay(
        &self,
        name: &str,
        options: Value,
        pools: Vec<Pool>,
    ) -> anyhow::Result<()> {
        let ipv6 = pools.iter().any(|p| p.subnet.contains(':'));
        let ipv4 = pools.iter().any(|p| !p.subnet.contains(':'));
        let configs: Vec<Value> = pools
            .into_iter()
            .map(|pool| {
                let mut config = json!({ "Subnet": pool.subnet });
                if let Some(gateway) = pool.gateway {
                    config["Gateway"] = json!(gateway);
                }
                if let Some(range) = pool.range {
                    config["IPRange"] = json!(range);
                }
                config
            })
            .collect();
        let mut body = json!({
            "Name": name,
            "Driver": self.driver,
            "CheckDuplicate": true,
            "EnableIPv6": ipv6,
            "IPAM": { "Driver": self.driver, "Config": configs },
            "Options": options,
        });
        if !ipv4 {
            // An IPv6-only overlay (Docker 28 and later; older engines
            // ignore the field, and rustnet refuses the IPv4 they add).
            body["EnableIPv4"] = json!(false);
        }
        self.call(Method::POST, "/networks/create", Some(body))
            .await
            .map(drop)
    }

    /// The containers Docker has on network `id`.
    pub(crate) async fn network_containers(&self, id: &str) -> anyhow::Result<Vec<Attached>> {
        let network = self
            .call(Method::GET, &format!("/networks/{id}"), None)
            .await?;
        let Some(containers) = network["Containers"].as_object() else {
            return Ok(Vec::new());
        };
        Ok(containers
            .iter()
            .filter_map(|(container, c)| {
                Some(Attached {
                    container: container.clone(),
                    name: c["Name"].as_str()?.to_owned(),
                    endpoint: c["EndpointID"].as_str()?.to_owned(),
                    // The IPv4 address, or the IPv6 one on an IPv6-only
                    // network.
                    address: [&c["IPv4Address"], &c["IPv6Address"]]
                        .into_iter()
                        .find_map(|a| a.as_str()?.split('/').next()?.parse().ok()),
                })
            })
            .collect())
    }

    /// The ids of the networks whose addresses come from this plugin's
    /// IPAM driver while another driver (Docker's bridge, say) builds them.
    pub(crate) async fn ipam_only_networks(&self) -> anyhow::Result<Vec<String>> {
        let networks = self.call(Method::GET, "/networks", None).await?;
        Ok(networks
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| {
                n["IPAM"]["Driver"].as_str() == Some(&self.driver)
                    && n["Driver"].as_str() != Some(&self.driver)
            })
            .filter_map(|n| n["Id"].as_str().map(str::to_owned))
            .collect())
    }

    /// The aliases container `id` has on the network where its endpoint is
    /// `endpoint`: every name Docker's own DNS answers for it there but its
    /// name (see [`dns_names`]).
    pub(crate) async fn aliases(&self, id: &str, endpoint: &str) -> anyhow::Result<Vec<String>> {
        let container = self
            .call(Method::GET, &format!("/containers/{id}/json"), None)
            .await?;
        Ok(dns_names(&container, endpoint))
    }

    /// Waits for the next container or network event (the event itself
    /// does not matter: it only says that something changed); an error
    /// when the stream cannot be opened or ends.
    pub(crate) async fn events(&self, mut on_event: impl FnMut()) -> anyhow::Result<()> {
        let filters = r#"{"type":["container","network"]}"#;
        let path = format!("/events?filters={}", percent_encode(filters));
        let request = Request::builder()
            .method(Method::GET)
            .uri(Uri::new(&self.socket, &path))
            .body(Full::new(Bytes::new()))?;
        let response =
            tokio::time::timeout(Duration::from_secs(10), self.client.request(request)).await??;
        if !response.status().is_success() {
            anyhow::bail!("docker GET /events: {}", response.status());
        }
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            if frame?.is_data() {
                on_event();
            }
        }
        anyhow::bail!("docker's event stream ended")
    }

    /// `docker network rm ID`.
    pub(crate) async fn remove_network(&self, id: &str) -> anyhow::Result<()> {
        self.call(Method::DELETE, &format!("/networks/{id}"), None)
            .await
            .map(drop)
    }
}

/// The names a container answers to on the network where its endpoint is
/// `endpoint`, from its `GET /containers/ID/json`, its own name apart:
/// `Aliases` (the `--network-alias`es; up to API 1.44 with the short id
/// Docker adds), and from API 1.44 on (Docker 25) `DNSNames`, where the
/// short id and the hostname moved.
pub(crate) fn dns_names(container: &Value, endpoint: &str) -> Vec<String> {
    let name = container["Name"].as_str().unwrap_or_default();
    let name = name.trim_start_matches('/');
    let networks = container["NetworkSettings"]["Networks"].as_object();
    let on = networks
        .into_iter()
        .flat_map(|n| n.values())
        .find(|n| n["EndpointID"].as_str() == Some(endpoint));
    let mut names: Vec<String> = Vec::new();
    for key in ["Aliases", "DNSNames"] {
        for found in on
            .and_then(|n| n[key].as_array())
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if found != name && !names.iter().any(|n| n == found) {
                names.push(found.to_owned());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_aliases_and_dns_names_without_the_name_itself() {
        // Docker 20.10: the short id among the aliases.
        let old = json!({
            "Name": "/web1",
            "NetworkSettings": {"Networks": {"ov": {
                "EndpointID": "ep1", "Aliases": ["www", "0123456789ab"]}}}
        });
        assert_eq!(dns_names(&old, "ep1"), ["www", "0123456789ab"]);
        // Docker 25 and later: the short id and hostname in DNSNames.
        let new = json!({
            "Name": "/web1",
            "NetworkSettings": {"Networks": {
                "other": {"EndpointID": "ep0", "Aliases": ["elsewhere"]},
                "ov": {"EndpointID": "ep1", "Aliases": ["www"],
                       "DNSNames": ["web1", "www", "0123456789ab", "webhost"]}}}
        });
        assert_eq!(dns_names(&new, "ep1"), ["www", "0123456789ab", "webhost"]);
        assert!(dns_names(&new, "nope").is_empty());
    }
}
