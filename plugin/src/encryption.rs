//! Encrypted overlays: this host's WireGuard key, its tunnel, and who the
//! tunnel's peers are.
//!
//! ```text
//!   state dir: wireguard.key (0600, never replicated)
//!        │ public key ─► SetTunnelKey{host, key, port} (the host's own)
//!        ▼
//!   every pass: peers = the other members' keys at their underlay address,
//!               each owning one tunnel address (169.254.192.0/18 + id)
//!   an encrypted overlay's VXLAN: local = this host's tunnel address,
//!               remotes = the other hosts' tunnel addresses, port 7951
//! ```
//!
//! The tunnel starts with the first encrypted overlay of the cluster; a
//! host where it cannot start refuses encrypted overlays by name, and its
//! encrypted overlays never come up there in clear.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustnet_ipam::{HostId, MAX_TUNNEL_SLOT, State};
use rustnet_overlay::tunnel::{
    Implementation, MAX_TUNNEL_MTU, Tunnel, TunnelPeer, TunnelSpec, public_key,
};

/// The tunnel device.
pub(crate) const TUNNEL_DEVICE: &str = "rn-wg0";
/// Where the hosts' tunnel addresses are: a link-local block owned by no
/// host, one address per host id.
const TUNNEL_NET: Ipv4Addr = Ipv4Addr::new(169, 254, 192, 0);
const TUNNEL_PREFIX: u8 = 18;
/// The UDP port of encrypted overlays' VXLAN, inside the tunnel only.
pub(crate) const SEALED_VXLAN_PORT: u16 = 7951;
/// The underlay's MTU where it cannot be read.
pub(crate) const DEFAULT_UNDERLAY_MTU: u32 = 1500;
/// WireGuard's own header and tag over an IPv4 underlay.
const WIREGUARD_OVERHEAD: u32 = 60;
/// The same over an IPv6 underlay.
const WIREGUARD6_OVERHEAD: u32 = 80;

/// Why an encrypted overlay cannot come up while this host's key is not
/// the cluster's.
pub(crate) const KEY_NOT_PUBLISHED: &str =
    "its WireGuard key is not in the cluster yet (every member needs a release with encryption)";

/// The MTU of the tunnel over an underlay of `underlay_mtu` whose family is
/// `underlay`'s (pure): WireGuard's header and tag off, at most what the
/// userspace tunnel carries.
pub(crate) fn tunnel_mtu(underlay_mtu: u32, underlay: IpAddr) -> u32 {
    let overhead = if underlay.is_ipv6() {
        WIREGUARD6_OVERHEAD
    } else {
        WIREGUARD_OVERHEAD
    };
    underlay_mtu.saturating_sub(overhead).min(MAX_TUNNEL_MTU)
}

/// The tunnel address of the host with tunnel slot `slot` (pure).
pub(crate) fn tunnel_address(slot: u32) -> Option<Ipv4Addr> {
    (slot > 0 && slot <= MAX_TUNNEL_SLOT).then(|| Ipv4Addr::from(u32::from(TUNNEL_NET) + slot))
}

/// The tunnel address of `host`, once it published its key (pure).
pub(crate) fn tunnel_address_of(state: &State, host: HostId) -> Option<Ipv4Addr> {
    tunnel_address(state.tunnel_key(host)?.slot)
}

/// Every other member with a published key, at its underlay address of
/// `local`'s family (pure): the tunnel's peers on `host`.
pub(crate) fn tunnel_peers(state: &State, host: HostId, local: IpAddr) -> Vec<TunnelPeer> {
    let mut peers: Vec<TunnelPeer> = state
        .hosts_with_tunnel_keys()
        .filter(|(id, _)| *id != host)
        .filter_map(|(id, key)| {
            let vtep = state.vtep(id).filter(|v| v.is_ipv6() == local.is_ipv6())?;
            Some(TunnelPeer {
                key: decode_key(&key.key)?,
                endpoint: SocketAddr::new(vtep, key.port),
                address: tunnel_address(key.slot)?,
            })
        })
        .collect();
    peers.sort();
    peers
}

/// Whether the cluster has an encrypted overlay (pure): the tunnel is
/// needed.
pub(crate) fn wanted(state: &State) -> bool {
    state.tables().overlays().any(|o| o.encrypted)
}

/// A key's base64 text.
pub(crate) fn encode_key(key: &[u8; 32]) -> String {
    STANDARD.encode(key)
}

fn decode_key(text: &str) -> Option<[u8; 32]> {
    STANDARD.decode(text).ok()?.try_into().ok()
}

/// This host's WireGuard identity and, once started, its tunnel.
#[derive(Debug)]
pub(crate) struct Encryption {
    key_path: std::path::PathBuf,
    private: std::sync::Mutex<[u8; 32]>,
    port: u16,
    implementation: Implementation,
    tunnel: tokio::sync::Mutex<TunnelState>,
}

