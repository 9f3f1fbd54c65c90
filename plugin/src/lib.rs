//! `rustnet`: a Docker network and IPAM plugin.
//!
//! ```text
//!   dockerd ──HTTP/unix──► api (raw body ─► request::*) ──► service (IPAM) / driver (network)
//!                                                            │ write            │ reconcile
//!                                                            ▼                  ▼
//!                                                     store (Raft, redb)   host_view ─► datapath
//! ```
//!
//! Layout: `api` parses Docker's bodies into the types of `request` and
//! answers through `error`; `service` holds the store, the settings and the
//! data path and serves IPAM; `driver` serves the network driver on top of
//! it; `host_view` turns the tables into what this host's kernel should
//! hold; `datapath` is the seam to the reconcile loop of `rustnet-overlay`;
//! `naming` names interfaces; `propagate` and `docker` keep the local
//! Docker in step with the cluster; `daemon` wires it all and `config` holds
//! its settings; `cli`, `client`, `render` and `status` are `rustnet status`
//! and `rustnet cluster`.

mod api;
mod cli;
mod client;
mod config;
mod daemon;
mod datapath;
mod dns;
mod docker;
mod driver;
mod encryption;
mod error;
mod fixture;
pub mod fuzz;
mod host_view;
mod lan;
mod learn;
mod metrics;
mod naming;
mod opening;
mod propagate;
mod recent;
mod render;
mod request;
mod service;
mod status;
mod store;

use std::process::ExitCode;
use std::sync::{Mutex, MutexGuard, PoisonError};

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Locks `m`, taking its data as it is if a holder panicked: the daemon's
/// in-memory bookkeeping (recent errors, metrics, the last pass) stays
/// usable rather than failing every later caller.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Docker network plugin: bridge and VXLAN overlay networks on one
/// Raft-replicated address space.
#[derive(Debug, Parser)]
#[command(name = "rustnet", version)]
struct Cli {
    /// Log filter (tracing env-filter syntax); RUST_LOG overrides it.
    #[arg(
        long,
        env = "RUSTNET_LOG",
        default_value = "info,openraft=warn",
        global = true
    )]
    log: String,
    /// Log lines as text for people, or one JSON object per line (with
    /// each event's fields, and the request's, as fields).
    #[arg(
        long,
        env = "RUSTNET_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text,
        global = true
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

// Parsed once per process: the daemon's settings need no box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the plugin: serve Docker's network and IPAM driver protocols.
    Daemon(config::DaemonConfig),
    /// Show the cluster, this host's networks, the pools and who holds which address.
    Status(cli::StatusArgs),
    /// Change the cluster's membership.
    #[command(subcommand)]
    Cluster(cli::ClusterCmd),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff; `rustnet man | man -l -`).
    Man,
}

/// The `rustnet` command line: parses the arguments, sets up logging and
/// runs the command.
pub fn main() -> ExitCode {
    let command = ignore_empty_env(Cli::command());
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.command {
        Cmd::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "rustnet",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Cmd::Man => {
            return match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("rustnet: man: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| EnvFilter::try_new(&cli.log))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    if matches!(cli.command, Cmd::Daemon(_)) {
        rustnet_ipam::memory::limit_arenas();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("rustnet: start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Cmd::Daemon(config) => daemon::run(config).await,
            Cmd::Status(args) => cli::run(args).await,
            Cmd::Cluster(cmd) => cli::cluster(cmd).await,
            Cmd::Completions { .. } | Cmd::Man => Ok(()),
        }
    });
    // Background tasks get a moment to finish, not a say in when the
    // process ends.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match cli.log_format {
                LogFormat::Text => eprintln!("rustnet: {e:#}"),
                LogFormat::Json => tracing::error!(error = %format!("{e:#}"), "rustnet failed"),
            }
            ExitCode::FAILURE
        }
    }
}

/// A managed plugin's settings all reach the environment, the unset ones
/// as `NAME=`: an empty variable means the default, not an empty value.
fn ignore_empty_env(mut command: clap::Command) -> clap::Command {
    let empty: Vec<clap::Id> = command
        .get_arguments()
        .filter(|arg| {
            arg.get_env()
                .and_then(std::env::var_os)
                .is_some_and(|value| value.is_empty())
        })
        .map(|arg| arg.get_id().clone())
        .collect();
    for id in empty {
        command = command.mut_arg(id, |arg| arg.env(None));
    }
    let names: Vec<String> = command
        .get_subcommands()
        .map(|sub| sub.get_name().to_owned())
        .collect();
    for name in names {
        command = command.mut_subcommand(name, ignore_empty_env);
    }
    command
}
