//! The reconcile loop: one pass at a time makes this host's kernel match
//! what the tables want.
//!
//! ```text
//!   begin() ── waits for the pass before it ──► Pass
//!   Pass::apply(want)
//!     observe ─► plan(want.links, observed) ─► apply each Op (netlink)
//!     firewall rules   only when the view changed since the last success
//!     route_localnet   for networks with published ports
//!     VXLAN ingress    only when it changed since the last success (first,
//!                      before the links, while it seals encrypted overlays)
//! ```
//!
//! A network in conflict with the host (a foreign interface with a name it
//! needs) is left alone and reported in [`Report::conflicts`]; the other
//! networks are built as usual. A pass whose links fail half way stops its
//! link operations there (later
//! ones build on earlier ones), still writes the firewall, and returns the
//! first error; the next pass observes again and carries on from what the
//! kernel really holds. A firewall write that fails is retried by the next
//! pass. Callers take [`Reconciler::begin`] *before* they read the state
//! they want applied, so a pass never applies a view older than the one
//! before it.

use std::future::Future;

use tokio::sync::{Mutex, MutexGuard};

use crate::firewall::{Network, ResolverAddress, VxlanIngress};
use crate::model::Desired;
use crate::{Conflict, Error, Kernel, PlanError, plan_isolated};

/// What this host should hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Want {
    pub links: Desired,
    pub firewall: Vec<Network>,
    /// Who may send VXLAN here (`None`: no overlay on this host).
    pub ingress: Option<VxlanIngress>,
    /// Where queries to the resolver address go (`None`: names off).
    pub resolver: Option<ResolverAddress>,
}

/// The firewall side of the data path: rules and the sysctls they need.
pub trait Firewall: Send + Sync {
    /// Makes rustnet's chains hold exactly the rules of `networks`, and
    /// keep those of the `inherited` bridges (made under a lost or
    /// replaced state directory, still serving containers).
    fn apply(
        &self,
        networks: &[Network],
        inherited: &[String],
    ) -> impl Future<Output = Result<(), Error>> + Send;
    /// Admits VXLAN from `ingress`'s members only; `None` removes the rule.
    fn apply_vxlan_ingress(
        &self,
        ingress: Option<&VxlanIngress>,
    ) -> impl Future<Output = Result<(), Error>> + Send;
    /// Sends queries to the resolver address where `resolver` says;
    /// `None` removes its rules.
    fn apply_resolver(
        &self,
        resolver: Option<&ResolverAddress>,
    ) -> impl Future<Output = Result<(), Error>> + Send;
    /// Lets 127.0.0.1 reach published ports through `bridge`.
    fn route_localnet(&self, bridge: &str) -> Result<(), Error>;
    /// Whether the rules written for `networks`, `ingress` and `resolver`
    /// are all still there (something else may flush them).
    fn intact(
        &self,
        networks: &[Network],
        inherited: &[String],
        ingress: Option<&VxlanIngress>,
        resolver: Option<&ResolverAddress>,
    ) -> impl Future<Output = bool> + Send;
}

impl Firewall for crate::Iptables {
    async fn apply(&self, networks: &[Network], inherited: &[String]) -> Result<(), Error> {
        crate::Iptables::apply(self, networks, inherited).await
    }

    async fn apply_vxlan_ingress(&self, ingress: Option<&VxlanIngress>) -> Result<(), Error> {
        crate::Iptables::apply_vxlan_ingress(self, ingress).await
    }

    async fn apply_resolver(&self, resolver: Option<&ResolverAddress>) -> Result<(), Error> {
        crate::Iptables::apply_resolver(self, resolver).await
    }

    fn route_localnet(&self, bridge: &str) -> Result<(), Error> {
        crate::sysctl::route_localnet(bridge)
    }

