//! Applies firewall rules through the `iptables` command, so they go to the
//! same backend (legacy or nft) as Docker's own rules; otherwise Docker's
//! DROP would still win.

use tokio::process::Command;

use crate::firewall::{
    DNAT_CHAIN, DNS_CHAIN, FILTER_CHAIN, INPUT_CHAIN, Network, POSTROUTING_CHAIN, RESOLVER_CHAIN,
    RESOLVER_OUT_CHAIN, Resolver6, ResolverAddress, SEAL_IN_CHAIN, SEAL_OUT_CHAIN, VXLAN_CHAIN,
    VxlanIngress, hooks, restore_script_with,
};
use crate::{Error, firewall6};

/// The iptables executor.
#[derive(Debug, Clone, Default)]
pub struct Iptables;

impl Iptables {
    /// Makes rustnet's chains hold exactly the rules of `networks`, and
    /// keep those of the `inherited` bridges (see
    /// [`crate::firewall::carried_rules`]); with neither, removes the
    /// chains and their hooks altogether.
    pub async fn apply(&self, networks: &[Network], inherited: &[String]) -> Result<(), Error> {
        if networks.is_empty() && inherited.is_empty() {
            self.remove().await;
            return Ok(());
        }
        let carried = if inherited.is_empty() {
            Vec::new()
        } else {
            let saved = save(V4).await.unwrap_or_default();
            crate::firewall::carried_rules(&saved, inherited, networks)
        };
        restore(V4, &restore_script_with(networks, inherited, &carried)).await?;
        ensure_hooks(V4, hooks()).await?;
        self.apply6(networks, inherited).await
    }

    /// The IPv6 side ([`crate::firewall6`]): rustnet's ip6tables chains
    /// hold the rules of the networks with an IPv6 subnet, and IPv6 is
    /// routed; with none, nothing of rustnet is in ip6tables.
    async fn apply6(&self, networks: &[Network], inherited: &[String]) -> Result<(), Error> {
        if !firewall6::wanted(networks) {
            self.remove6().await;
            return Ok(());
        }
        crate::sysctl::enable_ipv6_forward()?;
        restore(V6, &firewall6::restore_script(networks, inherited)).await?;
        ensure_hooks(V6, firewall6::hooks()).await
    }

    /// Removes rustnet's ip6tables hooks and chains, if any.
    async fn remove6(&self) {
        let listed = ["-t", "nat", "-S", POSTROUTING_CHAIN];
        if iptables(V6, &listed).await.is_err() {
            // No chain of rustnet's (or no ip6tables): nothing to remove.
            return;
        }
        let chains = [
            ("filter", FILTER_CHAIN),
            ("nat", POSTROUTING_CHAIN),
            ("nat", DNAT_CHAIN),
        ];
        remove_chains(V6, firewall6::hooks(), &chains).await;
    }

    /// Admits VXLAN from `ingress`'s members only; `None` (no overlay on
    /// this host) removes the rule. IPv4 always; IPv6 (ip6tables) when a
    /// member advertises an IPv6 address, and only then.
    pub async fn apply_vxlan_ingress(&self, ingress: Option<&VxlanIngress>) -> Result<(), Error> {
        match ingress.filter(|i| i.wants_ipv6()) {
            Some(ingress) => {
                let script = ingress.restore_script6();
                install(V6, &script, ingress.hook(), VXLAN_CHAIN).await?;
            }
            // Only a chain there is to remove: no ip6tables write else.
            None => uninstall_if_any(V6, "filter", "INPUT", VXLAN_CHAIN).await,
        }
        match ingress.and_then(|i| i.seal.as_ref()) {
            Some(seal) => {
                let [hook_in, hook_out] = seal.hooks();
                let [script_in, script_out] = seal.restore_scripts();
                install(V4, &script_in, hook_in, SEAL_IN_CHAIN).await?;
                install(V4, &script_out, hook_out, SEAL_OUT_CHAIN).await?;
            }
            None => {
                uninstall_if_any(V4, "filter", "INPUT", SEAL_IN_CHAIN).await;
                uninstall_if_any(V4, "filter", "OUTPUT", SEAL_OUT_CHAIN).await;
            }
        }
        match ingress {
            Some(ingress) => {
                install(V4, &ingress.restore_script(), ingress.hook(), VXLAN_CHAIN).await?;
                let guard = ingress.gateway_guard();
                if !guard_present(&guard).await {
                    ebtables("-A", &guard).await?;
                }
                Ok(())
            }
            None => {
                uninstall(V4, "filter", "INPUT", VXLAN_CHAIN).await;
                self.remove_gateway_guards().await;
                Ok(())
            }
        }
    }

