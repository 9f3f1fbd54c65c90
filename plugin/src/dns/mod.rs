//! rustnet's resolver for overlay containers: names across hosts.
//!
//! Docker's embedded DNS answers the names it knows (same-host containers)
//! and forwards the rest to the container's upstream resolvers. It asks
//! from inside the container the servers given with `--dns` or
//! daemon.json's `dns` (every engine), and those of the host's resolv.conf
//! up to Docker 27 (from 28 on it asks those from its own namespace, where
//! no overlay sees them). On an overlay, a query asked from inside the
//! container leaves through the overlay's gateway, where rustnet's
//! firewall sends it here instead:
//!
//! ```text
//!   container ─► 127.0.0.11 (Docker) ─► upstream:53 ─DNAT─► gateway:port (here)
//!   container ─► 127.0.0.11 (Docker) ─► 169.254.53.53:53 ─REDIRECT─► port (here)
//!        names of the container's overlays: answered from the tables
//!        anything else: forwarded to that upstream (for the resolver
//!        address: the host's resolvers), its answer unchanged
//! ```
//!
//! The resolver address ([`RESOLVER_ADDR`]) is the one daemon.json entry
//! engines from 28 on need. Queries to it come from any container of the
//! host (daemon.json applies to all): those of containers on rustnet's
//! overlays are answered as above, everyone else's forwarded to the host's
//! resolvers. Queries to an upstream are served for containers of this
//! host's overlays only; anyone else's is dropped.
//!
//! Every redirection holds only while this process does (see
//! `rustnet_overlay::firewall`, liveness tokens): while rustnet is down,
//! queries go where they were going (the resolver address's to the host's
//! own upstream), so every name outside rustnet still resolves.

mod directory;
pub(crate) mod resolv;
pub(crate) mod setting;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Mutex, watch};

use rustnet_overlay::firewall::{Resolver6, ResolverAddress};

use crate::host_view::{DnsPorts, Taken};
pub(crate) use crate::host_view::{RESOLVER_ADDR, RESOLVER_ADDR6};
use crate::store::StoreState;
use directory::{Answer, Question, resolve_for};

/// The TTL of rustnet's answers, as Docker's embedded DNS gives its own.
const TTL: u32 = 600;
/// How long an upstream has to answer a forwarded query.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);
/// How long each of the host's resolvers has, in turn, for a query to the
/// resolver address.
const HOST_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest DNS message (over TCP, or UDP with EDNS).
const MAX_MESSAGE: usize = 65_535;

/// What to do with one query.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Reply(Vec<u8>),
    Forward,
    Drop,
}

/// Where a listener's forwarded queries go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upstream {
    /// The upstream they were going to; only containers of this host's
    /// overlays are served.
    Fixed(Ipv4Addr),
    /// The host's own resolvers, in turn (queries to the resolver
    /// address); every asker is served.
    Host,
}

/// A liveness token: a transparent UDP socket and TCP listener bound to
/// an address's port 53, held for the life of the process.
#[derive(Debug)]
struct Token {
    _udp: std::net::UdpSocket,
    _tcp: std::net::TcpListener,
}

/// The resolver: one UDP socket and one TCP listener per upstream, and
/// one for the resolver address.
#[derive(Debug)]
pub(crate) struct Resolver {
    store: watch::Receiver<StoreState>,
    ports: Mutex<BTreeMap<Ipv4Addr, Taken>>,
    /// The resolver address's port, once it listens.
    own: Mutex<Option<Taken>>,
    /// The IPv6 resolver address's port, once it listens.
    own6: Mutex<Option<Taken>>,
    tokens: std::sync::Mutex<Vec<Token>>,
    /// Overlay containers asking from a second interface on docker_gwbridge.
    legacy: std::sync::Mutex<Legacy>,
}

