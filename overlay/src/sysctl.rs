//! The few sysctls the data path needs: files under /proc/sys.

use crate::Error;

fn write(path: &str, value: &str) -> Result<(), Error> {
    let error = |source| Error::Sysctl {
        path: path.to_owned(),
        source,
    };
    match std::fs::write(path, value) {
        Err(e) if e.kind() == std::io::ErrorKind::ReadOnlyFilesystem => {
            make_writable().map_err(error)?;
            std::fs::write(path, value).map_err(error)
        }
        result => result.map_err(error),
    }
}

/// Inside a managed plugin /proc/sys is a read-only bind mount (as in any
/// container); the plugin has CAP_SYS_ADMIN and its own mount namespace, so
/// it remounts its view writable. The host's mounts are not touched.
fn make_writable() -> std::io::Result<()> {
    use nix::mount::{MsFlags, mount};
    tracing::info!("/proc/sys is read-only here: remounting it writable");
    mount(
        None::<&str>,
        "/proc/sys",
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(std::io::Error::from)
}

/// Routing between the bridges and the outside, as Docker enables it.
pub fn enable_ip_forward() -> Result<(), Error> {
    write("/proc/sys/net/ipv4/ip_forward", "1")
}

/// Routing of IPv6, for networks with an IPv6 subnet, as Docker enables
/// it for its own: on a host that takes its IPv6 default route from router
/// advertisements, set `accept_ra` to 2 on that interface first (the kernel
/// ignores advertisements on a router otherwise).
pub fn enable_ipv6_forward() -> Result<(), Error> {
    write("/proc/sys/net/ipv6/conf/all/forwarding", "1")
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
