//! Recording fakes of the kernel and the firewall, for tests of the
//! reconcile loop and of the layers above it that must not touch the host.
//!
//! [`FakeKernel`] keeps a simulated link table and applies operations as
//! the kernel would (refusing what the kernel would refuse); both fakes
//! record every call in one shared [`Journal`], so a test can assert the
//! exact order of observe, operations and firewall writes.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::firewall::{Network, ResolverAddress, VxlanIngress};
use crate::model::{Link, LinkKind, Observed, Op};
use crate::reconcile::Firewall;
use crate::{Error, Kernel};

/// What the fakes were asked, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Observe,
    Op(Op),
    Firewall(Vec<Network>),
    Ingress(Option<VxlanIngress>),
    Resolver(Option<ResolverAddress>),
    RouteLocalnet(String),
}

/// The shared record of calls.
#[derive(Debug, Clone, Default)]
pub struct Journal(Arc<Mutex<Vec<Event>>>);

impl Journal {
    fn push(&self, event: Event) {
        lock(&self.0).push(event);
    }

    /// Everything recorded so far.
    pub fn events(&self) -> Vec<Event> {
        lock(&self.0).clone()
    }

    /// Forgets what was recorded.
    pub fn clear(&self) {
        lock(&self.0).clear();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A kernel with a simulated link table.
#[derive(Debug, Clone, Default)]
pub struct FakeKernel {
    observed: Arc<Mutex<Observed>>,
    journal: Journal,
    /// Operations refused as if the kernel failed them (by their text).
    failing: Arc<Mutex<Vec<String>>>,
    mtu: Option<u32>,
}

impl FakeKernel {
    pub fn new(journal: Journal) -> Self {
        Self {
            journal,
            ..Self::default()
        }
    }

    /// A kernel whose underlay interface has `mtu`.
    pub fn with_underlay_mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// The links and entries as they are now.
    pub fn observed(&self) -> Observed {
        lock(&self.observed).clone()
    }

    /// Puts a link there behind rustnet's back (a foreign interface, a
    /// leftover from before a restart).
    pub fn add_link(&self, name: &str, link: Link) {
        lock(&self.observed).links.insert(name.to_owned(), link);
    }

    /// Makes every operation whose text contains `what` fail until
    /// [`FakeKernel::heal`]; `"observe"` makes reading the kernel fail.
    pub fn fail_on(&self, what: &str) {
        lock(&self.failing).push(what.to_owned());
    }

    pub fn heal(&self) {
        lock(&self.failing).clear();
    }
}

impl Kernel for FakeKernel {
    async fn observe(&self) -> Result<Observed, Error> {
        self.journal.push(Event::Observe);
        if lock(&self.failing).iter().any(|f| f == "observe") {
            return Err(Error::Command {
                command: "observe".to_owned(),
                message: "refused by the fake kernel".to_owned(),
            });
        }
        Ok(self.observed())
    }

    async fn apply(&self, op: &Op) -> Result<(), Error> {
        self.journal.push(Event::Op(op.clone()));
        let text = op.to_string();
        if lock(&self.failing)
            .iter()
            .any(|f| text.contains(f.as_str()))
        {
            return Err(Error::Command {
                command: text,
                message: "refused by the fake kernel".to_owned(),
            });
        }
        simulate(&mut lock(&self.observed), op).map_err(|message| Error::Command {
            command: text,
            message,
        })
    }

    async fn mtu_of(&self, _address: std::net::IpAddr) -> Result<Option<u32>, Error> {
        Ok(self.mtu)
    }

    async fn has_link(&self, name: &str) -> Result<bool, Error> {
        Ok(lock(&self.observed).links.contains_key(name))
    }
}

/// A firewall that records what it is asked and can be made to fail.
#[derive(Debug, Clone, Default)]
pub struct FakeFirewall {
    journal: Journal,
    failing: Arc<Mutex<bool>>,
    /// Something else flushed the rules (until they are written again).
    flushed: Arc<Mutex<bool>>,
}

impl FakeFirewall {
    pub fn new(journal: Journal) -> Self {
        Self {
            journal,
            failing: Arc::default(),
            flushed: Arc::default(),
        }
    }

    /// As if someone ran `iptables -F` on rustnet's chains.
    pub fn flush(&self) {
        *lock(&self.flushed) = true;
    }

    /// Makes the next rewrites fail (`true`) or succeed.
    pub fn set_failing(&self, failing: bool) {
        *lock(&self.failing) = failing;
    }

    fn outcome(&self, command: &str) -> Result<(), Error> {
        if *lock(&self.failing) {
            return Err(Error::Command {
                command: command.to_owned(),
                message: "refused by the fake firewall".to_owned(),
            });
        }
        Ok(())
    }
}

impl Firewall for FakeFirewall {
    async fn apply(&self, networks: &[Network], _inherited: &[String]) -> Result<(), Error> {
        self.journal.push(Event::Firewall(networks.to_vec()));
        self.outcome("iptables-restore")?;
        *lock(&self.flushed) = false;
        Ok(())
    }

    async fn apply_vxlan_ingress(&self, ingress: Option<&VxlanIngress>) -> Result<(), Error> {
        self.journal.push(Event::Ingress(ingress.cloned()));
        self.outcome("iptables-restore (vxlan)")
    }

    async fn apply_resolver(&self, resolver: Option<&ResolverAddress>) -> Result<(), Error> {
        self.journal.push(Event::Resolver(resolver.copied()));
        self.outcome("iptables-restore (resolver)")
    }

    fn route_localnet(&self, bridge: &str) -> Result<(), Error> {
        self.journal.push(Event::RouteLocalnet(bridge.to_owned()));
        Ok(())
    }

    async fn intact(
        &self,
        _: &[Network],
        _: &[String],
        _: Option<&VxlanIngress>,
        _: Option<&ResolverAddress>,
    ) -> bool {
        !*lock(&self.flushed)
    }
}

/// Applies `op` to a simulated link table as the kernel would; what the
/// kernel would refuse is an error.
pub fn simulate(observed: &mut Observed, op: &Op) -> Result<(), String> {
    let link = |kind, mtu| Link {
        kind,
        mtu,
        up: false,
        master: None,
        addresses: vec![],
        owned: true,
        inherited: false,
        mac: None,
    };
    let mut create = |name: &String, kind, mtu| match observed.links.contains_key(name) {
        true => Err(format!("{name} exists")),
        false => {
            observed.links.insert(name.clone(), link(kind, mtu));
            Ok(())
        }
    };
    match op {
        Op::CreateBridge { name, mtu } => create(name, LinkKind::Bridge, *mtu),
        Op::CreateVeth {
            host, peer, mtu, ..
        } => create(host, LinkKind::Veth, *mtu).and_then(|()| create(peer, LinkKind::Veth, *mtu)),
        Op::CreateVxlan { name, mtu, .. } => create(name, LinkKind::Vxlan, *mtu),
        Op::SetMtu { link, mtu } => existing(observed, link).map(|l| l.mtu = *mtu),
        Op::SetMaster { link, master } => {
            if !observed.links.contains_key(master) {
                return Err(format!("no master {master}"));
            }
            existing(observed, link).map(|l| l.master = Some(master.clone()))
        }
        Op::SetMac { link, mac } => existing(observed, link).map(|l| l.mac = Some(*mac)),
        Op::AddAddress { link, address } => {
            existing(observed, link).map(|l| l.addresses.push(*address))
        }
        Op::SetUp { link } => existing(observed, link).map(|l| l.up = true),
        Op::DeleteLink { name } => {
            observed.links.remove(name);
            // The device's entries go with it.
            observed.fdb.retain(|(device, _), _| device != name);
            observed.floods.retain(|(device, _)| device != name);
            observed.neighbours.retain(|(device, _), _| device != name);
            observed.routes.retain(|(device, _)| device != name);
            observed.guarded.remove(name);
            Ok(())
        }
        Op::CreateLan {
            name,
            kind,
            parent,
            mac,
            mtu,
        } => {
            let lower = existing(observed, parent)?.mtu;
            if *mtu > lower {
                return Err(format!("{name}: mtu {mtu} above {parent}'s {lower}"));
            }
            let mut link = link(LinkKind::from(*kind), *mtu);
            link.mac = *mac;
            match observed.links.contains_key(name) {
                true => Err(format!("{name} exists")),
                false => {
                    observed.links.insert(name.clone(), link);
                    Ok(())
                }
            }
        }
        Op::CreateVlan { name, base, .. } => match observed.links.get(base) {
            None => Err(format!("no link {base}")),
            Some(_) if observed.links.contains_key(name) => Err(format!("{name} exists")),
            Some(parent) => {
                let vlan = link(LinkKind::Vlan, parent.mtu);
                observed.links.insert(name.clone(), vlan);
                Ok(())
            }
        },
        Op::GuardVxlan { device, .. } => {
            existing(observed, device)?;
            observed.guarded.insert(device.clone());
            Ok(())
        }
        Op::AddRoute { device, ip } => {
            existing(observed, device)?;
            observed.routes.insert((device.clone(), *ip));
            Ok(())
        }
        Op::DelRoute { device, ip } => {
            observed.routes.remove(&(device.clone(), *ip));
            Ok(())
        }
        Op::AddFdb { device, mac, vtep } => {
            observed.fdb.insert((device.clone(), *mac), *vtep);
            Ok(())
        }
        Op::DelFdb { device, mac, .. } => {
            observed.fdb.remove(&(device.clone(), *mac));
            Ok(())
        }
        Op::AddFlood { device, vtep } => {
            existing(observed, device)?;
            observed.floods.insert((device.clone(), *vtep));
            Ok(())
        }
        Op::DelFlood { device, vtep } => {
            observed.floods.remove(&(device.clone(), *vtep));
            Ok(())
        }
        Op::AddNeighbour { device, ip, mac } => {
            observed.neighbours.insert((device.clone(), *ip), *mac);
            Ok(())
        }
        Op::DelNeighbour { device, ip, .. } => {
            observed.neighbours.remove(&(device.clone(), *ip));
            Ok(())
        }
    }
}

fn existing<'a>(observed: &'a mut Observed, name: &str) -> Result<&'a mut Link, String> {
    observed
        .links
        .get_mut(name)
        .ok_or_else(|| format!("no link {name}"))
}
