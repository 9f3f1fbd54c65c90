//! Every benchmark of the project in one run, beside Docker's own drivers,
//! written up as one Markdown report with plots:
//!
//! - `cluster-bench`: allocation throughput and latency at 1, 16 and 64
//!   clients on a 3-node cluster (and 64 paced at 10,000/s), and in-process
//!   failover; repeated, and alternated with a baseline build when one is
//!   given;
//! - `ipam-bench`: RequestAddress over one daemon's plugin socket;
//! - `failover-bench`: leader SIGKILL and restart across three daemons;
//! - `overlay-bench`: `docker run -d`, reachability, name lookup, network
//!   propagation and iperf3 on two simulated hosts, beside Docker's bridge
//!   and swarm's overlay;
//! - `lan-bench`: `docker run -d` on Docker's macvlan with Docker's IPAM,
//!   with rustnet's, and on rustnet's own macvlan, on three simulated hosts;
//! - `scale-bench`: the cluster at size.
//!
//! Writes `target/bench-report/report.md` and its plots (SVG) beside it.
//! Run it through `scripts/bench-report.sh [--quick] [--baseline REV]`,
//! which builds everything in release mode first.
//!
//! ```text
//! bench-report [--quick] [--baseline DIR LABEL]
//! ```
//! `DIR` holds a baseline build's `cluster-bench`, `LABEL` names it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use rustnet_tests::plot;
use rustnet_tests::report::{
    LegacyRow, Spread, Table, digits, legacy_cluster_bench, nest, numbers, percentile, ratio,
    result_line,
};
use serde_json::Value;

/// How much of each benchmark to run.
#[derive(Clone, Copy, Debug)]
struct Size {
    cluster_rounds: usize,
    ipam_rounds: usize,
    ipam_calls: usize,
    failover_rounds: usize,
    overlay_runs: usize,
    scale: [usize; 4],
}

const FULL: Size = Size {
    cluster_rounds: 5,
    ipam_rounds: 3,
    ipam_calls: 2000,
    failover_rounds: 10,
    overlay_runs: 20,
    scale: [3, 47, 10_000, 500],
};

const QUICK: Size = Size {
    cluster_rounds: 2,
    ipam_rounds: 2,
    ipam_calls: 500,
    failover_rounds: 3,
    overlay_runs: 3,
    scale: [1, 4, 1000, 100],
};

/// A baseline build to compare the write path with.
#[derive(Debug)]
struct Baseline {
    cluster_bench: PathBuf,
    label: String,
}

/// Where the benchmarks are and what failed running them.
#[derive(Debug)]
struct Runner {
    bins: PathBuf,
    failures: Vec<String>,
}

impl Runner {
    /// Runs `program` with `args`; its `RESULT` JSON, or its whole output
    /// when `raw`. A failure is recorded for the report and gives `None`.
    fn run(&mut self, program: &Path, args: &[String], raw: bool) -> Option<(String, Value)> {
        let name = program
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        eprintln!("== {name} {}", args.join(" "));
        let started = Instant::now();
        let out = Command::new(program)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .output();
        let failure = match out {
            Ok(out) => {
                let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                print!("{stdout}");
                eprintln!("   ({:.0} s)", started.elapsed().as_secs_f64());
                let result = result_line(&stdout);
                match (out.status.success(), result) {
                    (true, Some(v)) => return Some((stdout, v)),
                    (true, None) if raw => return Some((stdout, Value::Null)),
                    (true, None) => format!("{name} printed no RESULT line"),
                    (false, _) => format!("{name} {} failed: {}", args.join(" "), out.status),
                }
            }
            Err(e) => format!("{name}: {e}"),
        };
        eprintln!("   {failure}");
        self.failures.push(failure);
        None
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.bins.join(name)
    }
}

