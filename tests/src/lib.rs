//! Support for rustnet's end-to-end tests: simulated Docker hosts, each a
//! network namespace plus a private mount namespace with its own dockerd
//! and its own rustnet, as a user would run them.
//!
//! ```text
//!   root netns ── bridge rnul-<pid> (10.99.0.254/24, the underlay)
//!                    │ veth
//!   netns rn-<pid>-<k>: 10.99.0.<k>, dockerd, rustnet, containers
//! ```
//!
//! Everything a test starts is torn down by `Drop`, also when it fails.

mod bare;
pub mod cluster;
mod engine;
mod host;
pub mod plot;
pub mod report;
mod run;
pub mod scale;
mod upstream;
pub mod vm;

pub use bare::{BareHost, rss_kib};
pub use engine::Engine;
pub use host::{
    Capture, HostSpec, IMAGE, Joining, RESOLVER_ADDR, SimHost, UNDERLAY_GATEWAY, contains_bytes,
};
pub use run::{
    CLOSED_WITHOUT_REPLY, Cases, docker_ok, iperf3_installed, plugin_call, previous_release,
    require_root, run, run_ok, rustnet_bin, wait_until, within,
};
pub use upstream::{UPSTREAM_ADDR, UPSTREAM_NAME};