#[derive(Debug, Default)]
enum TunnelState {
    #[default]
    Stopped,
    Up(Tunnel),
    /// It could not start here: why.
    Failed(String),
}

/// What `rustnet status` shows of encryption.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub(crate) struct EncryptionStatus {
    /// `kernel`, `userspace` (in this process), `not started` or
    /// `unavailable: ...`.
    pub tunnel: String,
    /// Why the tunnel is not the kernel's, when the kernel's was tried.
    pub kernel_unavailable: Option<String>,
    pub public_key: String,
    pub port: u16,
    pub address: Option<Ipv4Addr>,
    pub peers: usize,
    /// Peers with a handshake in the last three minutes.
    pub peers_up: usize,
}

impl Encryption {
    /// Loads this host's private key from `state_dir`, making one at the
    /// first start (root-only, like the directory).
    pub(crate) fn load(state_dir: &Path, port: u16) -> anyhow::Result<Self> {
        let key_path = state_dir.join("wireguard.key");
        let private = match std::fs::read_to_string(&key_path) {
            Ok(text) => decode_key(text.trim())
                .with_context(|| format!("{} holds no WireGuard key", key_path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                write_key(&key_path, &key)?;
                key
            }
            Err(e) => return Err(e).with_context(|| format!("read {}", key_path.display())),
        };
        Ok(Self {
            key_path,
            private: std::sync::Mutex::new(private),
            port,
            implementation: Implementation::Auto,
            tunnel: tokio::sync::Mutex::default(),
        })
    }

    /// Runs the kernel's WireGuard or the userspace one as `implementation`
    /// says (`Auto` by default).
    pub(crate) fn with_implementation(mut self, implementation: Implementation) -> Self {
        self.implementation = implementation;
        self
    }

    /// This host's public key, base64.
    pub(crate) fn public_key(&self) -> String {
        encode_key(&public_key(*crate::lock(&self.private)))
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Makes a new private key and keeps it on disk in place of the one
    /// before ([`Encryption::public_key`] answers the new one from now
    /// on); the tunnel keeps the one before until [`Encryption::use_key`].
    pub(crate) fn next_key(&self) -> anyhow::Result<[u8; 32]> {
        let key: [u8; 32] = rand::random();
        write_key(&self.key_path, &key)?;
        *crate::lock(&self.private) = key;
        Ok(key)
    }

    /// Gives the running tunnel (if any) `key`, and starts a handshake
    /// with every peer under it.
    pub(crate) async fn use_key(&self, key: [u8; 32]) -> Result<(), String> {
        match &*self.tunnel.lock().await {
            TunnelState::Up(tunnel) => tunnel.set_key(key).await.map_err(|e| e.to_string()),
            _ => Ok(()),
        }
    }

    /// Starts the tunnel of `host` once (MTU from the underlay's), and
    /// gives its address; the reason when it cannot run here.
    pub(crate) async fn ensure(
        &self,
        address: Ipv4Addr,
        underlay: IpAddr,
        underlay_mtu: u32,
    ) -> Result<Ipv4Addr, String> {
        let mut tunnel = self.tunnel.lock().await;
        match &*tunnel {
            TunnelState::Up(t) => return Ok(t.spec().address),
            TunnelState::Failed(why) => return Err(why.clone()),
            TunnelState::Stopped => {}
        }
        let spec = TunnelSpec {
            device: TUNNEL_DEVICE.to_owned(),
            address,
            prefix: TUNNEL_PREFIX,
            mtu: tunnel_mtu(underlay_mtu, underlay),
            port: self.port,
            vxlan_port: SEALED_VXLAN_PORT,
        };
        let private = *crate::lock(&self.private);
        match Tunnel::start(spec, private, self.implementation).await {
            Ok(started) => {
                tracing::info!(
                    device = TUNNEL_DEVICE, %address, port = self.port, kind = %started.kind(),
                    kernel_unavailable = started.kernel_unavailable(),
                    "WireGuard tunnel up"
                );
                *tunnel = TunnelState::Up(started);
                Ok(address)
            }
            Err(e) => {
                let why = e.to_string();
                tracing::error!(error = %why, "WireGuard tunnel cannot start: encrypted overlays stay down on this host");
                *tunnel = TunnelState::Failed(why.clone());
                Err(why)
            }
        }
    }

    /// Makes the tunnel's peers `peers`, if it runs.
    pub(crate) async fn set_peers(&self, peers: &[TunnelPeer]) -> Result<(), String> {
        match &*self.tunnel.lock().await {
            TunnelState::Up(tunnel) => tunnel.set_peers(peers).await.map_err(|e| e.to_string()),
            _ => Ok(()),
        }
    }

    /// Whether the tunnel runs, and its address.
    pub(crate) async fn address(&self) -> Option<Ipv4Addr> {
        match &*self.tunnel.lock().await {
            TunnelState::Up(tunnel) => Some(tunnel.spec().address),
            _ => None,
        }
    }

    /// For `rustnet status`.
    pub(crate) async fn status(&self) -> EncryptionStatus {
        let state = self.tunnel.lock().await;
        let (tunnel, kernel_unavailable, address, peers) = match &*state {
            TunnelState::Stopped => ("not started".to_owned(), None, None, Vec::new()),
            TunnelState::Failed(why) => (format!("unavailable: {why}"), None, None, Vec::new()),
            TunnelState::Up(t) => (
                t.kind().to_string(),
                t.kernel_unavailable().map(str::to_owned),
                Some(t.spec().address),
                t.peer_states().await,
            ),
        };
        EncryptionStatus {
            tunnel,
            kernel_unavailable,
            public_key: self.public_key(),
            port: self.port,
            address,
            peers: peers.len(),
            peers_up: peers
                .iter()
                .filter(|p| p.handshake_age.is_some_and(|age| age < 180))
                .count(),
        }
    }
}

/// Writes `key` (base64) to `path`, root-only, replacing it whole.
fn write_key(path: &Path, key: &[u8; 32]) -> anyhow::Result<()> {
    use std::io::Write;
    let partial = path.with_extension("new");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .with_context(|| format!("create {}", partial.display()))?;
    writeln!(file, "{}", encode_key(key))
        .with_context(|| format!("write {}", partial.display()))?;
    file.sync_all()
        .with_context(|| format!("sync {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("rename to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use rustnet_ipam::Command;

    use super::*;

    #[test]
    fn each_host_has_its_own_tunnel_address() {
        assert_eq!(tunnel_address(1), Some(Ipv4Addr::new(169, 254, 192, 1)));
        assert_eq!(tunnel_address(300), Some(Ipv4Addr::new(169, 254, 193, 44)));
        assert_eq!(
            tunnel_address(16382),
            Some(Ipv4Addr::new(169, 254, 255, 254))
        );
        assert_eq!(tunnel_address(0), None);
        assert_eq!(tunnel_address(16383), None, "the block's broadcast");
    }

    #[test]
    fn the_tunnel_leaves_room_for_wireguard_and_stays_within_its_buffers() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(tunnel_mtu(1500, v4), 1440);
        assert_eq!(tunnel_mtu(1500, v6), 1420);
        assert_eq!(tunnel_mtu(9000, v4), MAX_TUNNEL_MTU);
    }

    #[test]
    fn peers_are_the_other_members_with_keys_of_the_local_family() {
        let key = |n: u8| encode_key(&[n; 32]);
        let mut state = State::default();
        for (host, addr) in [
            (1, "10.0.0.1"),
            (2, "10.0.0.2"),
            (3, "fd00::3"),
            (4, "10.0.0.4"),
        ] {
            state
                .apply(&Command::RegisterHost {
                    host,
                    name: format!("h{host}"),
                    addr: addr.parse().ok(),
                })
                .unwrap();
        }
        for host in [1, 2, 3] {
            state
                .apply(&Command::SetTunnelKey {
                    host,
                    key: key(u8::try_from(host).unwrap()),
                    port: 51871,
                })
                .unwrap();
        }
        let peers = tunnel_peers(&state, 1, "10.0.0.1".parse().unwrap());
        // Not itself, not host 3 (IPv6), not host 4 (no key yet).
        assert_eq!(
            peers,
            vec![TunnelPeer {
                key: [2; 32],
                endpoint: "10.0.0.2:51871".parse().unwrap(),
                address: Ipv4Addr::new(169, 254, 192, 2),
            }]
        );
        state.apply(&Command::ForgetHost { host: 2 }).unwrap();
        assert!(
            tunnel_peers(&state, 1, "10.0.0.1".parse().unwrap()).is_empty(),
            "a removed host is no peer"
        );
    }

    #[test]
    fn the_key_is_made_once_and_kept_root_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("rustnet-key-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = Encryption::load(&dir, 51871).unwrap();
        let again = Encryption::load(&dir, 51871).unwrap();
        assert_eq!(first.public_key(), again.public_key());
        first.next_key().unwrap();
        assert_ne!(first.public_key(), again.public_key(), "a new key");
        let after = Encryption::load(&dir, 51871).unwrap();
        assert_eq!(first.public_key(), after.public_key(), "kept on disk");
        let path = dir.join("wireguard.key");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, "garbage\n").unwrap();
        let refused = Encryption::load(&dir, 51871).unwrap_err().to_string();
        assert!(refused.contains("holds no WireGuard key"), "{refused}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
