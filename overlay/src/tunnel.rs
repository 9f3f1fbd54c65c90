//! The WireGuard tunnel between hosts that carries encrypted overlays: the
//! kernel's WireGuard where the kernel has it, else userspace WireGuard
//! (gotatun) in this process over a TAP device of its own. Both speak the
//! same protocol: a kernel host and a userspace host are peers like any.
//!
//! ```text
//!   VXLAN of an encrypted overlay (local = this host's tunnel address)
//!     │ route: tunnel subnet dev rn-wg0
//!     ▼
//!   rn-wg0: kernel `wireguard` link        (kernel.rs, generic netlink)
//!        or TAP ─► this process's engine (engine.rs) with gotatun's Noise
//!                  sessions (handshake, ChaCha20-Poly1305): 64 KB bursts
//!                  read whole and cut, joined again on the way in
//!                  (offload.rs, tap.rs)
//!     ─► UDP to the peer's underlay address, WireGuard's own port, runs of
//!        datagrams in one send (udp.rs)
//! ```
//!
//! Nothing here decides who the peers are: the caller computes them from
//! the replicated state and hands over the whole set on every pass.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use futures::TryStreamExt;
use gotatun::x25519::{PublicKey, StaticSecret};
use tokio::sync::{mpsc, oneshot};

use crate::Error;

mod engine;
mod kernel;
mod offload;
mod sessions;
mod tap;
mod udp;

use engine::{Command, Engine};
use tap::Tap;

/// How long setting peers or a key waits for the handshakes it starts.
const HANDSHAKE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// How often that wait looks.
const HANDSHAKE_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// The largest packet the tunnel carries: gotatun's packet buffers.
pub const MAX_TUNNEL_MTU: u32 = 4000;

/// A host at the other end: its public key, where it listens, and its
/// tunnel address (the only source it may send from inside).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TunnelPeer {
    pub key: [u8; 32],
    pub endpoint: SocketAddr,
    pub address: Ipv4Addr,
}

/// What the tunnel device should be: its name, this host's address in the
/// tunnel subnet (with the subnet's prefix), its MTU, the port it listens
/// on, and the port of the VXLAN it carries (whose TCP it joins on
/// receive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelSpec {
    pub device: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub mtu: u32,
    pub port: u16,
    pub vxlan_port: u16,
}

/// One peer as the tunnel sees it, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerState {
    pub key: [u8; 32],
    pub endpoint: Option<SocketAddr>,
    /// Seconds since the last handshake, if there was one.
    pub handshake_age: Option<u64>,
    pub rx_bytes: usize,
    pub tx_bytes: usize,
    /// The addresses it may send from inside, with their prefixes.
    pub allowed: Vec<(IpAddr, u8)>,
}

/// Which WireGuard to run: the setting `RUSTNET_WIREGUARD`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Implementation {
    /// The kernel's where it has WireGuard, else userspace.
    #[default]
    Auto,
    /// The kernel's, or none.
    Kernel,
    /// Userspace, even where the kernel has WireGuard.
    Userspace,
}

impl std::str::FromStr for Implementation {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(Self::Auto),
            "kernel" => Ok(Self::Kernel),
            "userspace" => Ok(Self::Userspace),
            other => Err(format!(
                "unknown WireGuard implementation {other:?}: auto, kernel or userspace"
            )),
        }
    }
}

/// The WireGuard a running tunnel uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Kernel,
    Userspace,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Kernel => "kernel",
            Self::Userspace => "userspace",
        })
    }
}

/// The running tunnel: the kernel's WireGuard link, or the userspace
/// WireGuard device and its TAP.
pub struct Tunnel {
    spec: TunnelSpec,
    backend: Backend,
    /// Why the kernel's WireGuard is not used, when it is not.
    kernel_unavailable: Option<String>,
    /// The peers last set, by key (none before the first).
    peers: tokio::sync::Mutex<Option<BTreeMap<[u8; 32], TunnelPeer>>>,
}

enum Backend {
    Kernel(kernel::KernelWireGuard),
    Userspace(Userspace),
}

/// The userspace WireGuard device, run by a thread of its own: its
/// engine moves every packet within that thread. On the process's shared
/// runtime a hand-over could wake another parked worker (a profile of an
/// iperf3 run showed a sixth of the CPU in wakeups and task switches).
struct Userspace {
    commands: mpsc::Sender<Command>,
    /// Ends the thread when the tunnel goes.
    _stop: oneshot::Sender<()>,
}