    /// Sends queries to the resolver address where `resolver` says (see
    /// [`ResolverAddress`]); `None` removes its chains and hooks. Hooks for
    /// another address (the setting changed) go first.
    pub async fn apply_resolver(&self, resolver: Option<&ResolverAddress>) -> Result<(), Error> {
        let wanted: Vec<(&str, &str, String)> =
            resolver.map(|r| r.hooks().to_vec()).unwrap_or_default();
        for (chain, target) in [
            ("PREROUTING", RESOLVER_CHAIN),
            ("OUTPUT", RESOLVER_OUT_CHAIN),
        ] {
            let keep: Vec<String> = wanted
                .iter()
                .filter(|(_, c, _)| *c == chain)
                .map(|(_, _, rule)| rule.clone())
                .collect();
            drop_other_hooks(V4, "nat", chain, target, &keep).await;
        }
        self.apply_resolver6(resolver.and_then(|r| r.v6.as_ref()))
            .await?;
        match resolver {
            Some(resolver) => {
                restore(V4, &resolver.restore_script()).await?;
                for hook in wanted {
                    ensure(V4, hook).await?;
                }
                Ok(())
            }
            None => {
                for chain in [RESOLVER_CHAIN, RESOLVER_OUT_CHAIN] {
                    drop_chain(V4, "nat", chain).await;
                }
                Ok(())
            }
        }
    }

    /// The IPv6 resolver address's chain and hook; `None` removes them
    /// where there are any (no ip6tables write else).
    async fn apply_resolver6(&self, resolver: Option<&Resolver6>) -> Result<(), Error> {
        match resolver {
            Some(resolver) => {
                install(
                    V6,
                    &resolver.restore_script(),
                    resolver.hook(),
                    RESOLVER_CHAIN,
                )
                .await
            }
            None => {
                uninstall_if_any(V6, "nat", "PREROUTING", RESOLVER_CHAIN).await;
                Ok(())
            }
        }
    }

    /// Whether rustnet's rules are still all in place (see
    /// [`crate::firewall::intact`]); `false` when they cannot be read.
    pub async fn intact(
        &self,
        networks: &[Network],
        inherited: &[String],
        ingress: Option<&VxlanIngress>,
        resolver: Option<&ResolverAddress>,
    ) -> bool {
        let Some(saved) = save(V4).await else {
            return false;
        };
        let guarded = match ingress {
            Some(ingress) => guard_present(&ingress.gateway_guard()).await,
            None => true,
        };
        let networks6 = firewall6::wanted(networks);
        let ingress6 = ingress.filter(|i| i.wants_ipv6());
        let resolver6 = resolver.and_then(|r| r.v6.as_ref());
        let ipv6 = !(networks6 || ingress6.is_some() || resolver6.is_some())
            || save(V6).await.is_some_and(|saved| {
                (!networks6 || firewall6::intact(&saved, networks, inherited))
                    && ingress6.is_none_or(|i| i.intact_in(&saved, true))
                    && resolver6.is_none_or(|r| r.intact_in(&saved))
            });
        guarded
            && ipv6
            && crate::firewall::intact_among(&saved, networks, inherited, ingress, resolver)
    }

