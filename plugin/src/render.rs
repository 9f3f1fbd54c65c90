//! The human-readable form of `rustnet status`.

use rustnet_ipam::HostId;
use rustnet_ipam::store::UpgradeView;

use crate::dns::setting::NamesView;
use crate::recent::Seen;
use crate::status::{EndpointView, Rotation, Status};

/// The human-readable form of the status reply.
pub(crate) fn render(status: &Status) -> String {
    let view = &status.view;
    let mut out = format!("host {} ({})\n", or_unknown(&view.name), view.host);
    let cluster = &status.cluster;
    out.push_str(&format!(
        "cluster {} term {}, this node: {}, leader: {}\n",
        cluster.cluster.as_deref().unwrap_or("-"),
        cluster.term,
        or_unknown(&cluster.state),
        cluster
            .leader
            .map_or_else(|| "null".to_owned(), |l| l.to_string())
    ));
    let short = |v: &Option<String>| {
        v.as_deref()
            .map_or("none".to_owned(), |f| f[..f.len().min(16)].to_owned())
    };
    out.push_str(&format!(
        "mutual TLS: cluster CA {}, this member's certificate {}\n",
        short(&status.tls.ca),
        short(&status.tls.certificate)
    ));
    out.push_str(&rotation_text(status.tls.ca_rotation.as_ref()));
    out.push_str(&members_text(status));
    out.push_str(&names_text(status.names.as_ref()));
    out.push_str(&encryption_text(status.encryption.as_ref()));
    out.push_str(&errors_text(&status.errors, unix_now()));
    for a in &view.allocations {
        out.push_str(&format!(
            "  {} address(es) held by {}\n",
            a.addresses,
            or_unknown(&a.name)
        ));
    }
    out.push_str(&format!(
        "{} network(s) on this host\n",
        view.networks.len()
    ));
    for network in &view.networks {
        out.push_str(&format!(
            "  {} bridge {} subnet {}{}\n",
            short_id(&network.id),
            or_unknown(&network.bridge),
            network
                .subnet
                .map_or_else(|| "-".to_owned(), |s| s.to_string()),
            if network.internal { " internal" } else { "" }
        ));
        for endpoint in &network.endpoints {
            out.push_str(&format!(
                "    {} {} {} {}{}{}\n",
                short_id(&endpoint.id),
                endpoint
                    .container
                    .as_deref()
                    .unwrap_or("(container not known yet)"),
                endpoint
                    .address
                    .map_or_else(|| "-".to_owned(), |a| a.to_string()),
                endpoint.mac,
                if endpoint.joined { " joined" } else { "" },
                ports_text(endpoint)
            ));
        }
    }
    out.push_str(&format!("{} pool(s)\n", view.pools.len()));
    for pool in &view.pools {
        let range = pool
            .range
            .map(|r| format!(" range {r}"))
            .unwrap_or_default();
        out.push_str(&format!("  {}{range}\n", or_unknown(&pool.pool)));
        for held in &pool.addresses {
            out.push_str(&format!(
                "    {:<40} {}\n",
                held.address.to_string(),
                held.holder
            ));
        }
    }
    out
}

fn or_unknown(text: &str) -> &str {
    if text.is_empty() { "?" } else { text }
}

/// A Docker id as `docker ps` shortens it.
fn short_id(id: &str) -> &str {
    or_unknown(id.get(..12).unwrap_or(id))
}

/// Encryption: which WireGuard, this host's key, port and tunnel address,
/// and its peers.
fn encryption_text(encryption: Option<&crate::encryption::EncryptionStatus>) -> String {
    let Some(e) = encryption else {
        return String::new();
    };
    let address = e
        .address
        .map_or_else(String::new, |a| format!(", tunnel address {a}"));
    let why = e
        .kernel_unavailable
        .as_ref()
        .map_or_else(String::new, |why| format!(" ({why})"));
    format!(
        "encryption: WireGuard {}{why}, public key {}, port {}{address}, peers {} ({} with a recent handshake)\n",
        e.tunnel, e.public_key, e.port, e.peers, e.peers_up
    )
}

/// Names across hosts: whether this host's engine reaches rustnet's
/// resolver, and if not, the daemon.json line it needs and who misses it.
fn names_text(names: Option<&NamesView>) -> String {
    let Some(names) = names else {
        return "names across hosts: off (RUSTNET_NAMES=false)\n".to_owned();
    };
    let engine = names.engine.as_deref().unwrap_or("(not known yet)");
    let setting = &names.setting;
    match names.needs_setting {
        None => format!("names across hosts: Docker {engine}\n"),
        Some(false) => format!(
            "names across hosts: ok (Docker {engine} asks the host's resolvers from inside each container)\n"
        ),
        Some(true) if names.checked == 0 => format!(
            "names across hosts: Docker {engine} needs {setting} in /etc/docker/daemon.json (no overlay container here to check it by yet)\n"
        ),
        Some(true) if names.missing_for.is_empty() => format!(
            "names across hosts: Docker {engine} needs {setting} in /etc/docker/daemon.json; every overlay container here has it\n"
        ),
        Some(true) => format!(
            "names across hosts: MISSING SETTING: Docker {engine} asks the host's resolvers from its own namespace; add {setting} to /etc/docker/daemon.json and restart dockerd (containers started since get it). Without it these containers resolve only this host's names of their overlays: {}\n",
            names.missing_for.join(", ")
        ),
    }
}