impl Userspace {
    /// Asks the engine; `ask` makes the command around the reply's sender.
    async fn ask<T>(&self, ask: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, String> {
        let (reply, answer) = oneshot::channel();
        let gone = "the WireGuard thread has ended";
        self.commands
            .send(ask(reply))
            .await
            .map_err(|_| gone.to_owned())?;
        answer.await.map_err(|_| gone.to_owned())
    }

    /// Waits until each of `peers` has a session, [`HANDSHAKE_WAIT`] at
    /// most: a peer that does not answer soon is left to WireGuard's own
    /// retries.
    async fn await_sessions(&self, peers: Vec<[u8; 32]>) {
        if peers.is_empty() {
            return;
        }
        let deadline = tokio::time::Instant::now() + HANDSHAKE_WAIT;
        while tokio::time::Instant::now() < deadline {
            let keys = peers.clone();
            match self.ask(|reply| Command::Sessions(keys, reply)).await {
                Ok(false) => tokio::time::sleep(HANDSHAKE_POLL).await,
                Ok(true) | Err(_) => return,
            }
        }
    }
}

/// A thread with a single-threaded runtime of its own, running until the
/// sender it gives back is dropped.
fn own_thread() -> io::Result<(tokio::runtime::Handle, oneshot::Sender<()>)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("wireguard".to_owned())
        .spawn(move || {
            runtime.block_on(async {
                let _ = stopped.await;
            });
        })?;
    Ok((handle, stop))
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel").field("spec", &self.spec).finish()
    }
}

