//! One light service for the API tests and the fuzz target: a store in
//! memory (or none yet) and the data path they give, with the settings of
//! a one-host install.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::datapath::DataPath;
use crate::metrics::Metrics;
use crate::service::{Service, Settings};
use crate::store::{MemoryStore, StoreState};

/// The host id of the fixture's store.
pub(crate) const HOST: u64 = 1;

/// A service over `datapath`; with `store`, its store is open (in memory,
/// host [`HOST`]), else it stays opening (requests that need it time out
/// after 2 s). Dropping the sender closes the store.
pub(crate) fn service(
    store: bool,
    datapath: Arc<dyn DataPath>,
) -> (Arc<Service>, watch::Sender<StoreState>) {
    let (tx, rx) = watch::channel(StoreState::Opening);
    if store {
        tx.send_replace(StoreState::Open(Arc::new(MemoryStore::new(HOST))));
    }
    let settings = Settings {
        defaults: crate::config::DEFAULT_POOLS
            .split(',')
            .filter_map(|pool| pool.parse().ok())
            .collect(),
        timeout: Duration::from_secs(2),
        mtu: None,
        vtep: None,
        vxlan_port: 4789,
        parents: crate::lan::Parents::default(),
    };
    let service = Service::new(rx, settings, datapath, Metrics::default());
    (Arc::new(service), tx)
}
