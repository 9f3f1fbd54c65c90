//! The few sysctls the data path needs: files under /proc/sys.

use crate::Error;

fn write(path: &str, value: &str) -> Result<(), Error> {
    std::fs::write(path, value).map_err(|source| Error::Sysctl {
        path: path.to_owned(),
        source,
    })
}

/// Routing between the bridges and the outside, as Docker enables it.
pub fn enable_ip_forward() -> Result<(), Error> {
    write("/proc/sys/net/ipv4/ip_forward", "1")
}

/// Lets packets from 127.0.0.1 (published ports reached at localhost,
/// DNATed in OUTPUT) be routed out of `bridge`; Docker does the same on its
/// bridges when it DNATs loopback traffic.
pub fn route_localnet(bridge: &str) -> Result<(), Error> {
    write(
        &format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet"),
        "1",
    )
}
