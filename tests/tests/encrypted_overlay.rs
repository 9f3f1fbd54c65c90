//! Encrypted overlays (`-o encrypted`): three simulated hosts carry an
//! overlay's VXLAN inside WireGuard (userspace here: this kernel has no
//! WireGuard module). Names, pings and TCP work across hosts; a marker
//! sent between containers never shows on the underlay, while the same on
//! an unencrypted overlay does; plaintext VXLAN for the encrypted overlay
//! from outside the tunnel is dropped; a plugin killed with SIGKILL sends
//! nothing in clear while it is down and carries traffic encrypted once
//! started again; rotating hosts' keys keeps a TCP stream across them; a host removed from the cluster no longer reaches the
//! overlay. On every engine of the matrix (20.10, 26, 28).

// Each end-to-end scenario reads as one story, start to finish; it runs as
// a test per engine (on_every_engine!), where a failed expect is a failure.
#![allow(clippy::too_many_lines, clippy::expect_used, clippy::unwrap_used)]

use rustnet_tests::{
    Cases, Engine, SimHost, contains_bytes, docker_ok, on_every_engine, run, rustnet_bin,
    wait_until,
};

on_every_engine!(encrypted_overlays_never_travel_in_clear);

/// What the containers send each other: found on the underlay only where
/// it travels in clear.
const MARKER: &str = "rustnet-marker-7f3a9c";

/// Serves MARKER over HTTP on port 80.
fn serve_marker() -> Vec<&'static str> {
    vec![
        "sh",
        "-c",
        "mkdir -p /www && echo rustnet-marker-7f3a9c > /www/index.html && httpd -f -p 80 -h /www",
    ]
}

/// `container` on `host` fetches `http://ip/`.
fn fetch(host: &SimHost, container: &str, ip: &str) -> Result<String, String> {
    host.exec(
        container,
        &["timeout", "5", "wget", "-qO-", &format!("http://{ip}/")],
    )
}

