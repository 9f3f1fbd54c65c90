//! The seam between the service and the kernel: the service computes what
//! this host should look like, a [`DataPlane`] makes it so.

use futures::future::BoxFuture;
use rustnet_overlay::firewall::{Network as FirewallNetwork, VxlanIngress};
use rustnet_overlay::{Desired, Iptables, Kernel, Netlink, plan, sysctl};

/// Makes the kernel match `desired` links and `firewall` rules.
pub trait DataPlane: Send + Sync + std::fmt::Debug {
    /// The MTU of the interface holding `address` (the underlay), now.
    fn mtu_of(&self, address: std::net::IpAddr) -> BoxFuture<'_, Option<u32>>;

    fn apply(
        &self,
        desired: Desired,
        firewall: Vec<FirewallNetwork>,
    ) -> BoxFuture<'_, Result<(), rustnet_overlay::Error>>;

    /// Admits VXLAN from the members only (`None`: no overlay here).
    fn vxlan_ingress(
        &self,
        ingress: Option<VxlanIngress>,
    ) -> BoxFuture<'_, Result<(), rustnet_overlay::Error>>;
}

/// The real kernel of this host's network namespace.
#[derive(Debug)]
pub struct KernelPlane {
    netlink: Netlink,
    iptables: Iptables,
    /// The firewall view last applied: rules are rewritten only when it
    /// changes (each iptables run costs milliseconds; most calls, such as a
    /// CreateEndpoint, change no rule). Empty at start, so the first
    /// reconcile rebuilds everything.
    applied: std::sync::Mutex<Option<Vec<FirewallNetwork>>>,
    /// The VXLAN ingress rule last applied, likewise.
    ingress: std::sync::Mutex<Option<Option<VxlanIngress>>>,
}

impl KernelPlane {
    /// Connects to netlink and enables IP forwarding (as Docker does).
    pub fn new() -> Result<Self, rustnet_overlay::Error> {
        sysctl::enable_ip_forward()?;
        Ok(Self {
            netlink: Netlink::connect()?,
            iptables: Iptables,
            applied: std::sync::Mutex::new(None),
            ingress: std::sync::Mutex::new(None),
        })
    }
}

impl DataPlane for KernelPlane {
    fn vxlan_ingress(
        &self,
        ingress: Option<VxlanIngress>,
    ) -> BoxFuture<'_, Result<(), rustnet_overlay::Error>> {
        Box::pin(async move {
            let unchanged = self
                .ingress
                .lock()
                .map(|last| last.as_ref() == Some(&ingress))
                .unwrap_or(false);
            if unchanged {
                return Ok(());
            }
            let result = self.iptables.apply_vxlan_ingress(ingress.as_ref()).await;
            if let Ok(mut last) = self.ingress.lock() {
                *last = result.is_ok().then_some(ingress);
            }
            result
        })
    }

    fn mtu_of(&self, address: std::net::IpAddr) -> BoxFuture<'_, Option<u32>> {
        Box::pin(async move {
            match self.netlink.mtu_of(address).await {
                Ok(mtu) => mtu,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the underlay MTU");
                    None
                }
            }
        })
    }

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
            let unchanged = self
                .applied
                .lock()
                .map(|a| a.as_ref() == Some(&firewall))
                .unwrap_or(false);
            if unchanged {
                return Ok(());
            }
            for network in firewall.iter().filter(|n| !n.published.is_empty()) {
                sysctl::route_localnet(&network.bridge)?;
            }
            let result = self.iptables.apply(&firewall).await;
            if let Ok(mut applied) = self.applied.lock() {
                *applied = result.is_ok().then_some(firewall);
            }
            result
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
    fn vxlan_ingress(
        &self,
        _ingress: Option<VxlanIngress>,
    ) -> BoxFuture<'_, Result<(), rustnet_overlay::Error>> {
        Box::pin(async { Ok(()) })
    }

    fn mtu_of(&self, _address: std::net::IpAddr) -> BoxFuture<'_, Option<u32>> {
        Box::pin(async { None })
    }

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