/// Overlay containers that an earlier release started with a second
/// interface on docker_gwbridge (their default route, so their queries
/// come from there), as this host's Docker shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Legacy {
    /// By address on docker_gwbridge: the container's id.
    pub(crate) owners: BTreeMap<Ipv4Addr, String>,
    /// By rustnet network id: the docker_gwbridge addresses of its
    /// containers.
    pub(crate) by_network: BTreeMap<String, Vec<Ipv4Addr>>,
}

impl Resolver {
    pub(crate) fn new(store: watch::Receiver<StoreState>) -> Arc<Self> {
        Arc::new(Self {
            store,
            ports: Mutex::default(),
            own: Mutex::default(),
            own6: Mutex::default(),
            tokens: std::sync::Mutex::default(),
            legacy: std::sync::Mutex::default(),
        })
    }

    /// Notes the overlay containers with a legacy second interface; whether
    /// that changed what the resolver knows.
    pub(crate) fn set_legacy(&self, legacy: Legacy) -> bool {
        let mut known = crate::lock(&self.legacy);
        let changed = *known != legacy;
        *known = legacy;
        changed
    }

    /// By network id, the legacy addresses whose queries come here.
    pub(crate) fn legacy_sources(&self) -> BTreeMap<String, Vec<Ipv4Addr>> {
        crate::lock(&self.legacy).by_network.clone()
    }

    /// Takes the queries to each of `upstreams` (listening once per
    /// upstream, for good); the ports of those upstreams. An upstream whose
    /// sockets cannot be opened is left out (its queries go where they
    /// were going).
    pub(crate) async fn ensure(self: &Arc<Self>, upstreams: &[Ipv4Addr]) -> DnsPorts {
        let mut ports = self.ports.lock().await;
        for upstream in upstreams {
            if ports.contains_key(upstream) {
                continue;
            }
            match self.listen(Upstream::Fixed(*upstream), false).await {
                Ok(port) => {
                    let guarded = self.hold_token(*upstream);
                    tracing::info!(%upstream, port, guarded, "taking overlay DNS queries to this upstream");
                    ports.insert(*upstream, Taken { port, guarded });
                }
                Err(e) => {
                    tracing::warn!(%upstream, error = %e, "cannot take this upstream's DNS queries")
                }
            }
        }
        upstreams
            .iter()
            .filter_map(|u| Some((*u, *ports.get(u)?)))
            .collect()
    }

    /// Where queries to the resolver address go now: to this resolver
    /// (listening from the first call on, for good) while the process
    /// lives, and to the host's own resolvers, `servers`; with `ipv6` (a
    /// network here has IPv6), the IPv6 resolver address's too.
    pub(crate) async fn resolver_address(
        self: &Arc<Self>,
        servers: &resolv::Servers,
        ipv6: bool,
    ) -> ResolverAddress {
        let port = self.serve_address(&self.own, RESOLVER_ADDR.into()).await;
        let v6 = if ipv6 {
            let port = self.serve_address(&self.own6, RESOLVER_ADDR6.into()).await;
            Some(Resolver6 {
                addr: RESOLVER_ADDR6,
                port,
            })
        } else {
            None
        };
        ResolverAddress {
            addr: RESOLVER_ADDR,
            port,
            upstream: servers.routed().first().copied(),
            local_upstream: servers.local().first().copied(),
            v6,
        }
    }

    /// The port this resolver serves resolver address `addr` on (listening
    /// from the first call on, for good), while it holds the address's
    /// liveness token.
    async fn serve_address(
        self: &Arc<Self>,
        own: &Mutex<Option<Taken>>,
        addr: IpAddr,
    ) -> Option<u16> {
        let mut own = own.lock().await;
        if own.is_none() {
            match self.listen(Upstream::Host, addr.is_ipv6()).await {
                Ok(port) => {
                    let guarded = self.hold_token(addr);
                    tracing::info!(address = %addr, port, guarded, "serving the resolver address");
                    *own = Some(Taken { port, guarded });
                }
                Err(e) => {
                    tracing::warn!(address = %addr, error = %e, "cannot serve the resolver address");
                }
            }
        }
        own.filter(|t| t.guarded).map(|t| t.port)
    }