fn encrypted_overlays_never_travel_in_clear(engine: Engine) {
    let start = || SimHost::spec().engine(engine).start();
    let (h1, h2, h3) = (start(), start(), start());
    h1.start_cluster(&[&h2, &h3]);
    let mut cases = Cases::new(|| {});

    cases.run("every host publishes its WireGuard key", || {
        wait_until("three keys", 30, || {
            [&h1, &h2, &h3].iter().all(|h| {
                h.try_status().is_ok_and(|s| {
                    s["encryption"]["public_key"]
                        .as_str()
                        .is_some_and(|k| k.len() == 44)
                })
            })
        });
    });

    cases.run(
        "containers on three hosts talk over the encrypted overlay, by name too",
        || {
            h1.create_overlay("sec", "10.0.93.0/24", &["-o", "encrypted"]);
            wait_until("sec on h2 and h3", 20, || {
                h2.has_network("sec") && h3.has_network("sec")
            });
            h1.run_container("c1", "sec", &[], &serve_marker());
            h2.run_container("w2", "sec", &[], &serve_marker());
            h3.run_container("c3", "sec", &[], &[]);
            let w2 = h2.ip_of("w2", "sec");
            assert!(h3.pings_within("c3", &w2, 10), "c3 -> w2 across hosts");
            assert!(h3.pings_within("c3", "c1", 10), "c1 by name from h3");
            assert!(h1.pings_within("c1", "w2", 10), "w2 by name from h1");
            let page = docker_ok(fetch(&h3, "c3", &w2), "TCP across hosts");
            assert!(page.contains(MARKER), "{page}");
            // VXLAN (50) inside WireGuard (60) over the underlay's 1500.
            let mtu = docker_ok(h3.exec("c3", &["cat", "/sys/class/net/eth0/mtu"]), "mtu");
            assert_eq!(mtu.trim(), "1390");
            let status = h3.status();
            let encryption = &status["encryption"];
            assert_eq!(encryption["tunnel"], "userspace", "{encryption}");
            assert_eq!(
                encryption["kernel_unavailable"], "the kernel has no WireGuard",
                "{encryption}"
            );
            assert_eq!(encryption["peers"], 2, "{encryption}");
            let details = h3.vxlan_details();
            assert!(details.contains("local 169.254.192."), "{details}");
            assert!(details.contains("dstport 7951"), "{details}");
        },
    );

    cases.run(
        "the marker never shows on the underlay; on an unencrypted overlay it does",
        || {
            let w2 = h2.ip_of("w2", "sec");
            let capture = h2.capture_underlay("sealed");
            for _ in 0..3 {
                let page = docker_ok(fetch(&h3, "c3", &w2), "TCP across hosts");
                assert!(page.contains(MARKER), "{page}");
            }
            let wire = capture.stop();
            assert!(
                wire.len() > 1000,
                "the capture saw nothing: {} bytes",
                wire.len()
            );
            assert!(
                !contains_bytes(&wire, MARKER.as_bytes()),
                "the marker travelled in clear on the encrypted overlay"
            );
            h1.create_overlay("open", "10.0.94.0/24", &[]);
            wait_until("open on h2 and h3", 20, || {
                h2.has_network("open") && h3.has_network("open")
            });
            h2.run_container("o2", "open", &[], &serve_marker());
            h3.run_container("o3", "open", &[], &[]);
            let o2 = h2.ip_of("o2", "open");
            assert!(h3.pings_within("o3", &o2, 10), "o3 -> o2");
            let capture = h2.capture_underlay("clear");
            let page = docker_ok(fetch(&h3, "o3", &o2), "TCP on the unencrypted overlay");
            assert!(page.contains(MARKER), "{page}");
            assert!(
                contains_bytes(&capture.stop(), MARKER.as_bytes()),
                "the capture does not see an unencrypted overlay's traffic either"
            );
        },
    );

    cases.run(
        "plaintext VXLAN for the encrypted overlay from outside the tunnel is dropped",
        || {
            let sealed = |host: &SimHost| {
                run(host
                    .cmd("iptables")
                    .args(["-v", "-x", "-n", "-L", "RUSTNET-SEAL-IN"]))
                .unwrap_or_default()
                .lines()
                .find(|l| l.contains("DROP"))
                .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
            };
            let vni = run(h2.cmd("ip").args(["-d", "link", "show", "type", "vxlan"]))
                .unwrap_or_default()
                .split("\n")
                .collect::<Vec<_>>()
                .windows(2)
                .find(|w| w[1].contains("dstport 7951"))
                .and_then(|w| {
                    w[1].split_whitespace()
                        .skip_while(|x| *x != "id")
                        .nth(1)
                        .map(str::to_owned)
                })
                .expect("the encrypted overlay's VXLAN device on h2");
            let intruder = SimHost::start_on(engine);
            intruder.add_vxlan_sender(&vni, None, &h2.addr, "7951", "10.0.93.250/24");
            let before = sealed(&h2);
            let w2 = h2.ip_of("w2", "sec");
            intruder.assert_no_reply_from(&w2, "plaintext VXLAN");
            assert!(sealed(&h2) > before, "h2 dropped nothing of the intruder's");
            assert!(h3.pings_within("c3", &w2, 5), "members still talk");
        },
    );

    cases.run(
        "rotating a host's key loses no connection across it",
        || {
            let w2 = h2.ip_of("w2", "sec");
            docker_ok(
                h2.docker(&[
                    "exec",
                    "-d",
                    "w2",
                    "sh",
                    "-c",
                    "sleep 3600 | nc -l -p 5001 > /stream",
                ]),
                "stream server",
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
            let client = format!("yes rustnet-stream | nc {w2} 5001; echo $? > /nc-exit");
            docker_ok(
                h3.docker(&["exec", "-d", "c3", "sh", "-c", &client]),
                "stream client",
            );
            let received = || {
                h2.exec("w2", &["stat", "-c", "%s", "/stream"])
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let flows = (0..100).any(|_| {
                std::thread::sleep(std::time::Duration::from_millis(100));
                received() > 100_000
            });
            assert!(
                flows,
                "the stream does not flow: w2 {:?} {:?}, c3 {:?} {:?}",
                h2.exec("w2", &["ps"]),
                h2.exec("w2", &["ls", "-la", "/"]),
                h3.exec("c3", &["ps"]),
                h3.exec("c3", &["cat", "/nc-exit"]),
            );
            let before = [&h1, &h2, &h3].map(|h| h.status()["encryption"]["public_key"].clone());
            for host in [&h3, &h2] {
                let out = run(host.cmd(&rustnet_bin().display().to_string()).args([
                    "cluster",
                    "rotate-key",
                    "--socket",
                    &host.socket(),
                ]))
                .unwrap_or_else(|e| panic!("rotate-key: {e}"));
                assert!(out.contains("public key is now"), "{out}");
            }
            let after = [&h1, &h2, &h3].map(|h| h.status()["encryption"]["public_key"].clone());
            assert_eq!(before[0], after[0], "h1 kept its key");
            assert_ne!(before[1], after[1], "h2 has a new key");
            assert_ne!(before[2], after[2], "h3 has a new key");
            let rotated = received();
            wait_until("the stream flows on after the rotation", 10, || {
                received() > rotated + 1_000_000
            });
            assert!(
                h3.exec("c3", &["cat", "/nc-exit"]).is_err(),
                "the stream's connection ended during the rotation"
            );
            assert!(
                h1.pings_within("c1", "w2", 5),
                "h1 reaches h2 under its new key"
            );
            assert!(
                h1.pings_within("c1", "c3", 5),
                "h1 reaches h3 under its new key"
            );
            let _ = h3.exec("c3", &["killall", "nc"]);
            let _ = h2.exec("w2", &["killall", "nc"]);
        },
    );

    cases.run(
        "a plugin killed with SIGKILL sends nothing in clear, and encrypts again once back",
        || {
            let c1 = h1.ip_of("c1", "sec");
            h2.kill_rustnet();
            let capture = h2.capture_underlay("killed");
            let while_down = fetch(&h2, "w2", &c1);
            let wire = capture.stop();
            assert!(
                !contains_bytes(&wire, MARKER.as_bytes()),
                "the marker left h2 in clear while its plugin was down ({while_down:?})"
            );
            h2.start_rustnet(&[]);
            wait_until("h2 reaches c1 again", 30, || h2.pings_within("w2", &c1, 2));
            let capture = h2.capture_underlay("restarted");
            let page = docker_ok(fetch(&h2, "w2", &c1), "TCP after the restart");
            assert!(page.contains(MARKER), "{page}");
            assert!(
                !contains_bytes(&capture.stop(), MARKER.as_bytes()),
                "the marker travelled in clear after the restart"
            );
        },
    );

    cases.run(
        "a host removed from the cluster no longer reaches the overlay",
        || {
            let w2 = h2.ip_of("w2", "sec");
            assert!(h3.pings_within("c3", &w2, 5), "c3 reaches w2 before");
            let id = h3.status()["host"].to_string();
            h3.kill_rustnet();
            let remove = ["cluster", "remove", id.as_str(), "--socket", &h1.socket()];
            run(h1.cmd(&rustnet_bin().display().to_string()).args(remove))
                .unwrap_or_else(|e| panic!("cluster remove: {e}"));
            wait_until("h3 is no peer of h1 and h2", 20, || {
                [&h1, &h2]
                    .iter()
                    .all(|h| h.status()["encryption"]["peers"] == 1)
            });
            assert!(
                !h3.pings_within("c3", &w2, 3),
                "a removed host still reaches w2"
            );
            // A plugin that answers keeps h3's teardown from waiting on
            // Docker's retries for a missing socket.
            h3.spawn_rustnet(&[("RUSTNET_REQUEST_TIMEOUT", "1")]);
        },
    );

    cases.finish();
}