    async fn intact(
        &self,
        networks: &[Network],
        inherited: &[String],
        ingress: Option<&VxlanIngress>,
        resolver: Option<&ResolverAddress>,
    ) -> bool {
        crate::Iptables::intact(self, networks, inherited, ingress, resolver).await
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Link, FDB and neighbour operations performed.
    pub ops: usize,
    /// Whether the firewall rules were rewritten.
    pub firewall: bool,
    /// Networks left alone on this pass because of a conflict on this
    /// host (a foreign interface with a name rustnet needs); every other
    /// network was built. The next pass tries them again.
    pub conflicts: Vec<Conflict>,
}

impl Report {
    /// Why the network of `bridge` could not be built, if it could not.
    pub fn conflict(&self, bridge: &str) -> Option<&PlanError> {
        self.conflicts
            .iter()
            .find(|c| c.bridge == bridge)
            .map(|c| &c.error)
    }
}

/// What the last successful writes left in place.
#[derive(Debug, Default)]
struct Applied {
    /// Empty at start, so the first pass rewrites everything: the
    /// networks, and the inherited bridges beside them.
    firewall: Option<(Vec<Network>, Vec<String>)>,
    ingress: Option<Option<VxlanIngress>>,
    resolver: Option<Option<ResolverAddress>>,
    /// What the kernel held of an earlier state directory when it was last
    /// read; `None` before the first read.
    inherited: Option<Inherited>,
    /// When the rules were last found intact.
    checked: Option<std::time::Instant>,
}

/// How often a pass with nothing new to write checks that the rules are
/// still in place.
const CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// This host's data path: a kernel, a firewall, one pass at a time.
#[derive(Debug)]
pub struct Reconciler<K, F> {
    kernel: K,
    firewall: F,
    applied: Mutex<Applied>,
    check_every: std::time::Duration,
}

impl<K: Kernel, F: Firewall> Reconciler<K, F> {
    pub fn new(kernel: K, firewall: F) -> Self {
        Self {
            kernel,
            firewall,
            applied: Mutex::default(),
            check_every: CHECK_EVERY,
        }
    }

    /// Checks that the rules are in place at most every `every` (2 s by
    /// default) on passes with nothing new to write.
    #[must_use]
    pub fn check_every(mut self, every: std::time::Duration) -> Self {
        self.check_every = every;
        self
    }

    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    /// Waits until no other pass runs; the pass is this caller's until it
    /// is applied or dropped.
    pub async fn begin(&self) -> Pass<'_, K, F> {
        Pass {
            reconciler: self,
            applied: self.applied.lock().await,
        }
    }

    /// Forgets what was written, so the next pass rewrites every rule
    /// (after something else flushed them).
    pub async fn invalidate(&self) {
        *self.applied.lock().await = Applied::default();
    }
}

/// One reconcile pass, holding the loop.
#[derive(Debug)]
pub struct Pass<'a, K, F> {
    reconciler: &'a Reconciler<K, F>,
    applied: MutexGuard<'a, Applied>,
}

