//! The human-readable form of `rustnet status`.

use serde_json::Value;

/// The human-readable form of the status reply.
pub(crate) fn render(status: &Value) -> String {
    let mut out = format!(
        "host {} ({})\n",
        status["name"].as_str().unwrap_or("?"),
        status["host"]
    );
    let cluster = &status["cluster"];
    out.push_str(&format!(
        "cluster {} term {}, this node: {}, leader: {}\n",
        cluster["cluster"].as_str().unwrap_or("-"),
        cluster["term"],
        cluster["state"].as_str().unwrap_or("?"),
        cluster["leader"]
    ));
    let short = |v: &Value| {
        v.as_str()
            .map_or("none".to_owned(), |f| f[..f.len().min(16)].to_owned())
    };
    out.push_str(&format!(
        "mutual TLS: cluster CA {}, this member's certificate {}\n",
        short(&status["tls"]["ca"]),
        short(&status["tls"]["certificate"])
    ));
    out.push_str(&rotation_text(&status["tls"]["ca_rotation"]));
    out.push_str(&members_text(status));
    out.push_str(&names_text(&status["names"]));
    out.push_str(&errors_text(status, unix_now()));
    for a in status["allocations"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        out.push_str(&format!(
            "  {} address(es) held by {}\n",
            a["addresses"],
            a["name"].as_str().unwrap_or("?")
        ));
    }
    let networks = status["networks"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    out.push_str(&format!("{} network(s) on this host\n", networks.len()));
    for network in networks {
        out.push_str(&format!(
            "  {} bridge {} subnet {}{}\n",
            network["id"]
                .as_str()
                .map(|id| id.get(..12).unwrap_or(id))
                .unwrap_or("?"),
            network["bridge"].as_str().unwrap_or("?"),
            network["subnet"].as_str().unwrap_or("-"),
            if network["internal"] == true {
                " internal"
            } else {
                ""
            }
        ));
        for endpoint in network["endpoints"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let ports = ports_text(endpoint);
            out.push_str(&format!(
                "    {} {} {} {}{}{ports}\n",
                endpoint["id"]
                    .as_str()
                    .map(|id| id.get(..12).unwrap_or(id))
                    .unwrap_or("?"),
                endpoint["container"]
                    .as_str()
                    .unwrap_or("(container not known yet)"),
                endpoint["address"].as_str().unwrap_or("-"),
                endpoint["mac"].as_str().unwrap_or("-"),
                if endpoint["joined"] == true {
                    " joined"
                } else {
                    ""
                }
            ));
        }
    }
    let pools = status["pools"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    out.push_str(&format!("{} pool(s)\n", pools.len()));
    for pool in pools {
        let range = pool["range"]
            .as_str()
            .map(|r| format!(" range {r}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {}{range}\n",
            pool["pool"].as_str().unwrap_or("?")
        ));
        for address in pool["addresses"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            out.push_str(&format!(
                "    {:<40} {}\n",
                address["address"].as_str().unwrap_or("?"),
                address["holder"].as_str().unwrap_or("?")
            ));
        }
    }
    out
}

/// Names across hosts: whether this host's engine reaches rustnet's
/// resolver, and if not, the daemon.json line it needs and who misses it.
fn names_text(names: &Value) -> String {
    if names.is_null() {
        return "names across hosts: off (RUSTNET_NAMES=false)\n".to_owned();
    }
    let engine = names["engine"].as_str().unwrap_or("(not known yet)");
    let setting = names["setting"].as_str().unwrap_or("?");
    let missing: Vec<&str> = names["missing_for"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    match names["needs_setting"].as_bool() {
        None => format!("names across hosts: Docker {engine}\n"),
        Some(false) => format!(
            "names across hosts: ok (Docker {engine} asks the host's resolvers from inside each container)\n"
        ),
        Some(true) if names["checked"].as_u64() == Some(0) => format!(
            "names across hosts: Docker {engine} needs {setting} in /etc/docker/daemon.json (no overlay container here to check it by yet)\n"
        ),
        Some(true) if missing.is_empty() => format!(
            "names across hosts: Docker {engine} needs {setting} in /etc/docker/daemon.json; every overlay container here has it\n"
        ),
        Some(true) => format!(
            "names across hosts: MISSING SETTING: Docker {engine} asks the host's resolvers from its own namespace; add {setting} to /etc/docker/daemon.json and restart dockerd (containers started since get it). Without it these containers resolve only this host's names of their overlays: {}\n",
            missing.join(", ")
        ),
    }
}

/// One line per member: id, address, role, and on the leader how far
/// behind it is.
fn members_text(status: &Value) -> String {
    let mut out = String::new();
    for member in status["cluster"]["members"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let role = if member["voter"] == true {
            "voter"
        } else {
            "learner"
        };
        let behind = status["replication"][member["id"].to_string()]
            .as_u64()
            .map(|n| format!(", {n} entries behind"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  member {} {} {role}{behind}{}\n",
            member["id"],
            member["addr"].as_str().unwrap_or("?"),
            version_text(status, &member["id"])
        ));
    }
    if let Some(waiting) = status["upgrade"]["waiting"].as_str() {
        out.push_str(&format!("  {waiting}\n"));
    }
    out
}

/// `, release 0.2.0 (format 2)` for a member that said, `, version
/// unknown (why)` for one that did not; nothing without an answer.
fn version_text(status: &Value, id: &Value) -> String {
    let answers = status["upgrade"]["members"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let Some(answer) = answers.iter().find(|a| a["id"] == *id) else {
        return String::new();
    };
    match (answer["release"].as_str(), answer["error"].as_str()) {
        (Some(release), _) => format!(", release {release} (format {})", answer["format"]),
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
fn errors_text(status: &Value, now: u64) -> String {
    let errors = status["errors"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if errors.is_empty() {
        return "last errors: none\n".to_owned();
    }
    let mut out = "last errors:\n".to_owned();
    for error in errors {
        let ago = now.saturating_sub(error["last"].as_u64().unwrap_or(now));
        let times = match error["count"].as_u64().unwrap_or(1) {
            1 => String::new(),
            n => format!(" ({n} times)"),
        };
        out.push_str(&format!(
            "  {ago} s ago{times} {}: {}\n",
            error["source"].as_str().unwrap_or("?"),
            error["message"].as_str().unwrap_or("?")
        ));
    }
    out
}

/// An endpoint's published ports, ` ports 8080->80/tcp,...`, or nothing
/// (Docker does not show a remote driver's ports in `docker ps`).
fn ports_text(endpoint: &Value) -> String {
    let ports: Vec<String> = endpoint["ports"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let ip = p["host_ip"]
                .as_str()
                .map(|ip| format!("{ip}:"))
                .unwrap_or_default();
            let proto = p["proto"].as_str().unwrap_or("?").to_lowercase();
            format!("{ip}{}->{}/{proto}", p["host_port"], p["container_port"])
        })
        .collect();
    if ports.is_empty() {
        String::new()
    } else {
        format!(" ports {}", ports.join(","))
    }
}

/// A CA rotation under way, if any: who has yet to renew.
fn rotation_text(rotation: &Value) -> String {
    if !rotation.is_object() {
        return String::new();
    }
    let waiting: Vec<String> = rotation["waiting_for"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect();
    let from = rotation["from"].as_str().unwrap_or("?");
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
    use serde_json::json;

    use super::*;

    #[test]
    fn render_shows_each_members_version_and_what_waits_for_the_upgrade() {
        let status = json!({
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
        let text = render(&status);
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
        let status = json!({
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
        let text = render(&status);
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
        let status = json!({
            "errors": [
                { "source": "reconcile", "message": "boom", "first": 90, "last": 95, "count": 3 },
                { "source": "request /NetworkDriver.Join", "message": "no such endpoint", "first": 99, "last": 99, "count": 1 },
            ],
        });
        assert_eq!(
            errors_text(&status, 100),
            "last errors:\n  5 s ago (3 times) reconcile: boom\n  1 s ago request /NetworkDriver.Join: no such endpoint\n"
        );
        assert_eq!(errors_text(&json!({}), 100), "last errors: none\n");
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
        let missing = names_text(&names(json!(true), json!(["web1", "c2"])));
        assert!(
            missing.starts_with("names across hosts: MISSING SETTING: Docker 28.5.2"),
            "{missing}"
        );
        assert!(
            missing.contains("add \"dns\": [\"169.254.53.53\"] to /etc/docker/daemon.json"),
            "{missing}"
        );
        assert!(missing.ends_with("their overlays: web1, c2\n"), "{missing}");
        let ok = names_text(&names(json!(true), json!([])));
        assert!(ok.contains("every overlay container here has it"), "{ok}");
        let mut none = names(json!(true), json!([]));
        none["checked"] = json!(0);
        let none = names_text(&none);
        assert!(
            none.contains("no overlay container here to check it by yet"),
            "{none}"
        );
        let old = names_text(&names(json!(false), json!([])));
        assert!(old.starts_with("names across hosts: ok"), "{old}");
        assert_eq!(
            names_text(&Value::Null),
            "names across hosts: off (RUSTNET_NAMES=false)\n"
        );
    }

    #[test]
    fn render_shows_a_ca_rotation_under_way() {
        let status = json!({
            "tls": {"ca": "bb", "ca_rotation": {"from": "aaaaaaaaaaaaaaaaaaaaaa", "waiting_for": [2, 3]}},
        });
        let text = render(&status);
        assert!(
            text.contains("CA rotation from aaaaaaaaaaaaaaaa: waiting for host(s) 2, 3 to renew"),
            "{text}"
        );
        assert!(!render(&json!({"tls": {"ca": "bb"}})).contains("CA rotation"));
    }

    #[test]
    fn render_shows_members_and_tls() {
        let status = json!({
            "name": "a (10.0.0.1)", "host": 1,
            "cluster": { "cluster": "c1", "term": 2, "state": "Leader", "leader": 1,
                "members": [{ "id": 1, "addr": "10.0.0.1:7950", "voter": true }] },
            "tls": { "ca": "0123456789abcdef0123", "certificate": null },
        });
        let text = render(&status);
        assert!(text.contains("member 1 10.0.0.1:7950 voter\n"), "{text}");
        assert!(
            text.contains(
                "mutual TLS: cluster CA 0123456789abcdef, this member's certificate none"
            ),
            "{text}"
        );
    }
}