impl Tunnel {
    /// Starts WireGuard with `private_key` on `spec.port`, the kernel's or
    /// userspace as `implementation` says (`Auto`: the kernel's where it
    /// has it), on the device `spec.device` with its address and MTU, up.
    pub async fn start(
        spec: TunnelSpec,
        private_key: [u8; 32],
        implementation: Implementation,
    ) -> Result<Self, Error> {
        let failed = |what: &str, e: &dyn std::fmt::Display| Error::Command {
            command: format!("tunnel {}: {what}", spec.device),
            message: e.to_string(),
        };
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|e| failed("netlink connection", &e))?;
        tokio::spawn(connection);
        let mut kernel_unavailable = None;
        if implementation != Implementation::Userspace {
            match kernel::KernelWireGuard::create(&handle, &spec.device, private_key, spec.port)
                .await
            {
                Ok(wg) => match configure_link(&handle, &spec).await {
                    Ok(()) => {
                        return Ok(Self {
                            spec,
                            backend: Backend::Kernel(wg),
                            kernel_unavailable: None,
                            peers: tokio::sync::Mutex::new(None),
                        });
                    }
                    // The kernel takes the port when the link comes up: a
                    // taken one fails here. A link made just now goes, so
                    // that a userspace fallback can have the name.
                    Err(e) => {
                        if wg.created {
                            kernel::delete_link(&handle, &spec.device).await;
                        }
                        if implementation == Implementation::Kernel {
                            return Err(failed("configure", &e));
                        }
                        kernel_unavailable = Some(format!("configure: {e}"));
                    }
                },
                Err(e) if implementation == Implementation::Kernel => {
                    return Err(failed("kernel WireGuard", &e));
                }
                Err(e) => kernel_unavailable = Some(e.to_string()),
            }
        }
        let (runtime, stop) = own_thread().map_err(|e| failed("start its thread", &e))?;
        let (writer, reader) = {
            // Its TAP device is polled by the tunnel's own thread.
            let _on_thread = runtime.enter();
            Tap::open(&spec.device)
                .map_err(|e| failed("open /dev/net/tun", &e))?
                .split(spec.vxlan_port)
        };
        configure_link(&handle, &spec)
            .await
            .map_err(|e| failed("configure", &e))?;
        let mtu = u16::try_from(spec.mtu).unwrap_or(u16::MAX);
        let engine = Engine::new(private_key, spec.port, writer, mtu);
        let (commands, queue) = mpsc::channel(16);
        runtime.spawn(engine.run(reader, queue));
        Ok(Self {
            spec,
            backend: Backend::Userspace(Userspace {
                commands,
                _stop: stop,
            }),
            kernel_unavailable,
            peers: tokio::sync::Mutex::new(None),
        })
    }

    /// The WireGuard this tunnel runs.
    pub fn kind(&self) -> Kind {
        match self.backend {
            Backend::Kernel(_) => Kind::Kernel,
            Backend::Userspace(_) => Kind::Userspace,
        }
    }

    /// Why the kernel's WireGuard is not used, if it was tried and is not.
    pub fn kernel_unavailable(&self) -> Option<&str> {
        self.kernel_unavailable.as_deref()
    }

    /// What the tunnel was started as.
    pub fn spec(&self) -> &TunnelSpec {
        &self.spec
    }

    /// Makes the tunnel's peers exactly `peers`: new ones added, changed
    /// ones updated, the rest removed (a host removed from the cluster
    /// loses its peer on the pass that learns of it).
    pub async fn set_peers(&self, peers: &[TunnelPeer]) -> Result<(), Error> {
        let mut current = self.peers.lock().await;
        let wanted: BTreeMap<[u8; 32], TunnelPeer> =
            peers.iter().map(|p| (p.key, p.clone())).collect();
        if current.as_ref() == Some(&wanted) {
            return Ok(());
        }
        let failed = |e: &dyn std::fmt::Display| Error::Command {
            command: format!("tunnel {}: set peers", self.spec.device),
            message: e.to_string(),
        };
        match &self.backend {
            // The kernel's link may hold peers of a run before: it is
            // asked what it has.
            Backend::Kernel(wg) => wg.set_peers(peers).await.map_err(|e| failed(&e))?,
            Backend::Userspace(userspace) => {
                let after = wanted.clone();
                userspace
                    .ask(|reply| Command::SetPeers(after, reply))
                    .await
                    .map_err(|e| failed(&e))?
                    .map_err(|e| failed(&e))?;
                // New peers (every peer, after this process started
                // again) were sent a handshake at once.
                let before = current.as_ref();
                let new = wanted
                    .keys()
                    .filter(|k| !before.is_some_and(|b| b.contains_key(*k)))
                    .copied()
                    .collect();
                userspace.await_sessions(new).await;
            }
        }
        *current = Some(wanted);
        Ok(())
    }

    /// Replaces this host's static key; sessions with every peer start
    /// again with it (the peers must know the new public key first).
    pub async fn set_key(&self, private_key: [u8; 32]) -> Result<(), Error> {
        let failed = |e: &dyn std::fmt::Display| Error::Command {
            command: format!("tunnel {}: set key", self.spec.device),
            message: e.to_string(),
        };
        let userspace = match &self.backend {
            Backend::Kernel(wg) => return wg.set_key(private_key).await.map_err(|e| failed(&e)),
            Backend::Userspace(userspace) => userspace,
        };
        userspace
            .ask(|reply| Command::SetKey(private_key, reply))
            .await
            .map_err(|e| failed(&e))?;
        let peers = self
            .peers
            .lock()
            .await
            .iter()
            .flat_map(BTreeMap::keys)
            .copied()
            .collect();
        userspace.await_sessions(peers).await;
        Ok(())
    }

    /// Every peer's endpoint, latest handshake and traffic.
    pub async fn peer_states(&self) -> Vec<PeerState> {
        match &self.backend {
            Backend::Kernel(wg) => wg.peer_states().await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "WireGuard peers of the kernel link");
                Vec::new()
            }),
            Backend::Userspace(userspace) => {
                userspace.ask(Command::States).await.unwrap_or_default()
            }
        }
    }
}

/// The public key of `private_key`.
pub fn public_key(private_key: [u8; 32]) -> [u8; 32] {
    PublicKey::from(&StaticSecret::from(private_key)).to_bytes()
}

/// Gives the tunnel's device its address (the tunnel subnet's route with
/// it) and MTU, turns ARP off (a TAP device would ask for its peers), and
/// brings it up.
async fn configure_link(handle: &rtnetlink::Handle, spec: &TunnelSpec) -> Result<(), String> {
    let text = |e: rtnetlink::Error| e.to_string();
    let link = handle
        .link()
        .get()
        .match_name(spec.device.clone())
        .execute()
        .try_next()
        .await
        .map_err(text)?
        .ok_or_else(|| format!("{} vanished", spec.device))?;
    let index = link.header.index;
    let present = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect::<Vec<_>>()
        .await
        .map_err(text)?;
    if present.is_empty() {
        handle
            .address()
            .add(index, IpAddr::V4(spec.address), spec.prefix)
            .execute()
            .await
            .map_err(text)?;
    }
    handle
        .link()
        .change(
            rtnetlink::LinkUnspec::new_with_index(index)
                .mtu(spec.mtu)
                .arp(false)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(text)
}