impl<K: Kernel, F: Firewall> Pass<'_, K, F> {
    /// Makes the kernel hold `want`.
    pub async fn apply(mut self, want: Want) -> Result<Report, Error> {
        let mut report = Report::default();
        // Encrypted overlays' VXLAN devices only once the rules that keep
        // their traffic in the tunnel are there.
        if want.ingress.as_ref().is_some_and(|i| i.seal.is_some()) {
            self.ingress(want.ingress.clone()).await?;
        }
        let links = self.links(&want.links, &mut report).await;
        let Some(inherited) = self.applied.inherited.clone() else {
            // The kernel was never read, so which bridges are inherited is
            // unknown: the firewall waits rather than drop their rules.
            return links.map(|()| report);
        };
        self.check_rules(&want, &inherited.bridges).await;
        let firewall = self
            .firewall(&want.firewall, &inherited.bridges, &mut report)
            .await;
        // VXLAN devices of an earlier state keep their ingress rule.
        let ingress = match want.ingress {
            None if inherited.vxlan => Ok(()),
            ingress => self.ingress(ingress).await,
        };
        let resolver = self.resolver(want.resolver).await;
        let mut errors = [links, firewall, ingress, resolver]
            .into_iter()
            .filter_map(Result::err);
        let first = errors.next();
        for later in errors {
            tracing::warn!(error = %later, "reconcile: a further failure in the same pass");
        }
        match first {
            Some(error) => Err(error),
            None => Ok(report),
        }
    }

    /// Plans and applies the links, noting what the host holds of an
    /// earlier state directory.
    async fn links(&mut self, desired: &Desired, report: &mut Report) -> Result<(), Error> {
        let kernel = &self.reconciler.kernel;
        let observed = kernel.observe().await?;
        self.applied.inherited = Some(Inherited::of(&observed));
        let (ops, conflicts) = plan_isolated(desired, &observed);
        for conflict in &conflicts {
            tracing::warn!(bridge = %conflict.bridge, error = %conflict.error, "network left alone on this host; retried on the next pass");
        }
        report.conflicts = conflicts;
        for op in ops {
            kernel.apply(&op).await?;
            report.ops += 1;
        }
        Ok(())
    }

    /// Something else may have flushed the rules the last passes wrote:
    /// if so, this pass writes them again.
    async fn check_rules(&mut self, want: &Want, inherited: &[String]) {
        let unchanged = self
            .applied
            .firewall
            .as_ref()
            .is_some_and(|(n, i)| n[..] == want.firewall[..] && i[..] == inherited[..])
            && self.applied.ingress.as_ref() == Some(&want.ingress)
            && self.applied.resolver.as_ref() == Some(&want.resolver);
        let every = self.reconciler.check_every;
        let due = self.applied.checked.is_none_or(|at| at.elapsed() >= every);
        if !unchanged || !due {
            return;
        }
        let firewall = &self.reconciler.firewall;
        if firewall
            .intact(
                &want.firewall,
                inherited,
                want.ingress.as_ref(),
                want.resolver.as_ref(),
            )
            .await
        {
            self.applied.checked = Some(std::time::Instant::now());
        } else {
            tracing::warn!(
                "rustnet's firewall rules were changed by something else; writing them again"
            );
            self.applied.firewall = None;
            self.applied.ingress = None;
            self.applied.resolver = None;
            self.applied.checked = None;
        }
    }

    async fn firewall(
        &mut self,
        networks: &[Network],
        inherited: &[String],
        report: &mut Report,
    ) -> Result<(), Error> {
        if self
            .applied
            .firewall
            .as_ref()
            .is_some_and(|(n, i)| n[..] == networks[..] && i[..] == inherited[..])
        {
            return Ok(());
        }
        self.applied.firewall = None;
        let firewall = &self.reconciler.firewall;
        for network in networks.iter().filter(|n| !n.published.is_empty()) {
            firewall.route_localnet(&network.bridge)?;
        }
        firewall.apply(networks, inherited).await?;
        self.applied.firewall = Some((networks.to_vec(), inherited.to_vec()));
        report.firewall = true;
        Ok(())
    }

    async fn ingress(&mut self, ingress: Option<VxlanIngress>) -> Result<(), Error> {
        if self.applied.ingress.as_ref() == Some(&ingress) {
            return Ok(());
        }
        self.applied.ingress = None;
        self.reconciler
            .firewall
            .apply_vxlan_ingress(ingress.as_ref())
            .await?;
        self.applied.ingress = Some(ingress);
        Ok(())
    }

    async fn resolver(&mut self, resolver: Option<ResolverAddress>) -> Result<(), Error> {
        if self.applied.resolver.as_ref() == Some(&resolver) {
            return Ok(());
        }
        self.applied.resolver = None;
        self.reconciler
            .firewall
            .apply_resolver(resolver.as_ref())
            .await?;
        self.applied.resolver = Some(resolver);
        Ok(())
    }
}

/// What the host holds of an earlier state directory (see
/// [`crate::Link::inherited`]).
#[derive(Debug, Clone, Default)]
struct Inherited {
    bridges: Vec<String>,
    vxlan: bool,
}

impl Inherited {
    fn of(observed: &crate::Observed) -> Self {
        let of_kind = |kind| {
            observed
                .links
                .iter()
                .filter(move |(_, l)| l.inherited && l.kind == kind)
                .map(|(name, _)| name.clone())
        };
        Self {
            bridges: of_kind(crate::LinkKind::Bridge).collect(),
            vxlan: of_kind(crate::LinkKind::Vxlan).next().is_some(),
        }
    }
}

#[cfg(test)]
mod tests;
