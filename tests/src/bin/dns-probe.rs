//! Times DNS lookups from inside a container for the benchmarks:
//! `dns-probe NAME COUNT [SERVER]` sends COUNT A queries for NAME to
//! Docker's embedded DNS (127.0.0.11; or to SERVER), one after the other,
//! and prints each round trip in microseconds; it fails on a query with no
//! answer.

use std::net::UdpSocket;
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).ok_or("usage: dns-probe NAME COUNT")?;
    let count: u16 = args.get(2).map_or(Ok(10), |c| c.parse())?;
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    let server = args.get(3).map_or("127.0.0.11", String::as_str);
    socket.connect((server, 53))?;
    let mut buf = [0u8; 4096];
    for id in 0..count {
        let mut query = Message::new();
        query
            .set_id(id)
            .set_recursion_desired(true)
            .add_query(Query::query(
                Name::from_str(&format!("{name}."))?,
                RecordType::A,
            ));
        let bytes = query.to_vec()?;
        let started = Instant::now();
        socket.send(&bytes)?;
        let reply = loop {
            let len = socket.recv(&mut buf)?;
            let reply = Message::from_vec(&buf[..len])?;
            if reply.id() == id {
                break reply;
            }
        };
        let elapsed = started.elapsed();
        if reply.answers().is_empty() {
            return Err(format!("no answer for {name}: {:?}", reply.response_code()).into());
        }
        println!("{}", elapsed.as_micros());
    }
    Ok(())
}