    /// Removes the gateway guard, whatever its device pattern and prefix
    /// were (see [`crate::firewall::gateway_guards`]).
    async fn remove_gateway_guards(&self) {
        let Ok(out) = Command::new("ebtables")
            .args(["-t", "filter", "-L", "OUTPUT"])
            .output()
            .await
        else {
            return;
        };
        for rule in crate::firewall::gateway_guards(&String::from_utf8_lossy(&out.stdout)) {
            let _ = ebtables("-D", &rule).await;
        }
    }

    /// Removes every hook and chain of rustnet; what is already gone is fine.
    pub async fn remove(&self) {
        let chains = [
            ("filter", FILTER_CHAIN),
            ("filter", INPUT_CHAIN),
            ("nat", POSTROUTING_CHAIN),
            ("nat", DNAT_CHAIN),
            ("nat", DNS_CHAIN),
        ];
        remove_chains(V4, hooks(), &chains).await;
        self.remove6().await;
    }
}

/// Writes the jumps into rustnet's chains (`hooks`). Docker creates
/// DOCKER-USER and keeps its jump first in FORWARD; if Docker has not run
/// yet (or, for IPv6, runs without ip6tables), do the same (Docker keeps
/// an existing one).
async fn ensure_hooks(
    tools: Tools,
    hooks: Vec<(&'static str, &'static str, String)>,
) -> Result<(), Error> {
    if iptables(tools, &["-t", "filter", "-L", "DOCKER-USER", "-n"])
        .await
        .is_err()
    {
        iptables(tools, &["-t", "filter", "-N", "DOCKER-USER"]).await?;
    }
    ensure(tools, ("filter", "FORWARD", "-j DOCKER-USER".to_owned())).await?;
    for hook in hooks {
        ensure(tools, hook).await?;
    }
    Ok(())
}

/// Deletes every one of the `hooks` and then the `chains`; what is
/// already gone is fine.
async fn remove_chains(
    tools: Tools,
    hooks: Vec<(&'static str, &'static str, String)>,
    chains: &[(&str, &str)],
) {
    for (table, chain, rule) in hooks {
        while delete(tools, table, chain, &rule).await.is_ok() {}
    }
    for (table, chain) in chains {
        drop_chain(tools, table, chain).await;
    }
}

/// Makes `target` hold `script`'s rules, with `hook` its one jump from
/// the hook's chain (a jump written for an earlier setting goes first).
async fn install(
    tools: Tools,
    script: &str,
    hook: (&'static str, &'static str, String),
    target: &str,
) -> Result<(), Error> {
    let (table, chain) = (hook.0, hook.1);
    drop_other_hooks(tools, table, chain, target, std::slice::from_ref(&hook.2)).await;
    restore(tools, script).await?;
    ensure(tools, hook).await
}

/// Removes chain `target` of `table` and every jump to it from `from`;
/// what is already gone is fine.
async fn uninstall(tools: Tools, table: &str, from: &str, target: &str) {
    drop_other_hooks(tools, table, from, target, &[]).await;
    drop_chain(tools, table, target).await;
}

/// [`uninstall`] where the chain exists, and nothing (no write) where it
/// does not.
async fn uninstall_if_any(tools: Tools, table: &str, from: &str, target: &str) {
    if iptables(tools, &["-t", table, "-L", target, "-n"])
        .await
        .is_ok()
    {
        uninstall(tools, table, from, target).await;
    }
}

/// Flushes and deletes `chain` of `table`; what is already gone is fine.
async fn drop_chain(tools: Tools, table: &str, chain: &str) {
    let _ = iptables(tools, &["-t", table, "-F", chain]).await;
    let _ = iptables(tools, &["-t", table, "-X", chain]).await;
}

