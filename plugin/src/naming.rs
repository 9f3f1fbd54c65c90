//! How rustnet names the interfaces it creates: every prefix in one place.
//!
//! Linux allows 15 bytes in an interface name, so names carry the first 12
//! characters of Docker's ids (or the VNI) behind a 3-byte prefix.

/// A network's bridge, unless `com.docker.network.bridge.name` names it.
pub(crate) const BRIDGE_PREFIX: &str = "rn-";
/// The host end of an endpoint's veth pair, on the bridge.
pub(crate) const VETH_HOST_PREFIX: &str = "rnh";
/// The container end, which Docker moves into the sandbox.
pub(crate) const VETH_CONTAINER_PREFIX: &str = "rnc";
/// An overlay's VXLAN device, by VNI.
pub(crate) const VXLAN_PREFIX: &str = "rnx";
/// An endpoint's macvlan or ipvlan link, which Docker moves into the
/// container.
pub(crate) const LAN_LINK_PREFIX: &str = "rnm";
/// A macvlan or ipvlan network's host shim (also its name where a bridge
/// network names its bridge).
pub(crate) const SHIM_PREFIX: &str = "rns";

/// The bridge name of a network without com.docker.network.bridge.name.
pub(crate) fn bridge_name(network_id: &str) -> String {
    format!("{BRIDGE_PREFIX}{}", short(network_id))
}

/// The host and container ends of an endpoint's veth pair.
pub(crate) fn veth_names(endpoint_id: &str) -> (String, String) {
    let id = short(endpoint_id);
    (
        format!("{VETH_HOST_PREFIX}{id}"),
        format!("{VETH_CONTAINER_PREFIX}{id}"),
    )
}

/// An endpoint's link on a macvlan or ipvlan network's parent.
pub(crate) fn lan_link_name(endpoint_id: &str) -> String {
    format!("{LAN_LINK_PREFIX}{}", short(endpoint_id))
}

/// The host shim of a macvlan or ipvlan network.
pub(crate) fn shim_name(network_id: &str) -> String {
    format!("{SHIM_PREFIX}{}", short(network_id))
}

/// The VXLAN device of VNI `vni`.
pub(crate) fn vxlan_name(vni: u32) -> String {
    format!("{VXLAN_PREFIX}{vni}")
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_kernels_limit() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(bridge_name(id), "rn-0123456789ab");
        let (host, container) = veth_names(id);
        assert_eq!(
            (host.as_str(), container.as_str()),
            ("rnh0123456789ab", "rnc0123456789ab")
        );
        assert_eq!(vxlan_name(16_777_215), "rnx16777215");
        assert_eq!(lan_link_name(id), "rnm0123456789ab");
        assert_eq!(shim_name(id), "rns0123456789ab");
        for name in [bridge_name(id), host, container, vxlan_name(16_777_215)] {
            assert!(name.len() <= 15, "{name}");
        }
        assert_eq!(bridge_name("short"), "rn-short");
    }
}
