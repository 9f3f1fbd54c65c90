//! The seam between the services and the kernel: the services say what
//! this host should hold, the data path's reconcile loop makes it so.

use std::net::IpAddr;

use futures::future::BoxFuture;
use rustnet_overlay::{Firewall, Kernel, Reconciler, Report, Want};

use crate::error::ApiError;

/// This host's data path, as the services use it.
pub(crate) trait DataPath: Send + Sync + std::fmt::Debug {
    /// The MTU of the interface holding `address` (the underlay), now.
    fn mtu_of(&self, address: IpAddr) -> BoxFuture<'_, Option<u32>>;

    /// The MTU of interface `name`, now; `None` when it does not exist.
    fn link_mtu<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Option<u32>>;

    /// Whether interface `name` exists, now (one lookup, not a dump).
    fn has_link<'a>(&'a self, name: &'a str) -> BoxFuture<'a, bool>;

    /// Waits for the pass before it, then reads what is wanted (`want`
    /// runs only then, so it sees every write before it) and applies it.
    fn reconcile<'a>(
        &'a self,
        want: BoxFuture<'a, Result<Want, ApiError>>,
    ) -> BoxFuture<'a, Result<Report, ApiError>>;
}

impl<K, F> DataPath for Reconciler<K, F>
where
    K: Kernel + std::fmt::Debug + 'static,
    F: Firewall + std::fmt::Debug + 'static,
{
    fn mtu_of(&self, address: IpAddr) -> BoxFuture<'_, Option<u32>> {
        Box::pin(async move {
            match self.kernel().mtu_of(address).await {
                Ok(mtu) => mtu,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the underlay MTU");
                    None
                }
            }
        })
    }

    fn link_mtu<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Option<u32>> {
        Box::pin(async move {
            match self.kernel().observe().await {
                Ok(observed) => observed.links.get(name).map(|l| l.mtu),
                Err(e) => {
                    tracing::warn!(error = %e, link = name, "cannot read the links");
                    None
                }
            }
        })
    }

    fn has_link<'a>(&'a self, name: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            match self.kernel().has_link(name).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(error = %e, link = name, "cannot look the link up");
                    false
                }
            }
        })
    }

    fn reconcile<'a>(
        &'a self,
        want: BoxFuture<'a, Result<Want, ApiError>>,
    ) -> BoxFuture<'a, Result<Report, ApiError>> {
        Box::pin(async move {
            let pass = self.begin().await;
            let want = want.await?;
            Ok(pass.apply(want).await?)
        })
    }
}

/// A data path that only records what it was asked for: for tests of the
/// protocol layer that must not touch the host.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct RecordingPath {
    pub applied: std::sync::Mutex<Vec<Want>>,
}

#[cfg(test)]
impl DataPath for RecordingPath {
    fn mtu_of(&self, _address: IpAddr) -> BoxFuture<'_, Option<u32>> {
        Box::pin(async { None })
    }

    fn link_mtu<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, Option<u32>> {
        Box::pin(async { None })
    }

    fn has_link<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async { false })
    }

    fn reconcile<'a>(
        &'a self,
        want: BoxFuture<'a, Result<Want, ApiError>>,
    ) -> BoxFuture<'a, Result<Report, ApiError>> {
        Box::pin(async move {
            let want = want.await?;
            if let Ok(mut applied) = self.applied.lock() {
                applied.push(want);
            }
            Ok(Report::default())
        })
    }
}
