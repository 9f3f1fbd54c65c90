//! The errors the IPAM state machine answers with.
//!
//! They are serialisable because they travel inside replicated responses: the
//! node that applies a command may not be the node that proposed it.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Why an IPAM command was refused. Every variant names what a user needs to
/// find the conflict: the pool, the address, the holder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum IpamError {
    #[error("a sub-pool ({sub_pool}) needs a pool (--subnet) to be given too")]
    SubPoolWithoutPool { sub_pool: IpNet },
    #[error("ip-range {range} is not inside subnet {subnet}")]
    RangeOutsideSubnet { range: IpNet, subnet: IpNet },
    #[error("subnet {subnet} is not a network address (did you mean {}?)", subnet.trunc())]
    NotNetworkAddress { subnet: IpNet },
    #[error("subnet {subnet} is too small: it has no address to hand out")]
    SubnetTooSmall { subnet: IpNet },
    #[error("subnet {requested} overlaps pool {existing}, in use by {holders}")]
    Overlap {
        requested: IpNet,
        existing: IpNet,
        holders: String,
    },
    #[error("pool {subnet} is already in use on this host")]
    AlreadyHeld { subnet: IpNet },
    #[error("pool {subnet} exists with ip-range {existing}; this request asked for {requested}")]
    RangeMismatch {
        subnet: IpNet,
        existing: String,
        requested: String,
    },
    #[error(
        "no free {family} pool left in the default pools ({pools}); pass --subnet or add pools to RUSTNET_DEFAULT_POOLS"
    )]
    DefaultPoolsExhausted { family: String, pools: String },
    #[error("no pool with id {pool_id}")]
    UnknownPool { pool_id: String },
    #[error("{host} holds no reference on pool {pool_id}")]
    PoolNotHeld { pool_id: String, host: String },
    #[error("address {address} is not in pool {subnet}")]
    AddressOutsidePool { address: IpAddr, subnet: IpNet },
    #[error("address {address} is the network or broadcast address of {subnet}")]
    ReservedAddress { address: IpAddr, subnet: IpNet },
    #[error(
        "subnet {subnet} has gateway {existing} ({holder}); this network asked for {requested}: one subnet is one network, with one gateway on every host"
    )]
    GatewayMismatch {
        subnet: IpNet,
        existing: IpAddr,
        requested: IpAddr,
        holder: String,
    },
    #[error("address {address} is already in use by {holder}")]
    AddressInUse { address: IpAddr, holder: String },
    #[error("pool {subnet} is exhausted: all {size} addresses of {range} are in use")]
    Exhausted {
        subnet: IpNet,
        range: IpNet,
        size: u128,
    },
    #[error("address {address} in pool {pool_id} is not allocated")]
    NotAllocated { address: IpAddr, pool_id: String },
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    #[error("address {address} is not allocated")]
    NotHeld { address: IpAddr },
    #[error("{by} may not {command}: it changes only what its own host holds")]
    NotAuthorized { by: String, command: String },
    #[error("{key:?} is not a WireGuard public key (base64 of 32 bytes)")]
    BadTunnelKey { key: String },
    #[error("every tunnel address is taken: at most 16382 hosts carry encrypted overlays")]
    NoTunnelSlot,
    #[error("host {host} is not a member of the cluster")]
    UnknownHost { host: crate::HostId },
    #[error("certificate {fingerprint} is already {host}'s")]
    CertInUse { fingerprint: String, host: String },
    #[error(
        "a CA rotation is under way: {pending} member(s) still hold a certificate of the CA before (rustnet status shows which; remove members that are gone for good)"
    )]
    CaRotationUnderWay { pending: usize },
    #[error("the cluster has no CA to rotate")]
    NoCa,
    #[error("{pending} enrollments are waiting for their hosts to join; try again later")]
    TooManyEnrollments { pending: usize },
    #[error("address {address} is held by {holder}, not by {host}")]
    NotHolder {
        address: IpAddr,
        holder: String,
        host: String,
    },
}
