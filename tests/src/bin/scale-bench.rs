//! The scale benchmark: a cluster of simulated Docker hosts and bare
//! members filled with endpoints, a follower brought back and a new member
//! joined (see `rustnet_tests::scale`); prints a Markdown report and writes
//! it to `target/scale-bench.md`. Run it with `scripts/scale-bench.sh`.
//!
//! ```text
//! scale-bench [DOCKER_HOSTS BARE_HOSTS ENDPOINTS WHILE_DOWN]
//!             (default 3 47 10000 500: 50 members; a bridge holds at most
//!             1024 ports, so 213 + 500 endpoints on one member's)
//! ```

use std::fmt::Write as _;

use rustnet_tests::scale::{Report, Scale, run};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| {
            a.parse().unwrap_or_else(|_| {
                eprintln!("usage: scale-bench [DOCKER_HOSTS BARE_HOSTS ENDPOINTS WHILE_DOWN]");
                std::process::exit(2)
            })
        })
        .collect();
    let arg = |i: usize, default: usize| args.get(i).copied().unwrap_or(default);
    let scale = Scale {
        docker_hosts: arg(0, 3),
        bare_hosts: arg(1, 47),
        endpoints: arg(2, 10_000),
        while_down: arg(3, 500),
    };
    let report = run(scale);
    let text = render(scale, &report);
    print!("{text}");
    let out = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/scale-bench.md");
    if let Err(e) = std::fs::write(out, &text) {
        eprintln!("write {out}: {e}");
    }
}

fn mib(kib: u64) -> String {
    #[allow(clippy::cast_precision_loss)] // a figure for a report
    let mib = kib as f64 / 1024.0;
    format!("{mib:.1} MiB")
}

fn render(scale: Scale, r: &Report) -> String {
    let mut rss: Vec<u64> = r.rss_kib.iter().map(|(_, k)| *k).collect();
    rss.sort_unstable();
    let at = |q: usize| {
        rss.get((rss.len().saturating_sub(1)) * q / 100)
            .copied()
            .unwrap_or(0)
    };
    let want = r.allocations_expected;
    let agree = r.allocations_seen.iter().all(|n| *n == want);
    let machine = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "?".into());
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let mut s = String::new();
    let _ = writeln!(s, "# rustnet scale run\n");
    let _ = writeln!(
        s,
        "{} members ({} with dockerd, {} bare), {} endpoints; {cpus} CPUs ({machine}); binary {}\n",
        r.members,
        scale.docker_hosts,
        scale.bare_hosts,
        r.endpoints,
        rustnet_tests::rustnet_bin().display()
    );
    let _ = writeln!(s, "| figure | value |\n|---|---|");
    let rows = [
        (
            "cluster formed (all members answering)",
            format!("{:.1} s", r.form.as_secs_f64()),
        ),
        (
            "endpoint requests refused",
            format!("{} of {}", r.failed.len(), r.failed.len() + r.endpoints),
        ),
        (
            "endpoints made",
            format!(
                "{:.1} s, {:.0}/s (each: RequestAddress + CreateEndpoint)",
                r.fill.as_secs_f64(),
                r.fill_rate
            ),
        ),
        (
            "daemon RSS at the endpoints, median / max",
            format!("{} / {}", mib(at(50)), mib(at(100))),
        ),
        ("daemon RSS, min", mib(at(0))),
        (
            "state file of a member (state.redb)",
            format!("{} KiB", r.state_bytes / 1024),
        ),
        (
            "follower down during more endpoints: start to caught up",
            format!(
                "{:.2} s ({} endpoints made while down)",
                r.restarted_ready.as_secs_f64(),
                scale.while_down
            ),
        ),
        (
            "new member, empty state: start to caught up",
            format!("{:.2} s", r.newcomer_ready.as_secs_f64()),
        ),
        (
            "new member: start to first allocation",
            format!("{:.2} s", r.newcomer_allocates.as_secs_f64()),
        ),
        (
            "snapshot the new member installed",
            r.snapshot_bytes
                .map_or("none".into(), |b| format!("{} KiB", b / 1024)),
        ),
        (
            "new member's RSS after catching up",
            mib(r.newcomer_rss_kib),
        ),
        (
            "members agreeing on the addresses held",
            format!(
                "{} of {} ({want} each)",
                r.allocations_seen.iter().filter(|n| **n == want).count(),
                r.allocations_seen.len()
            ),
        ),
    ];
    for (name, value) in rows {
        let _ = writeln!(s, "| {name} | {value} |");
    }
    let _ = writeln!(s, "\nRSS per daemon (KiB):");
    let list: Vec<String> = r.rss_kib.iter().map(|(h, k)| format!("{h} {k}")).collect();
    let _ = writeln!(s, "{}", list.join(", "));
    if let Some(first) = r.failed.first() {
        let _ = writeln!(s, "\nfirst refusal: {first}");
    }
    if let Some(first) = r.status_errors.first() {
        let _ = writeln!(
            s,
            "\n{} members did not answer status; first: {first}",
            r.status_errors.len()
        );
    }
    if !agree {
        let _ = writeln!(s, "\n**members disagree**: {:?}", r.allocations_seen);
    }
    s
}