/// One row of `cluster-bench`: how many clients, and where they sit.
type RowKey = (usize, &'static str);

const ROWS: [RowKey; 5] = [
    (1, "leader"),
    (1, "follower"),
    (16, "spread"),
    (64, "spread"),
    (64, "paced"),
];

fn row_label((clients, via): RowKey) -> String {
    match via {
        "leader" => format!("{clients}, through the leader"),
        "follower" => format!("{clients}, through a follower"),
        "paced" => format!("{clients}, spread, paced at 10,000/s in all"),
        _ => format!("{clients}, spread over the members"),
    }
}

/// Every round's figures of one build's `cluster-bench`.
#[derive(Debug, Default)]
struct ClusterRuns {
    rates: BTreeMap<RowKey, Vec<f64>>,
    p50: BTreeMap<RowKey, Vec<f64>>,
    p99: BTreeMap<RowKey, Vec<f64>>,
    /// The process's CPU time per allocation (µs), from builds that
    /// report it.
    cpu_us: BTreeMap<RowKey, Vec<f64>>,
    samples: BTreeMap<RowKey, Vec<f64>>,
    failover_ms: Vec<f64>,
}

impl ClusterRuns {
    fn add(&mut self, key: RowKey, rate: f64, p50: Option<f64>, p99: Option<f64>) {
        self.rates.entry(key).or_default().push(rate);
        self.p50.entry(key).or_default().extend(p50);
        self.p99.entry(key).or_default().extend(p99);
    }

    /// A run's output: its `RESULT` line, or an older build's text lines.
    fn read(&mut self, stdout: &str) {
        let Some(result) = result_line(stdout) else {
            let (rows, failover) = legacy_cluster_bench(stdout);
            for LegacyRow {
                clients,
                rate,
                p50_ms,
                p99_ms,
            } in rows
            {
                // Older builds ran one client on the first member, the leader.
                let via = if clients == 1 { "leader" } else { "spread" };
                self.add((clients, via), rate, Some(p50_ms), Some(p99_ms));
            }
            self.failover_ms.extend(failover);
            return;
        };
        for row in result["rows"].as_array().into_iter().flatten() {
            let clients = row["clients"]
                .as_u64()
                .and_then(|c| usize::try_from(c).ok());
            // A paced row's clients sit as a spread row's do.
            let via = if row["paced"].is_number() {
                serde_json::json!("paced")
            } else {
                row["via"].clone()
            };
            let key = ROWS
                .into_iter()
                .find(|(c, v)| Some(*c) == clients && via == *v);
            let (Some(key), Some(rate)) = (key, row["rate"].as_f64()) else {
                continue;
            };
            let samples = numbers(row, "samples_ms");
            self.add(
                key,
                rate,
                percentile(&samples, 500),
                percentile(&samples, 990),
            );
            self.samples.entry(key).or_default().extend(samples);
            self.cpu_us
                .entry(key)
                .or_default()
                .extend(row["cpu_us"].as_f64());
        }
        self.failover_ms.extend(result["failover_ms"].as_f64());
    }

    fn rate(&self, key: RowKey) -> Option<Spread> {
        Spread::of(self.rates.get(&key)?)
    }

    fn p50(&self, key: RowKey) -> Option<Spread> {
        Spread::of(self.p50.get(&key)?)
    }

    fn p99(&self, key: RowKey) -> Option<Spread> {
        Spread::of(self.p99.get(&key)?)
    }

    fn cpu_us(&self, key: RowKey) -> Option<Spread> {
        Spread::of(self.cpu_us.get(&key)?)
    }
}

fn show(spread: Option<Spread>, unit: &str) -> String {
    spread.map_or_else(|| "–".to_owned(), |s| s.show(unit))
}

/// A goal of the project, the figure measured for it, and whether it holds.
#[derive(Debug, Default)]
struct Goals(Vec<[String; 4]>);

impl Goals {
    fn check(&mut self, what: &str, goal: &str, figure: Option<Spread>, unit: &str, met: bool) {
        let verdict = match figure {
            None => "not measured",
            Some(_) if met => "met",
            Some(_) => "not met",
        };
        self.0.push([
            what.to_owned(),
            goal.to_owned(),
            show(figure, unit),
            verdict.to_owned(),
        ]);
    }
}

/// The rows of `cluster-bench`: this build's, and the baseline's beside
/// them if there is one.
fn rows_table(now: &ClusterRuns, before: &ClusterRuns, with_baseline: bool) -> String {
    let mut header = vec![
        "clients",
        "allocations/s",
        "p50 (ms)",
        "p99 (ms)",
        "CPU (µs per allocation)",
    ];
    if with_baseline {
        header.extend([
            "baseline allocations/s",
            "p50 (ms)",
            "p99 (ms)",
            "CPU (µs)",
            "speed-up",
        ]);
    }
    let mut table = Table::new(&header);
    for key in ROWS {
        let mut row = vec![
            row_label(key),
            show(now.rate(key), ""),
            show(now.p50(key), ""),
            show(now.p99(key), ""),
            show(now.cpu_us(key), ""),
        ];
        if with_baseline {
            row.extend([
                show(before.rate(key), ""),
                show(before.p50(key), ""),
                show(before.p99(key), ""),
                show(before.cpu_us(key), ""),
                ratio(now.rate(key), before.rate(key)),
            ]);
        }
        table.row(row);
    }
    table.render()
}

fn cluster_section(
    runner: &mut Runner,
    size: Size,
    baseline: Option<&Baseline>,
    out: &Path,
    goals: &mut Goals,
) -> String {
    let bench = runner.bin("examples/cluster-bench");
    let (mut now, mut before) = (ClusterRuns::default(), ClusterRuns::default());
    for _ in 0..size.cluster_rounds {
        if let Some((stdout, _)) = runner.run(&bench, &[], false) {
            now.read(&stdout);
        }
        if let Some(b) = baseline
            && let Some((stdout, _)) = runner.run(&b.cluster_bench, &[], true)
        {
            before.read(&stdout);
        }
    }
    let mut s = format!(
        "## Allocations on a 3-member cluster\n\n`cluster-bench`: three members in one process over loopback gRPC with mutual TLS, every entry on disk before it is acknowledged; 3,000 allocations per row; {} rounds{}. Each cell: median over the rounds (lowest–highest). CPU: the process's CPU time (all three members and the clients) per allocation. The rows' clients go as fast as they can (each sends its next request when the last is answered), except the paced row's: 64 clients holding to 10,000 allocations/s in all, each request timed from when it was due.\n\n",
        size.cluster_rounds,
        baseline.map_or_else(String::new, |b| format!(
            ", each followed by a round of the baseline build `{}`",
            b.label
        )),
    );
    s.push_str(&rows_table(&now, &before, baseline.is_some()));
    let failover = |runs: &ClusterRuns| Spread::of(&runs.failover_ms);
    let mut header = vec!["in-process failover", "this build (ms)"];
    if baseline.is_some() {
        header.extend(["baseline (ms)", "ratio"]);
    }
    let mut table = Table::new(&header);
    table.row(vec![
        "leader shut down -> first allocation through a survivor".to_owned(),
        show(failover(&now), ""),
        show(failover(&before), ""),
        ratio(failover(&now), failover(&before)),
    ]);
    s.push('\n');
    s.push_str(&table.render());
    let (leader, follower) = ((1, "leader"), (1, "follower"));
    // Per round: the follower's p50 over the leader's, both from that round.
    let per_round: Vec<f64> = (now.p50.get(&follower).into_iter().flatten())
        .zip(now.p50.get(&leader).into_iter().flatten())
        .map(|(f, l)| f / l)
        .collect();
    let follower_ratio = Spread::of(&per_round);
    let _ = writeln!(
        s,
        "\nOne client through a follower against one through the leader, p50: {}.\n",
        show(follower_ratio, "×")
    );
    let at = |key, p: fn(&ClusterRuns, RowKey) -> Option<Spread>| p(&now, key);
    let rate64 = at((64, "spread"), ClusterRuns::rate);
    let p99_64 = at((64, "spread"), ClusterRuns::p99);
    let p99_paced = at((64, "paced"), ClusterRuns::p99);
    let (p50_1, p99_1) = (at(leader, ClusterRuns::p50), at(leader, ClusterRuns::p99));
    goals.check(
        "allocations/s, 64 clients",
        "≥ 10,000/s",
        rate64,
        "/s",
        rate64.is_some_and(|r| r.median >= 10_000.0),
    );
    goals.check(
        "p99, 64 clients",
        "≤ 5 ms",
        p99_64,
        " ms",
        p99_64.is_some_and(|p| p.median <= 5.0),
    );
    goals.check(
        "p99, 64 clients paced at 10,000/s",
        "≤ 5 ms",
        p99_paced,
        " ms",
        p99_paced.is_some_and(|p| p.median <= 5.0),
    );
    goals.check(
        "p50, one client",
        "≤ 0.7 ms",
        p50_1,
        " ms",
        p50_1.is_some_and(|p| p.median <= 0.7),
    );
    goals.check(
        "p99, one client",
        "≤ 2 ms",
        p99_1,
        " ms",
        p99_1.is_some_and(|p| p.median <= 2.0),
    );
    goals.check(
        "through a follower / through the leader, p50",
        "≤ 1.3×",
        follower_ratio,
        "×",
        follower_ratio.is_some_and(|r| r.median <= 1.3),
    );
    s.push_str(&cluster_plots(&now, &before, baseline, out, runner));
    s
}

fn cluster_plots(
    now: &ClusterRuns,
    before: &ClusterRuns,
    baseline: Option<&Baseline>,
    out: &Path,
    runner: &mut Runner,
) -> String {
    let mut s = String::new();
    let cdf: Vec<(String, Vec<f64>)> = ROWS
        .into_iter()
        .filter_map(|key| Some((row_label(key), now.samples.get(&key)?.clone())))
        .collect();
    let file = out.join("allocation-latency.svg");
    match plot::latency_cdf(&file, "Allocation latency, 3 members", &cdf) {
        Ok(()) => s.push_str("\n![allocation latency](allocation-latency.svg)\n"),
        Err(e) => runner.failures.push(e),
    }
    let curve = |runs: &ClusterRuns| -> Vec<(f64, Spread)> {
        [(1, "leader"), (16, "spread"), (64, "spread")]
            .into_iter()
            .filter_map(|key| {
                #[allow(clippy::cast_precision_loss)] // 64 at most
                let clients = key.0 as f64;
                Some((clients, runs.rate(key)?))
            })
            .collect()
    };
    let mut series = vec![("this build".to_owned(), curve(now))];
    if let Some(b) = baseline {
        series.push((format!("baseline {}", b.label), curve(before)));
    }
    let file = out.join("allocation-throughput.svg");
    let axes = ("concurrent clients (log scale)", "allocations/s");
    match plot::medians(&file, "Allocation throughput", axes, &series) {
        Ok(()) => s.push_str("\n![allocation throughput](allocation-throughput.svg)\n"),
        Err(e) => runner.failures.push(e),
    }
    s
}

fn ipam_section(runner: &mut Runner, size: Size) -> String {
    let bench = runner.bin("ipam-bench");
    let (mut p50, mut p99) = (Vec::new(), Vec::new());
    for _ in 0..size.ipam_rounds {
        if let Some((_, v)) = runner.run(&bench, &[size.ipam_calls.to_string()], false) {
            let samples = numbers(&v, "samples_ms");
            p50.extend(percentile(&samples, 500));
            p99.extend(percentile(&samples, 990));
        }
    }
    let mut table = Table::new(&["measure", "p50 (ms)", "p99 (ms)"]);
    table.row(vec![
        "RequestAddress over the plugin socket, one member (a Raft write, on disk)".into(),
        show(Spread::of(&p50), ""),
        show(Spread::of(&p99), ""),
    ]);
    format!(
        "## One daemon's plugin socket\n\n`ipam-bench`: {} calls on one kept-alive connection, {} rounds; median over the rounds (lowest–highest).\n\n{}",
        size.ipam_calls,
        size.ipam_rounds,
        table.render()
    )
}

fn failover_section(runner: &mut Runner, size: Size, goals: &mut Goals) -> String {
    let bench = runner.bin("failover-bench");
    let Some((_, v)) = runner.run(&bench, &[size.failover_rounds.to_string()], false) else {
        return "## Failover and start across daemons\n\nfailover-bench failed: see below.\n"
            .to_owned();
    };
    let mut table = Table::new(&["measure", "p50 (ms)", "p99 (ms)", "worst (ms)", "kills"]);
    let mut figure = |name: &str, key: &str| {
        let samples = numbers(&v, key);
        let at = |q| percentile(&samples, q).map_or_else(String::new, digits);
        table.row(vec![
            name.to_owned(),
            at(500),
            at(990),
            at(1000),
            samples.len().to_string(),
        ]);
        percentile(&samples, 990).and_then(|p| Spread::of(&[p]))
    };
    let failover = figure(
        "failover: leader SIGKILL -> first allocation through a survivor",
        "failover_ms",
    );
    let start = figure(
        "start: daemon started again -> first allocation through it",
        "start_ms",
    );
    goals.check(
        "failover, leader SIGKILL -> first allocation, p99",
        "≤ 500 ms",
        failover,
        " ms",
        failover.is_some_and(|f| f.median <= 500.0),
    );
    let elections = v["elections_loaded"].as_f64();
    goals.check(
        "elections in a loaded run without kills",
        "0",
        elections.and_then(|e| Spread::of(&[e])),
        "",
        elections == Some(0.0),
    );
    goals.check(
        "start -> first allocation, p99",
        "≤ 1,000 ms",
        start,
        " ms",
        start.is_some_and(|f| f.median <= 1000.0),
    );
    format!(
        "## Failover and start across daemons\n\n`failover-bench`: three daemons in their own namespaces, mutual TLS, fsync on, driven through their plugin sockets; every round kills whoever leads. Before the kills, a loaded run of 30 s (busy loops on every core, allocations through every member) counts elections: {}.\n\n{}",
        elections.map_or_else(|| "not measured".to_owned(), |e| format!("{e:.0}")),
        table.render()
    )
}

fn lan_section(runner: &mut Runner, size: Size) -> String {
    let bench = runner.bin("lan-bench");
    let Some((_, v)) = runner.run(&bench, &[size.overlay_runs.to_string()], false) else {
        return "## Macvlan beside Docker's

lan-bench failed: see below.
"
        .to_owned();
    };
    let mut table = Table::new(&["measure (ms)", "rustnet", "Docker", "ratio"]);
    versus(
        &mut table,
        &v,
        "`docker run -d`: Docker's macvlan with rustnet's IPAM (shared pool) vs with Docker's",
        "run_docker_macvlan_rustnet_ipam_ms",
        Some("run_docker_macvlan_ms"),
    );
    versus(
        &mut table,
        &v,
        "`docker run -d`: rustnet's macvlan (`-o mode=macvlan`) vs Docker's macvlan",
        "run_rustnet_macvlan_ms",
        Some("run_docker_macvlan_ms"),
    );
    format!(
        "## Macvlan beside Docker's

`lan-bench`: three simulated hosts in one cluster, `docker run -d` on a follower, {} runs each, alternated; each network on a parent of its own. Each cell: median (lowest–highest).\n\n{}",
        size.overlay_runs,
        table.render()
    )
}

/// One comparison row: rustnet's samples against Docker's, median with spread.
fn versus(table: &mut Table, v: &Value, measure: &str, ours: &str, theirs: Option<&str>) {
    let ours = Spread::of(&numbers(v, ours));
    let theirs = theirs.and_then(|k| Spread::of(&numbers(v, k)));
    table.row(vec![
        measure.to_owned(),
        show(ours, ""),
        theirs.map_or_else(String::new, |t| t.show("")),
        ratio(ours, theirs),
    ]);
}

/// p99 of two sample sets as one row.
fn versus_p99(table: &mut Table, v: &Value, measure: &str, ours: &str, theirs: &str) {
    let p99 = |k| percentile(&numbers(v, k), 990).and_then(|p| Spread::of(&[p]));
    let (o, t) = (p99(ours), p99(theirs));
    table.row(vec![
        measure.to_owned(),
        show(o, ""),
        show(t, ""),
        ratio(o, t),
    ]);
}

/// The rows of `overlay-bench`'s figures against Docker's.
fn overlay_table(v: &Value) -> Table {
    let mut t = Table::new(&["measure", "rustnet", "Docker", "ratio"]);
    versus(
        &mut t,
        v,
        "`docker run -d` (ms): rustnet bridge vs Docker's bridge",
        "run_rustnet_bridge_ms",
        Some("run_docker_bridge_ms"),
    );
    versus(
        &mut t,
        v,
        "`docker run -d` (ms): rustnet overlay vs Docker's bridge",
        "run_overlay_ms",
        Some("run_docker_bridge_ms"),
    );
    versus(
        &mut t,
        v,
        "reachability (ms): `docker run -d` on A until a container on B gets a ping reply, rustnet overlay vs swarm overlay",
        "reach_rustnet_ms",
        Some("reach_swarm_ms"),
    );
    versus_p99(
        &mut t,
        v,
        "same, p99 (ms)",
        "reach_rustnet_ms",
        "reach_swarm_ms",
    );
    versus(
        &mut t,
        v,
        "reachability (ms): encrypted rustnet overlay (`-o encrypted`) vs the same overlay unencrypted",
        "reach_encrypted_ms",
        Some("reach_rustnet_ms"),
    );
    versus(
        &mut t,
        v,
        "name lookup (ms): a container on the other host (rustnet) vs on the same host (Docker's embedded DNS)",
        "lookup_far_ms",
        Some("lookup_near_ms"),
    );
    versus_p99(
        &mut t,
        v,
        "same, p99 (ms)",
        "lookup_far_ms",
        "lookup_near_ms",
    );
    versus(
        &mut t,
        v,
        "name lookup (ms), asked straight of rustnet's resolver (without Docker's forwarding) vs Docker's same-host answer",
        "lookup_direct_ms",
        Some("lookup_near_ms"),
    );
    versus(
        &mut t,
        v,
        "network propagation (ms): `docker network create` on A until B's Docker has it (swarm: on first use)",
        "propagation_ms",
        None,
    );
    for mtu in [1500, 9000] {
        versus(
            &mut t,
            v,
            &format!(
                "iperf3 TCP between hosts (Gbit/s), underlay MTU {mtu}: rustnet overlay vs swarm overlay"
            ),
            &format!("iperf_rustnet_gbits_{mtu}"),
            Some(&format!("iperf_swarm_gbits_{mtu}")),
        );
        versus(
            &mut t,
            v,
            &format!("same, rustnet overlay vs the underlay itself, MTU {mtu}"),
            &format!("iperf_rustnet_gbits_{mtu}"),
            Some(&format!("iperf_underlay_gbits_{mtu}")),
        );
        versus(
            &mut t,
            v,
            &format!(
                "same, routed containers (a bridge on each host, no encapsulation, no Docker) vs the underlay, MTU {mtu}"
            ),
            &format!("iperf_routed_gbits_{mtu}"),
            Some(&format!("iperf_underlay_gbits_{mtu}")),
        );
        versus(
            &mut t,
            v,
            &format!("same, rustnet overlay vs routed containers, MTU {mtu}"),
            &format!("iperf_rustnet_gbits_{mtu}"),
            Some(&format!("iperf_routed_gbits_{mtu}")),
        );
        versus(
            &mut t,
            v,
            &format!(
                "same, encrypted rustnet overlay (userspace WireGuard) vs the overlay unencrypted, MTU {mtu}"
            ),
            &format!("iperf_encrypted_gbits_{mtu}"),
            Some(&format!("iperf_rustnet_gbits_{mtu}")),
        );
    }
    t
}

fn overlay_section(runner: &mut Runner, size: Size, out: &Path, goals: &mut Goals) -> String {
    let bench = runner.bin("overlay-bench");
    let Some((_, v)) = runner.run(&bench, &[size.overlay_runs.to_string()], false) else {
        return "## Overlay and bridge beside Docker\n\noverlay-bench failed: see below.\n"
            .to_owned();
    };
    let v = &v;
    let t = overlay_table(v);
    let reach = Spread::of(&numbers(v, "reach_rustnet_ms"));
    goals.check(
        "reachability after `docker run -d` from another host, p50",
        "≤ 20 ms",
        reach,
        " ms",
        reach.is_some_and(|r| r.median <= 20.0),
    );
    let sealed = Spread::of(&numbers(v, "iperf_encrypted_gbits_1500"));
    goals.check(
        "encrypted overlay (userspace WireGuard) iperf3 between hosts, MTU 1500",
        "≥ 3 Gbit/s",
        sealed,
        " Gbit/s",
        sealed.is_some_and(|r| r.median >= 3.0),
    );
    let mut s = format!(
        "## Overlay and bridge beside Docker\n\n`overlay-bench`: two simulated hosts, each with its own dockerd; rustnet's overlay (VXLAN port 4790) beside swarm's (4789) and Docker's bridge, {} runs each, alternated (iperf3: 3 to 5 runs of 5 s). Each cell: median (lowest–highest).\n\n{}",
        size.overlay_runs,
        t.render()
    );
    let cdf = |keys: &[(&str, &str)]| -> Vec<(String, Vec<f64>)> {
        keys.iter()
            .map(|(label, key)| ((*label).to_owned(), numbers(v, key)))
            .collect()
    };
    let plots = [
        (
            "docker-run.svg",
            "docker run -d",
            cdf(&[
                ("rustnet bridge", "run_rustnet_bridge_ms"),
                ("rustnet overlay", "run_overlay_ms"),
                ("Docker bridge", "run_docker_bridge_ms"),
            ]),
        ),
        (
            "reachability.svg",
            "docker run -d on A until B gets a ping reply",
            cdf(&[
                ("rustnet overlay", "reach_rustnet_ms"),
                ("swarm overlay", "reach_swarm_ms"),
            ]),
        ),
    ];
    for (file, title, series) in plots {
        match plot::latency_cdf(&out.join(file), title, &series) {
            Ok(()) => {
                let _ = writeln!(s, "\n![{title}]({file})");
            }
            Err(e) => runner.failures.push(e),
        }
    }
    s
}

fn scale_section(runner: &mut Runner, size: Size) -> String {
    let bench = runner.bin("scale-bench");
    let args: Vec<String> = size.scale.iter().map(ToString::to_string).collect();
    match runner.run(&bench, &args, true) {
        Some((stdout, _)) => format!(
            "## At size\n\n`scale-bench {}`:\n{}",
            args.join(" "),
            nest(&stdout)
        ),
        None => "## At size\n\nscale-bench failed: see below.\n".to_owned(),
    }
}

fn shell(command: &str) -> String {
    Command::new("sh")
        .args(["-c", command])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = shell("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2");
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let memory = shell("awk '/MemTotal/ {printf \"%.1f GiB\", $2 / 1048576}' /proc/meminfo");
    let kernel = shell("uname -r");
    let docker = shell("dockerd --version");
    let os = shell(". /etc/os-release && echo \"$PRETTY_NAME\"");
    format!(
        "{cpus} CPUs ({}), {memory}, {os}, Linux {kernel}; {docker}",
        cpu.trim()
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let baseline = args.iter().position(|a| a == "--baseline").map(|i| {
        let dir = args.get(i + 1).unwrap_or_else(|| usage());
        Baseline {
            cluster_bench: Path::new(dir).join("cluster-bench"),
            label: args.get(i + 2).cloned().unwrap_or_else(|| dir.clone()),
        }
    });
    let size = if quick { QUICK } else { FULL };
    let bins = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-report");
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("{}: {e}", out.display());
        std::process::exit(1);
    }
    let mut runner = Runner {
        bins,
        failures: Vec::new(),
    };
    let started = Instant::now();
    let mut goals = Goals::default();
    let sections = [
        cluster_section(&mut runner, size, baseline.as_ref(), &out, &mut goals),
        ipam_section(&mut runner, size),
        failover_section(&mut runner, size, &mut goals),
        overlay_section(&mut runner, size, &out, &mut goals),
        lan_section(&mut runner, size),
        scale_section(&mut runner, size),
    ];
    let mut report = format!(
        "# rustnet benchmark report\n\n{} form, {}; rustnet {}, release build.\n\nMachine: {}.\n\nEvery figure is from repeated runs, alternated with what it is compared with; cells give the median and, in parentheses, the lowest and highest run.\n\n",
        if quick { "Shortened" } else { "Full" },
        shell("date -u '+%Y-%m-%d %H:%M UTC'"),
        std::env::var("RUSTNET_REV").unwrap_or_else(|_| "(revision unknown)".into()),
        machine(),
    );
    let mut goal_table = Table::new(&["goal", "target", "measured", "verdict"]);
    for row in goals.0 {
        goal_table.row(row.to_vec());
    }
    let _ = writeln!(report, "## Goals\n\n{}", goal_table.render());
    for section in sections {
        let _ = writeln!(report, "{section}");
    }
    if !runner.failures.is_empty() {
        let _ = writeln!(report, "## Failures\n");
        for f in &runner.failures {
            let _ = writeln!(report, "- {f}");
        }
    }
    let _ = writeln!(
        report,
        "\nThe whole run took {:.0} minutes.",
        started.elapsed().as_secs_f64() / 60.0
    );
    let file = out.join("report.md");
    if let Err(e) = std::fs::write(&file, &report) {
        eprintln!("{}: {e}", file.display());
        std::process::exit(1);
    }
    println!("{report}");
    eprintln!("report: {}", file.display());
    if !runner.failures.is_empty() {
        std::process::exit(1);
    }
}

fn usage() -> ! {
    eprintln!("usage: bench-report [--quick] [--baseline DIR [LABEL]]");
    std::process::exit(2)
}
