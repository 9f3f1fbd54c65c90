//! The simulated hosts' upstream resolver: what their /etc/resolv.conf
//! names (the underlay gateway), answering one name of its own, so tests
//! can tell that names rustnet does not know still resolve as before.

use std::net::{Ipv4Addr, UdpSocket};
use std::str::FromStr;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// The name the upstream knows.
pub const UPSTREAM_NAME: &str = "upstream.test";
/// Its address.
pub const UPSTREAM_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);

/// Serves `address`:53/udp from a thread, for the life of the process.
pub(crate) fn serve(address: Ipv4Addr) {
    let socket = UdpSocket::bind((address, 53))
        .unwrap_or_else(|e| panic!("bind the test upstream resolver on {address}:53: {e}"));
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let Ok((len, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            if let Some(reply) = answer(&buf[..len]) {
                let _ = socket.send_to(&reply, from);
            }
        }
    });
}

/// upstream.test's A record; an empty answer for its other types; an
/// authoritative NXDOMAIN for every other name.
fn answer(query: &[u8]) -> Option<Vec<u8>> {
    let query = Message::from_vec(query).ok()?;
    let asked = query.queries().first()?.clone();
    let known = Name::from_str(&format!("{UPSTREAM_NAME}.")).ok()?;
    let mut reply = Message::new();
    reply
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(true)
        .add_query(asked.clone());
    if asked.name() == &known {
        if asked.query_type() == RecordType::A {
            reply.add_answer(Record::from_rdata(
                asked.name().clone(),
                60,
                RData::A(A(UPSTREAM_ADDR)),
            ));
        }
    } else {
        reply.set_response_code(ResponseCode::NXDomain);
    }
    reply.to_vec().ok()
}