/// One line per member: id, address, role, and on the leader how far
/// behind it is.
fn members_text(status: &Status) -> String {
    let mut out = String::new();
    for member in &status.cluster.members {
        let role = if member.voter { "voter" } else { "learner" };
        let behind = status
            .replication
            .get(&member.id.to_string())
            .map(|n| format!(", {n} entries behind"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  member {} {} {role}{behind}{}\n",
            member.id,
            or_unknown(&member.addr),
            version_text(&status.upgrade, member.id)
        ));
    }
    if let Some(waiting) = &status.upgrade.waiting {
        out.push_str(&format!("  {waiting}\n"));
    }
    out
}

/// `, release 0.3.0 (format 3)` for a member that said, `, version
/// unknown (why)` for one that did not; nothing without an answer.
fn version_text(upgrade: &UpgradeView, id: HostId) -> String {
    let Some(answer) = upgrade.members.iter().find(|a| a.id == id) else {
        return String::new();
    };
    match (&answer.version, &answer.error) {
        (Some(v), _) => format!(", release {} (format {})", v.release, v.format),
        (None, Some(error)) => format!(", version unknown ({error})"),
        (None, None) => String::new(),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The daemon's last errors, newest last, with how long ago each was last
/// seen (`now` in Unix seconds) and how often.
fn errors_text(errors: &[Seen], now: u64) -> String {
    if errors.is_empty() {
        return "last errors: none\n".to_owned();
    }
    let mut out = "last errors:\n".to_owned();
    for error in errors {
        let ago = now.saturating_sub(error.last);
        let times = match error.count {
            0 | 1 => String::new(),
            n => format!(" ({n} times)"),
        };
        out.push_str(&format!(
            "  {ago} s ago{times} {}: {}\n",
            error.source, error.message
        ));
    }
    out
}

/// An endpoint's published ports, ` ports 8080->80/tcp,...`, or nothing
/// (Docker does not show a remote driver's ports in `docker ps`).
fn ports_text(endpoint: &EndpointView) -> String {
    let ports: Vec<String> = endpoint
        .ports
        .iter()
        .map(|p| {
            let ip = p.host_ip.map(|ip| format!("{ip}:")).unwrap_or_default();
            let proto = format!("{:?}", p.proto).to_lowercase();
            format!("{ip}{}->{}/{proto}", p.host_port, p.container_port)
        })
        .collect();
    if ports.is_empty() {
        String::new()
    } else {
        format!(" ports {}", ports.join(","))
    }
}

/// A CA rotation under way, if any: who has yet to renew.
fn rotation_text(rotation: Option<&Rotation>) -> String {
    let Some(rotation) = rotation else {
        return String::new();
    };
    let waiting: Vec<String> = rotation
        .waiting_for
        .iter()
        .map(ToString::to_string)
        .collect();
    let from = &rotation.from;
    format!(
        "CA rotation from {}: {}\n",
        &from[..from.len().min(16)],
        if waiting.is_empty() {
            "every member renewed; the CA before is retired in a few seconds".to_owned()
        } else {
            format!("waiting for host(s) {} to renew", waiting.join(", "))
        }
    )
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// A status reply as the CLI reads it; parts left out default.
    fn status(reply: Value) -> Status {
        serde_json::from_value(reply).unwrap()
    }

    #[test]
    fn render_shows_each_members_version_and_what_waits_for_the_upgrade() {
        let reply = json!({
            "cluster": { "members": [
                { "id": 1, "addr": "10.0.0.1:7950", "voter": true },
                { "id": 2, "addr": "10.0.0.2:7950", "voter": true },
                { "id": 3, "addr": "10.0.0.3:7950", "voter": true }] },
            "upgrade": { "format": 2, "cluster_format": 1,
                "members": [{ "id": 1, "release": "0.2.0", "format": 2 },
                            { "id": 2, "release": "0.1", "format": 1 },
                            { "id": 3, "error": "connection refused" }],
                "waiting": "upgrade under way: the cluster writes format 1" },
        });
        let text = render(&status(reply));
        for line in [
            "member 1 10.0.0.1:7950 voter, release 0.2.0 (format 2)\n",
            "member 2 10.0.0.2:7950 voter, release 0.1 (format 1)\n",
            "member 3 10.0.0.3:7950 voter, version unknown (connection refused)\n",
            "  upgrade under way: the cluster writes format 1\n",
        ] {
            assert!(text.contains(line), "{line:?} in {text}");
        }
    }

    #[test]
    fn render_shows_lag_names_and_published_ports() {
        let reply = json!({
            "name": "a", "host": 1,
            "cluster": { "state": "leader", "leader": 1,
                "members": [{ "id": 2, "addr": "10.0.0.2:7950", "voter": true }] },
            "replication": { "2": 3 },
            "networks": [{ "id": "net1", "bridge": "rn-net1", "subnet": "10.0.42.0/24",
                "endpoints": [{ "id": "ep1", "container": "web", "address": "10.0.42.2/24",
                    "mac": "02:00:00:00:00:01", "joined": true,
                    "ports": [{ "proto": "Tcp", "host_ip": null, "host_port": 8080, "container_port": 80 },
                              { "proto": "Udp", "host_ip": "127.0.0.1", "host_port": 53, "container_port": 53 }] }] }],
        });
        let text = render(&status(reply));
        assert!(
            text.contains("member 2 10.0.0.2:7950 voter, 3 entries behind"),
            "{text}"
        );
        assert!(
            text.contains("ep1 web 10.0.42.2/24 02:00:00:00:00:01 joined ports 8080->80/tcp,127.0.0.1:53->53/udp"),
            "{text}"
        );
    }

    #[test]
    fn render_shows_the_last_errors() {
        let reply = json!({
            "errors": [
                { "source": "reconcile", "message": "boom", "first": 90, "last": 95, "count": 3 },
                { "source": "request /NetworkDriver.Join", "message": "no such endpoint", "first": 99, "last": 99, "count": 1 },
            ],
        });
        assert_eq!(
            errors_text(&status(reply).errors, 100),
            "last errors:\n  5 s ago (3 times) reconcile: boom\n  1 s ago request /NetworkDriver.Join: no such endpoint\n"
        );
        assert_eq!(errors_text(&[], 100), "last errors: none\n");
    }

    #[test]
    fn render_says_when_the_dns_setting_is_missing_and_for_whom() {
        let names = |needs: Value, missing: Value| {
            json!({
                "resolver_address": "169.254.53.53",
                "engine": "28.5.2",
                "needs_setting": needs,
                "setting": "\"dns\": [\"169.254.53.53\"]",
                "checked": 2,
                "missing_for": missing,
            })
        };
        let text =
            |names: Value| names_text(Some(&serde_json::from_value::<NamesView>(names).unwrap()));
        let missing = text(names(json!(true), json!(["web1", "c2"])));
        assert!(
            missing.starts_with("names across hosts: MISSING SETTING: Docker 28.5.2"),
            "{missing}"
        );
        assert!(
            missing.contains("add \"dns\": [\"169.254.53.53\"] to /etc/docker/daemon.json"),
            "{missing}"
        );
        assert!(missing.ends_with("their overlays: web1, c2\n"), "{missing}");
        let ok = text(names(json!(true), json!([])));
        assert!(ok.contains("every overlay container here has it"), "{ok}");
        let mut none = names(json!(true), json!([]));
        none["checked"] = json!(0);
        let none = text(none);
        assert!(
            none.contains("no overlay container here to check it by yet"),
            "{none}"
        );
        let old = text(names(json!(false), json!([])));
        assert!(old.starts_with("names across hosts: ok"), "{old}");
        assert_eq!(
            names_text(None),
            "names across hosts: off (RUSTNET_NAMES=false)\n"
        );
    }

    #[test]
    fn render_shows_a_ca_rotation_under_way() {
        let reply = json!({
            "tls": {"ca": "bb", "ca_rotation": {"from": "aaaaaaaaaaaaaaaaaaaaaa", "waiting_for": [2, 3]}},
        });
        let text = render(&status(reply));
        assert!(
            text.contains("CA rotation from aaaaaaaaaaaaaaaa: waiting for host(s) 2, 3 to renew"),
            "{text}"
        );
        assert!(!render(&status(json!({"tls": {"ca": "bb"}}))).contains("CA rotation"));
    }

    #[test]
    fn render_shows_members_and_tls() {
        let reply = json!({
            "name": "a (10.0.0.1)", "host": 1,
            "cluster": { "cluster": "c1", "term": 2, "state": "Leader", "leader": 1,
                "members": [{ "id": 1, "addr": "10.0.0.1:7950", "voter": true }] },
            "tls": { "ca": "0123456789abcdef0123", "certificate": null },
        });
        let text = render(&status(reply));
        assert!(text.contains("member 1 10.0.0.1:7950 voter\n"), "{text}");
        assert!(
            text.contains(
                "mutual TLS: cluster CA 0123456789abcdef, this member's certificate none"
            ),
            "{text}"
        );
    }
}
