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
        subnet: &str,
        gateway: Option<String>,
    ) -> anyhow::Result<()> {
        let mut config = json!({ "Subnet": subnet });
        if let Some(gateway) = gateway {
            config["Gateway"] = json!(gateway);
        }
        let body = json!({
            "Name": name,
            "Driver": self.driver,
            "CheckDuplicate": true,
            "IPAM": { "Driver": self.driver, "Config": [config] },
            "Options": options,
        });
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
                    address: c["IPv4Address"]
                        .as_str()
                        .and_then(|a| a.split('/').next()?.parse().ok()),
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
    /// `endpoint` (`--network-alias`es and the short id Docker adds).
    pub(crate) async fn aliases(&self, id: &str, endpoint: &str) -> anyhow::Result<Vec<String>> {
        let container = self
            .call(Method::GET, &format!("/containers/{id}/json"), None)
            .await?;
        let networks = container["NetworkSettings"]["Networks"].as_object();
        let on = networks
            .into_iter()
            .flat_map(|n| n.values())
            .find(|n| n["EndpointID"].as_str() == Some(endpoint));
        Ok(on
            .and_then(|n| n["Aliases"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect())
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