    /// Takes `addr`'s liveness token; whether it could. An address of
    /// this host's own is never taken (its port 53 belongs to whatever
    /// resolver runs there, now or later).
    fn hold_token(&self, addr: impl Into<IpAddr>) -> bool {
        let addr = addr.into();
        if std::net::UdpSocket::bind((addr, 0)).is_ok() {
            return false;
        }
        match token(addr) {
            Ok(token) => {
                crate::lock(&self.tokens).push(token);
                true
            }
            Err(e) => {
                tracing::warn!(%addr, error = %e, "no liveness token: its queries go to rustnet even while it is down");
                false
            }
        }
    }

    /// A UDP socket and a TCP listener on one free port (IPv6 ones for
    /// `v6`), served for good.
    async fn listen(self: &Arc<Self>, upstream: Upstream, v6: bool) -> std::io::Result<u16> {
        let any = if v6 {
            IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::from(Ipv4Addr::UNSPECIFIED)
        };
        let mut last = None;
        for _ in 0..8 {
            let udp = UdpSocket::bind((any, 0)).await?;
            let port = udp.local_addr()?.port();
            match TcpListener::bind((any, port)).await {
                Ok(tcp) => {
                    tokio::spawn(self.clone().serve_udp(Arc::new(udp), upstream));
                    tokio::spawn(self.clone().serve_tcp(tcp, upstream));
                    return Ok(port);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no free port")))
    }

    async fn serve_udp(self: Arc<Self>, socket: Arc<UdpSocket>, upstream: Upstream) {
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            let (len, from) = match socket.recv_from(&mut buf).await {
                Ok(received) => received,
                Err(e) => {
                    tracing::debug!(error = %e, "dns: receive");
                    continue;
                }
            };
            let query = buf[..len].to_vec();
            let (resolver, socket) = (self.clone(), socket.clone());
            tokio::spawn(async move {
                let reply = match resolver.decide(from.ip().to_canonical(), &query, upstream) {
                    Decision::Drop => return,
                    Decision::Reply(reply) => reply,
                    Decision::Forward => match forward_udp(upstream, &query).await {
                        Ok(reply) => reply,
                        Err(e) => {
                            tracing::debug!(?upstream, error = %e, "dns: forward");
                            return;
                        }
                    },
                };
                if let Err(e) = socket.send_to(&reply, from).await {
                    tracing::debug!(client = %from, error = %e, "dns: reply");
                }
            });
        }
    }

    async fn serve_tcp(self: Arc<Self>, listener: TcpListener, upstream: Upstream) {
        loop {
            let (stream, from) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!(error = %e, "dns: accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let resolver = self.clone();
            tokio::spawn(async move {
                let served = tokio::time::timeout(
                    Duration::from_secs(30),
                    resolver.serve_connection(stream, from, upstream),
                );
                if let Ok(Err(e)) = served.await {
                    tracing::debug!(client = %from, error = %e, "dns over tcp");
                }
            });
        }
    }

    /// Queries of one TCP connection, one after the other.
    async fn serve_connection(
        &self,
        mut stream: TcpStream,
        from: SocketAddr,
        upstream: Upstream,
    ) -> std::io::Result<()> {
        while let Some(query) = read_framed(&mut stream).await? {
            let reply = match self.decide(from.ip().to_canonical(), &query, upstream) {
                Decision::Drop => return Ok(()),
                Decision::Reply(reply) => reply,
                Decision::Forward => forward_tcp(upstream, &query).await?,
            };
            write_framed(&mut stream, &reply).await?;
        }
        Ok(())
    }

    /// Answers from the local replica of the tables: who asks decides what
    /// they may find. Queries to the resolver address from anyone else
    /// are forwarded (before the store opens too).
    fn decide(&self, client: IpAddr, query: &[u8], upstream: Upstream) -> Decision {
        let open = upstream == Upstream::Host;
        let StoreState::Open(store) = &*self.store.borrow() else {
            return if open {
                Decision::Forward
            } else {
                Decision::Drop
            };
        };
        let host = store.id();
        let message = Message::from_vec(query).ok();
        let question = message.as_ref().map_or(Question::Other, question_of);
        let owner = match client {
            IpAddr::V4(v4) => crate::lock(&self.legacy).owners.get(&v4).cloned(),
            IpAddr::V6(_) => None,
        };
        let answer = store
            .local(|state| resolve_for(state, host, client, owner.as_deref(), &question))
            .flatten();
        match (answer, message) {
            (None, _) if open => Decision::Forward,
            (None, _) => Decision::Drop,
            (Some(Answer::Forward), _) | (Some(_), None) => Decision::Forward,
            (Some(answer), Some(message)) => match reply(&message, &answer) {
                Some(reply) => Decision::Reply(reply),
                None => Decision::Forward,
            },
        }
    }
}

/// The question of a standard query, as the directory knows questions.
fn question_of(message: &Message) -> Question {
    let [query] = message.queries() else {
        return Question::Other;
    };
    if message.message_type() != MessageType::Query || query.query_class() != DNSClass::IN {
        return Question::Other;
    }
    let name = query.name().to_ascii();
    match query.query_type() {
        RecordType::A => Question::A(name),
        RecordType::AAAA => Question::Aaaa(name),
        RecordType::PTR => reverse_v4(&name).map_or(Question::Other, Question::Ptr),
        _ => Question::Other,
    }
}

/// `4.3.2.1.in-addr.arpa.` -> 1.2.3.4.
fn reverse_v4(name: &str) -> Option<Ipv4Addr> {
    let lower = name.to_ascii_lowercase();
    let digits = lower.trim_end_matches('.').strip_suffix(".in-addr.arpa")?;
    let mut octets: Vec<u8> = digits
        .split('.')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    octets.reverse();
    let octets: [u8; 4] = octets.try_into().ok()?;
    Some(Ipv4Addr::from(octets))
}

/// The reply to `query` carrying `answer`.
fn reply(query: &Message, answer: &Answer) -> Option<Vec<u8>> {
    let asked = query.queries().first()?;
    let mut reply = Message::new();
    reply
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(true)
        .set_response_code(ResponseCode::NoError)
        .add_query(asked.clone());
    let name = asked.name().clone();
    match answer {
        Answer::Addresses(ips) => {
            for ip in ips {
                let data = match ip {
                    IpAddr::V4(v4) => RData::A(A(*v4)),
                    IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
                };
                reply.add_answer(Record::from_rdata(name.clone(), TTL, data));
            }
        }
        Answer::Name(target) => {
            let target = Name::from_str(&format!("{target}.")).ok()?;
            reply.add_answer(Record::from_rdata(name, TTL, RData::PTR(PTR(target))));
        }
        Answer::Refuse => {
            reply.set_response_code(ResponseCode::Refused);
        }
        Answer::NoData | Answer::Forward => {}
    }
    reply.to_vec().ok()
}

/// The servers a query to `upstream` is forwarded to, in turn, each with
/// its time to answer.
fn servers_for(upstream: Upstream) -> (Vec<Ipv4Addr>, Duration) {
    match upstream {
        Upstream::Fixed(ip) => (vec![ip], UPSTREAM_TIMEOUT),
        Upstream::Host => (resolv::Servers::of_host().forward(), HOST_UPSTREAM_TIMEOUT),
    }
}

/// Asks `upstream`'s servers in turn with `ask` (one server, its time to
/// answer); the first answer, or the last failure.
async fn in_turn<F, Fut>(upstream: Upstream, ask: F) -> std::io::Result<Vec<u8>>
where
    F: Fn(Ipv4Addr, Duration) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<Vec<u8>>>,
{
    let (servers, timeout) = servers_for(upstream);
    let mut last = std::io::Error::other("the host names no resolver");
    for server in servers {
        match ask(server, timeout).await {
            Ok(reply) => return Ok(reply),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn forward_udp(upstream: Upstream, query: &[u8]) -> std::io::Result<Vec<u8>> {
    in_turn(upstream, |server, timeout| ask_udp(server, query, timeout)).await
}

async fn ask_udp(server: Ipv4Addr, query: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await?;
    socket.connect((server, 53)).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    let len = tokio::time::timeout(timeout, socket.recv(&mut buf))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    buf.truncate(len);
    Ok(buf)
}

async fn forward_tcp(upstream: Upstream, query: &[u8]) -> std::io::Result<Vec<u8>> {
    in_turn(upstream, |server, timeout| ask_tcp(server, query, timeout)).await
}

async fn ask_tcp(server: Ipv4Addr, query: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
    let exchange = async {
        let mut stream = TcpStream::connect((server, 53)).await?;
        write_framed(&mut stream, query).await?;
        read_framed(&mut stream)
            .await?
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// `addr`:53's liveness token: sockets that receive nothing (the address
/// is not this host's) but that `-m socket --transparent` finds while
/// they are open.
fn token(addr: IpAddr) -> std::io::Result<Token> {
    use socket2::{Domain, Protocol, Socket, Type};
    let at = SocketAddr::from((addr, 53));
    let domain = Domain::for_address(at);
    let transparent = |socket: &Socket| match addr {
        IpAddr::V4(_) => socket.set_ip_transparent_v4(true),
        IpAddr::V6(_) => socket.set_ip_transparent_v6(true),
    };
    let udp = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    transparent(&udp)?;
    udp.bind(&at.into())?;
    let tcp = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    transparent(&tcp)?;
    tcp.set_reuse_address(true)?;
    tcp.bind(&at.into())?;
    tcp.listen(1)?;
    Ok(Token {
        _udp: udp.into(),
        _tcp: tcp.into(),
    })
}

/// One length-prefixed DNS message; `None` at a clean end of stream.
async fn read_framed(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut message).await?;
    Ok(Some(message))
}

async fn write_framed(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(message.len())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(message).await
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::Query;

    use super::*;

    fn query(name: &str, kind: RecordType) -> Message {
        let mut message = Message::new();
        message
            .set_id(4242)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_str(name).unwrap(), kind));
        message
    }

    #[test]
    fn questions_are_read_from_standard_queries() {
        assert_eq!(
            question_of(&query("web1.", RecordType::A)),
            Question::A("web1.".into())
        );
        assert_eq!(
            question_of(&query("3.80.0.10.in-addr.arpa.", RecordType::PTR)),
            Question::Ptr(Ipv4Addr::new(10, 0, 80, 3))
        );
        assert_eq!(
            question_of(&query("example.org.", RecordType::MX)),
            Question::Other
        );
        assert_eq!(reverse_v4("1.2.3.in-addr.arpa."), None);
    }

    #[test]
    fn replies_carry_the_query_id_question_and_answers() {
        let asked = query("web1.", RecordType::A);
        let ips = Answer::Addresses(vec![IpAddr::V4(Ipv4Addr::new(10, 0, 80, 3))]);
        let bytes = reply(&asked, &ips).unwrap();
        let got = Message::from_vec(&bytes).unwrap();
        assert_eq!(got.id(), 4242);
        assert_eq!(got.message_type(), MessageType::Response);
        assert_eq!(got.response_code(), ResponseCode::NoError);
        assert_eq!(got.queries(), asked.queries());
        assert_eq!(got.answers().len(), 1);
        assert_eq!(got.answers()[0].ttl(), TTL);
        assert_eq!(
            got.answers()[0].data(),
            &RData::A(A(Ipv4Addr::new(10, 0, 80, 3)))
        );
        let empty = Message::from_vec(&reply(&asked, &Answer::NoData).unwrap()).unwrap();
        assert_eq!(empty.response_code(), ResponseCode::NoError);
        assert!(empty.answers().is_empty());
    }
}
