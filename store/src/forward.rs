//! Writes a member forwards to its leader, over one long-lived gRPC stream
//! per leader (`WriteStream`): each write is one message out and one
//! answer back, tagged, so that many are in flight at once and none pays
//! for opening an HTTP/2 stream of its own. A leader without the stream
//! (an older member) gets unary `Write`s, as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use rustnet_ipam_core::{CommandResult, Proposal};
use rustnet_proto::Payload;

use super::error::{PeerError, RemoteError};
use super::network::Peers;
use super::wire::{Tagged, TaggedAnswer, call, decode, encode};

/// What waits for the leader's answers, by tag; `None` once the stream has
/// ended (nothing waits on it any more).
type Pending = Mutex<Option<HashMap<u64, oneshot::Sender<Result<CommandResult, RemoteError>>>>>;

/// The stream to one leader.
#[derive(Debug)]
struct Link {
    addr: String,
    outbound: mpsc::UnboundedSender<Payload>,
    pending: Arc<Pending>,
    next: AtomicU64,
}

impl Link {
    fn open(&self) -> bool {
        self.pending.lock().is_ok_and(|p| p.is_some()) && !self.outbound.is_closed()
    }
}

/// This member's forwarded writes: the stream to the leader it last sent
/// one to, and the leaders that have none.
#[derive(Debug, Clone, Default)]
pub(crate) struct Forwarder {
    link: Arc<Mutex<Option<Arc<Link>>>>,
    /// Held while a stream opens, so that writes arriving meanwhile use
    /// it rather than open one each.
    opening: Arc<tokio::sync::Mutex<()>>,
    /// Leaders that answered `Unimplemented`: unary writes to them.
    unary: Arc<Mutex<Vec<String>>>,
}

impl Forwarder {
    /// Has `leader` apply `proposal`, and its result; an error when the
    /// leader could not be asked or did not answer within `timeout`.
    pub(crate) async fn write(
        &self,
        peers: &Peers,
        leader: &str,
        proposal: &Proposal,
        timeout: Duration,
    ) -> Result<CommandResult, PeerError> {
        let unary = self
            .unary
            .lock()
            .map_err(|_| PeerError::Poisoned)?
            .iter()
            .any(|a| a == leader);
        if unary {
            return write_unary(peers, leader, proposal, timeout).await;
        }
        let link = match self.link_to(peers, leader, timeout).await {
            Ok(link) => link,
            Err(PeerError::Status(status)) if status.code() == tonic::Code::Unimplemented => {
                tracing::info!(%leader, "leader has no write stream: one Write at a time");
                if let Ok(mut unary) = self.unary.lock() {
                    unary.push(leader.to_owned());
                }
                return write_unary(peers, leader, proposal, timeout).await;
            }
            Err(e) => return Err(e),
        };
        let tag = link.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = link.pending.lock().map_err(|_| PeerError::Poisoned)?;
            let Some(pending) = pending.as_mut() else {
                return Err(ended());
            };
            pending.insert(tag, tx);
        }
        // Whatever ends this wait (an answer, the deadline, the caller
        // giving up), the tag stops waiting.
        let _forget = Forget {
            pending: &link.pending,
            tag,
        };
        let tagged: Tagged = (tag, proposal.clone());
        if link.outbound.unbounded_send(encode(&tagged)?).is_err() {
            self.drop_link(&link);
            return Err(ended());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer.map_err(PeerError::Remote),
            Ok(Err(_)) => {
                self.drop_link(&link);
                Err(ended())
            }
            Err(_) => Err(PeerError::Status(tonic::Status::deadline_exceeded(
                format!("no answer from the leader within {timeout:?}"),
            ))),
        }
    }

    /// Forgets the stream (after a new certificate: the next one is made
    /// with it).
    pub(crate) fn reset(&self) {
        if let Ok(mut link) = self.link.lock() {
            *link = None;
        }
    }

    fn drop_link(&self, gone: &Arc<Link>) {
        if let Ok(mut link) = self.link.lock()
            && link.as_ref().is_some_and(|l| Arc::ptr_eq(l, gone))
        {
            *link = None;
        }
    }

    /// The stream to `leader`, if one is open.
    fn open_link(&self, leader: &str) -> Result<Option<Arc<Link>>, PeerError> {
        let link = self.link.lock().map_err(|_| PeerError::Poisoned)?;
        Ok(link
            .as_ref()
            .filter(|l| l.addr == leader && l.open())
            .cloned())
    }

    /// The open stream to `leader`, opened if there is none (one stream at
    /// a time: to the leader of the moment).
    async fn link_to(
        &self,
        peers: &Peers,
        leader: &str,
        timeout: Duration,
    ) -> Result<Arc<Link>, PeerError> {
        if let Some(link) = self.open_link(leader)? {
            return Ok(link);
        }
        let _opening = self.opening.lock().await;
        if let Some(link) = self.open_link(leader)? {
            return Ok(link);
        }
        let (outbound, requests) = mpsc::unbounded();
        let mut client = peers.cluster(leader)?;
        // No deadline on the stream itself: it lives as long as this
        // leader leads; each write keeps its own.
        let call = client.write_stream(requests);
        let mut answers = match tokio::time::timeout(timeout, call).await {
            Ok(answers) => answers?.into_inner(),
            Err(_) => {
                return Err(PeerError::Status(tonic::Status::deadline_exceeded(
                    format!("no write stream from the leader within {timeout:?}"),
                )));
            }
        };
        let pending: Arc<Pending> = Arc::new(Mutex::new(Some(HashMap::new())));
        let link = Arc::new(Link {
            addr: leader.to_owned(),
            outbound,
            pending: pending.clone(),
            next: AtomicU64::new(0),
        });
        let addr = leader.to_owned();
        tokio::spawn(async move {
            let why = loop {
                match answers.message().await {
                    Ok(Some(payload)) => match decode::<TaggedAnswer>(&payload) {
                        Ok((tag, answer)) => {
                            let waiting = pending
                                .lock()
                                .ok()
                                .and_then(|mut p| p.as_mut().and_then(|p| p.remove(&tag)));
                            if let Some(waiting) = waiting {
                                let _ = waiting.send(answer);
                            }
                        }
                        Err(e) => break e.to_string(),
                    },
                    Ok(None) => break "closed by the leader".to_owned(),
                    Err(status) => break status.message().to_owned(),
                }
            };
            tracing::debug!(leader = %addr, %why, "write stream ended");
            // Every write still waiting fails now (its sender dropped),
            // and is retried by its caller.
            if let Ok(mut pending) = pending.lock() {
                *pending = None;
            }
        });
        if let Ok(mut slot) = self.link.lock() {
            *slot = Some(link.clone());
        }
        Ok(link)
    }
}

/// Stops waiting for `tag`'s answer.
struct Forget<'a> {
    pending: &'a Pending,
    tag: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if let Ok(mut pending) = self.pending.lock()
            && let Some(pending) = pending.as_mut()
        {
            pending.remove(&self.tag);
        }
    }
}

fn ended() -> PeerError {
    PeerError::Status(tonic::Status::unavailable(
        "the write stream to the leader ended",
    ))
}

/// One unary `Write`.
async fn write_unary(
    peers: &Peers,
    leader: &str,
    proposal: &Proposal,
    timeout: Duration,
) -> Result<CommandResult, PeerError> {
    let mut client = peers.cluster(leader)?;
    call(proposal, timeout, |r| client.write(r)).await
}