/// Deletes every jump from `chain` to `target` but the `keep` rules (a
/// hook written for an earlier setting); what cannot be read or deleted is
/// left for the next pass.
async fn drop_other_hooks(tools: Tools, table: &str, chain: &str, target: &str, keep: &[String]) {
    let hooks = iptables_output(tools, &["-t", table, "-S", chain])
        .await
        .unwrap_or_default();
    let prefix = format!("-A {chain} ");
    let jump = format!("-j {target}");
    for line in hooks.lines().filter(|l| l.ends_with(&jump)) {
        let rule = line.trim_start_matches(&prefix);
        if !keep.iter().any(|k| k == rule) {
            let _ = delete(tools, table, chain, rule).await;
        }
    }
}

/// The commands of one address family.
#[derive(Debug, Clone, Copy)]
struct Tools {
    iptables: &'static str,
    restore: &'static str,
    save: &'static str,
}

const V4: Tools = Tools {
    iptables: "iptables",
    restore: "iptables-restore",
    save: "iptables-save",
};

const V6: Tools = Tools {
    iptables: "ip6tables",
    restore: "ip6tables-restore",
    save: "ip6tables-save",
};

async fn ensure(tools: Tools, (table, chain, rule): (&str, &str, String)) -> Result<(), Error> {
    let spec: Vec<&str> = rule.split_whitespace().collect();
    let check = [&["-t", table, "-C", chain][..], &spec].concat();
    if iptables(tools, &check).await.is_ok() {
        return Ok(());
    }
    iptables(
        tools,
        &[&["-t", table, "-I", chain, "1"][..], &spec].concat(),
    )
    .await
}

async fn delete(tools: Tools, table: &str, chain: &str, rule: &str) -> Result<(), Error> {
    let spec: Vec<&str> = rule.split_whitespace().collect();
    iptables(tools, &[&["-t", table, "-D", chain][..], &spec].concat()).await
}

async fn iptables(tools: Tools, args: &[&str]) -> Result<(), Error> {
    iptables_output(tools, args).await.map(drop)
}

/// Runs iptables (or ip6tables) and returns what it printed.
async fn iptables_output(tools: Tools, args: &[&str]) -> Result<String, Error> {
    let out = Command::new(tools.iptables)
        .arg("-w")
        .args(args)
        .output()
        .await;
    let text = out
        .as_ref()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    check(&format!("{} {}", tools.iptables, args.join(" ")), out).map(|()| text)
}

/// `iptables-save` of the filter and nat tables; `None` when it fails.
async fn save(tools: Tools) -> Option<String> {
    let mut saved = String::new();
    for table in ["filter", "nat"] {
        let out = Command::new(tools.save).args(["-t", table]).output().await;
        match out {
            Ok(out) if out.status.success() => {
                saved.push_str(&String::from_utf8_lossy(&out.stdout));
            }
            _ => return None,
        }
    }
    Some(saved)
}

/// Runs `ebtables -t filter ACTION OUTPUT RULE...`.
async fn ebtables(action: &str, rule: &[String]) -> Result<(), Error> {
    let out = Command::new("ebtables")
        .args(["-t", "filter", action, "OUTPUT"])
        .args(rule)
        .output()
        .await;
    check(&format!("ebtables {action} OUTPUT {}", rule.join(" ")), out)
}

async fn guard_present(rule: &[String]) -> bool {
    ebtables("--check", rule).await.is_ok()
}

async fn restore(tools: Tools, script: &str) -> Result<(), Error> {
    use tokio::io::AsyncWriteExt;
    let command = format!("{} --noflush", tools.restore);
    let spawn_err = |e: std::io::Error| Error::Command {
        command: command.clone(),
        message: e.to_string(),
    };
    let mut child = Command::new(tools.restore)
        .args(["-w", "--noflush"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .await
            .map_err(spawn_err)?;
    }
    check(&command, child.wait_with_output().await)
}

fn check(command: &str, out: std::io::Result<std::process::Output>) -> Result<(), Error> {
    match out {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(Error::Command {
            command: command.to_owned(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        }),
        Err(e) => Err(Error::Command {
            command: command.to_owned(),
            message: e.to_string(),
        }),
    }
}
