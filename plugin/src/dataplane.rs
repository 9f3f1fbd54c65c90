//! The seam between the service and the kernel: the service computes what
//! this host should look like, a [`DataPlane`] makes it so.

use futures::future::BoxFuture;
use rustnet_overlay::firewall::Network as FirewallNetwork;
use rustnet_overlay::{Desired, Iptables, Kernel, Netlink, plan, sysctl};

/// Makes the kernel match `desired` links and `firewall` rules.
pub trait DataPlane: Send + Sync + std::fmt::Debug {
    fn apply(
        &self,
        desired: Desired,
        firewall: Vec<FirewallNetwork>,
    ) -> BoxFuture<'_, Result<(), rustnet_overlay::Error>>;
}

/// The real kernel of this host's network namespace.
#[derive(Debug)]
pub struct KernelPlane {
    netlink: Netlink,
    iptables: Iptables,
}

impl KernelPlane {
    /// Connects to netlink and enables IP forwarding (as Docker does).
    pub fn new() -> Result<Self, rustnet_overlay::Error> {
        sysctl::enable_ip_forward()?;
        Ok(Self {
            netlink: Netlink::connect()?,
            iptables: Iptables,
        })
    }
}

impl DataPlane for KernelPlane {
    fn apply(
        &self,
        desired: Desired,
        firewall: Vec<FirewallNetwork>,
    ) -> BoxFuture<'_, Result<(), rustnet_overlay::Error>> {
        Box::pin(async move {
            let observed = self.netlink.observe().await?;
            for op in plan(&desired, &observed)? {
                self.netlink.apply(&op).await?;
            }
            for network in firewall.iter().filter(|n| !n.published.is_empty()) {
                sysctl::route_localnet(&network.bridge)?;
            }
            self.iptables.apply(&firewall).await
        })
    }
}

/// A data plane that only records what it was asked for: for tests of the
/// protocol layer that must not touch the host.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct RecordingPlane {
    pub applied: std::sync::Mutex<Vec<(Desired, Vec<FirewallNetwork>)>>,
}

#[cfg(test)]
impl DataPlane for RecordingPlane {
    fn apply(
        &self,
        desired: Desired,
        firewall: Vec<FirewallNetwork>,
    ) -> BoxFuture<'_, Result<(), rustnet_overlay::Error>> {
        if let Ok(mut applied) = self.applied.lock() {
            applied.push((desired, firewall));
        }
        Box::pin(async { Ok(()) })
    }
}
