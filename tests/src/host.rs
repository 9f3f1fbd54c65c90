//! One simulated Docker host: its own network namespace, mount namespace
//! (private /run/docker, so its own plugin directory), dockerd and rustnet.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::engine::Engine;
use crate::run::{docker_ok, run, run_ok, rustnet_bin, within};

/// The busybox image every test container runs.
pub const IMAGE: &str = "rustnet-test/busybox:latest";
/// The plugin socket inside a host's private /run/docker.
const SOCKET: &str = "/run/docker/plugins/rustnet.sock";
/// The underlay's gateway, which is also every simulated host's resolver
/// (`nameserver` of its resolv.conf).
pub const UNDERLAY_GATEWAY: &str = "10.99.0.254";

static NEXT_INDEX: AtomicU8 = AtomicU8::new(1);

/// A simulated Docker host. Dropping it removes its containers, networks,
/// daemons, namespace and files.
#[derive(Debug)]
pub struct SimHost {
    /// The network namespace's name.
    pub netns: String,
    /// The host's underlay address (10.99.0.K).
    pub addr: String,
    dir: PathBuf,
    /// Owns the host's mount namespace, so that dockerd can be restarted.
    holder: Child,
    dockerd: Mutex<Child>,
    engine: Engine,
    index: u8,
    rustnet: Mutex<Option<Child>>,
    /// The rustnet binary this host runs, when not the one under test (a
    /// previous release, in the upgrade test).
    release: Mutex<Option<PathBuf>>,
    /// The plugin socket, as seen from the host's mount namespace.
    socket: Mutex<String>,
    underlay: String,
    veth: String,
}

/// rustnet's resolver address, which engines from 28 on need in
/// daemon.json's `dns` for names across hosts (the README's line).
pub const RESOLVER_ADDR: &str = "169.254.53.53";

/// rustnet's IPv6 resolver address, daemon.json's second `dns` entry, for
/// containers of IPv6-only networks (the README's line for them).
pub(crate) const RESOLVER_ADDR6: &str = "fd53::53";

/// How to start a simulated host: [`SimHost::spec`], then
/// [`HostSpec::start`].
#[derive(Debug, Clone)]
pub struct HostSpec {
    engine: Engine,
    tools: Vec<String>,
    resolver: Resolver,
    dockerd_args: Vec<String>,
    dns_setting: Option<bool>,
}

impl HostSpec {
    /// The Docker engine the host runs (Debian 12's by default).
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = engine;
        self
    }

    /// Extra binaries (and the libraries they load) copied into the test
    /// image's /bin.
    pub fn tools(mut self, tools: &[&str]) -> Self {
        self.tools = tools.iter().map(|t| (*t).to_owned()).collect();
        self
    }

    /// Extra dockerd arguments (say `--insecure-registry=10.99.0.0/24`).
    pub fn dockerd_args(mut self, args: &[&str]) -> Self {
        self.dockerd_args = args.iter().map(|a| (*a).to_owned()).collect();
        self
    }

    /// A host whose resolver is systemd-resolved (Ubuntu's default):
    /// /etc/resolv.conf names only the stub 127.0.0.53, the upstream is in
    /// /run/systemd/resolve/resolv.conf.
    pub fn systemd_resolved(mut self) -> Self {
        self.resolver = Resolver::SystemdResolved;
        self
    }

    /// Whether daemon.json names rustnet's resolver in `dns`; by default
    /// exactly where the engine needs it (28 and later), as the README
    /// tells users.
    pub fn dns_setting(mut self, present: bool) -> Self {
        self.dns_setting = Some(present);
        self
    }

    /// Starts the host with dockerd running and the test image imported;
    /// rustnet is started with [`SimHost::start_rustnet`].
    pub fn start(self) -> SimHost {
        let Place {
            netns,
            veth,
            addr,
            underlay,
            dir,
            index,
        } = Place::add();
        let dns_setting = self
            .dns_setting
            .unwrap_or_else(|| self.engine.needs_dns_setting());
        let holder = spawn_holder(&dir, self.resolver, dns_setting);
        let dockerd_args: Vec<&str> = self.dockerd_args.iter().map(String::as_str).collect();
        let dockerd = spawn_dockerd(self.engine, holder.id(), &netns, &dir, index, &dockerd_args);
        let host = SimHost {
            netns,
            addr,
            dir,
            holder,
            dockerd: Mutex::new(dockerd),
            engine: self.engine,
            index,
            rustnet: Mutex::new(None),
            release: Mutex::new(None),
            socket: Mutex::new(SOCKET.to_owned()),
            underlay,
            veth,
        };
        host.wait_for_dockerd();
        let tools: Vec<&str> = self.tools.iter().map(String::as_str).collect();
        host.import_image(&tools);
        host
    }
}

impl SimHost {
    /// How to start a host: Debian 12's engine, plain resolv.conf, no
    /// extra tools or dockerd arguments, until the spec says otherwise.
    pub fn spec() -> HostSpec {
        HostSpec {
            engine: Engine::Bookworm,
            tools: Vec::new(),
            resolver: Resolver::Plain,
            dockerd_args: Vec::new(),
            dns_setting: None,
        }
    }

    /// Starts a host with Debian 12's engine, dockerd running and the test
    /// image imported; rustnet is started with [`SimHost::start_rustnet`].
    pub fn start() -> Self {
        Self::spec().start()
    }

    /// Like [`SimHost::start`], on `engine`.
    pub fn start_on(engine: Engine) -> Self {
        Self::spec().engine(engine).start()
    }

    /// The engine this host runs.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Sets the MTU of this host's underlay link, both ends.
    pub fn set_underlay_mtu(&self, mtu: u32) {
        let mtu = mtu.to_string();
        run_ok(Command::new("ip").args(["link", "set", &self.veth, "mtu", &mtu]));
        run_ok(Command::new("ip").args(["-n", &self.netns, "link", "set", "ul0", "mtu", &mtu]));
    }

    /// The host's state directory (logs, dockerd data, rustnet state).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn dockerd_slot(&self) -> std::sync::MutexGuard<'_, Child> {
        self.dockerd
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A command run inside this host's network and mount namespaces.
    pub fn cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-m", "-t", &self.holder.id().to_string()])
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg(program);
        cmd
    }

    /// Stops dockerd (SIGTERM, as `systemctl stop docker` does) and starts
    /// it again with `args` (say `--live-restore`); returns how long the new
    /// dockerd took to answer its API.
    pub fn restart_dockerd(&self, args: &[&str]) -> Duration {
        let mut dockerd = self.dockerd_slot();
        stop_child(&mut dockerd, Duration::from_secs(30));
        self.stop_containerd();
        let started = Instant::now();
        *dockerd = spawn_dockerd(
            self.engine,
            self.holder.id(),
            &self.netns,
            &self.dir,
            self.index,
            args,
        );
        drop(dockerd);
        self.wait_for_dockerd();
        started.elapsed()
    }

    /// Waits for the containerd the stopped dockerd ran to exit, and kills
    /// it if it does not. dockerd stops it on its way out, but gives up
    /// after a while on a loaded machine; a new dockerd then takes the
    /// dying one over ("containerd is still running") and gives up itself
    /// when it never answers ("timeout waiting for containerd to start").
    /// Containers outlive it in their shims.
    fn stop_containerd(&self) {
        let pid_file = self.dir.join("exec/containerd/containerd.pid");
        let Ok(pid) = std::fs::read_to_string(&pid_file) else {
            return;
        };
        let pid = pid.trim();
        // Alive (not a zombie) and containerd: "PID (containerd) S ...".
        let running = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.split_once(") ").is_some_and(|(name, rest)| {
                    name.ends_with("(containerd") && !rest.starts_with('Z')
                })
            })
        };
        if !within(15, || !running()) {
            eprintln!(
                "{}: containerd {pid} outlived dockerd; killing it",
                self.netns
            );
            let _ = Command::new("kill").args(["-KILL", pid]).status();
            assert!(
                within(10, || !running()),
                "containerd {pid} on {} survives SIGKILL",
                self.netns
            );
        }
    }

    /// Installs rustnet as a managed plugin, with `docker-plugin/install.sh`
    /// as the README says (the plugin folder built from the binary under
    /// test), and waits until it answers. `settings` go to `docker plugin
    /// set`, after the ones that point it at this host.
    pub fn install_plugin(&self, settings: &[&str]) {
        let folder = plugin_folder();
        let own = [
            format!("RUSTNET_ADVERTISE_ADDR={}", self.addr),
            format!("docker-socket.source={}/docker.sock", self.dir.display()),
            format!("state.source={}/state", self.dir.display()),
            "RUSTNET_LOG=info,rustnet=debug,openraft=warn".to_owned(),
        ];
        let settings: Vec<&str> = own
            .iter()
            .map(String::as_str)
            .chain(settings.iter().copied())
            .collect();
        self.run_install(&folder, &settings);
    }

    /// Upgrades the managed plugin as the README says: a freshly built
    /// plugin folder, `docker-plugin/install.sh` with no settings (the
    /// installed plugin's are kept).
    pub fn upgrade_plugin(&self) {
        let folder = self.dir.join("plugin-rebuilt");
        build_plugin(&folder);
        self.run_install(&folder, &[]);
    }

    /// `docker-plugin/install.sh --dir FOLDER SETTINGS...` against this
    /// host's dockerd, then waits for the plugin.
    fn run_install(&self, folder: &Path, settings: &[&str]) {
        let out = run(Command::new(repo_root().join("docker-plugin/install.sh"))
            .env("DOCKER_HOST", self.docker_host())
            .arg("--dir")
            .arg(folder)
            .args(settings));
        if let Err(e) = out {
            panic!(
                "install the plugin on {}: {e}\n{}",
                self.netns,
                self.log_tail("dockerd.log")
            );
        }
        self.wait_for_plugin();
    }

    /// The managed plugin's id.
    pub fn plugin_id(&self) -> String {
        docker_ok(
            self.docker(&["plugin", "inspect", "-f", "{{.Id}}", "rustnet"]),
            "docker plugin inspect",
        )
    }

    /// Points the tests at the managed plugin's socket and waits until the
    /// plugin answers (after install, enable or a dockerd restart).
    pub fn wait_for_plugin(&self) {
        let id = self.plugin_id();
        // dockerd keeps managed plugins' sockets under /run/docker/plugins,
        // whatever its --exec-root.
        *self.socket_slot() = format!("/run/docker/plugins/{id}/rustnet.sock");
        let started = Instant::now();
        while let Err(e) = self.try_status() {
            assert!(
                started.elapsed() < Duration::from_secs(40),
                "the rustnet plugin on {} not ready after 40 s: {e}\n{}",
                self.netns,
                self.log_tail("dockerd.log")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn socket_slot(&self) -> std::sync::MutexGuard<'_, String> {
        self.socket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// This host's dockerd, as `DOCKER_HOST` names it.
    pub fn docker_host(&self) -> String {
        format!("unix://{}/docker.sock", self.dir.display())
    }

    /// `docker ARGS` against this host's dockerd.
    pub fn docker(&self, args: &[&str]) -> Result<String, String> {
        run(Command::new("docker")
            .env("DOCKER_HOST", self.docker_host())
            .args(args))
    }

    /// One Engine API call at API version 1.41 (every tested engine takes
    /// it), as an old client makes it: the reply's status and body.
    pub fn engine_api(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> Result<(u16, String), String> {
        use std::io::{Read, Write};
        let socket = self.dir.join("docker.sock");
        let mut stream = std::os::unix::net::UnixStream::connect(&socket)
            .map_err(|e| format!("{}: {e}", socket.display()))?;
        let request = format!(
            "{method} /v1.41{path} HTTP/1.0\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut reply = String::new();
        stream
            .read_to_string(&mut reply)
            .map_err(|e| e.to_string())?;
        let status = reply
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not an HTTP reply: {reply}"))?;
        let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        Ok((status, body.to_owned()))
    }

    /// `docker ARGS`, given up after `secs` seconds.
    pub fn docker_within(&self, secs: u32, args: &[&str]) -> Result<String, String> {
        run(Command::new("timeout")
            .arg(secs.to_string())
            .arg("docker")
            .env("DOCKER_HOST", self.docker_host())
            .args(args))
    }

    /// `docker network create -d DRIVER --ipam-driver DRIVER EXTRA... NAME`;
    /// panics on failure.
    pub fn create_network(&self, driver: &str, name: &str, extra: &[&str]) {
        docker_ok(
            self.try_create_network(driver, name, extra),
            &format!("create {name} on {}", self.netns),
        );
    }

    /// [`Self::create_network`], answering Docker's output or its error.
    pub fn try_create_network(
        &self,
        driver: &str,
        name: &str,
        extra: &[&str],
    ) -> Result<String, String> {
        let args = [
            &["network", "create", "-d", driver, "--ipam-driver", driver],
            extra,
            &[name],
        ]
        .concat();
        self.docker(&args)
    }

    /// `docker network create -d rustnet --ipam-driver rustnet -o
    /// mode=overlay --subnet SUBNET EXTRA... NAME`; panics on failure.
    pub fn create_overlay(&self, name: &str, subnet: &str, extra: &[&str]) {
        let args = [&["-o", "mode=overlay", "--subnet", subnet], extra].concat();
        self.create_network("rustnet", name, &args);
    }

    /// Whether `container` gets a reply to one ping to `target` within
    /// `secs` seconds.
    pub fn pings_within(&self, container: &str, target: &str, secs: u32) -> bool {
        let secs = secs.to_string();
        self.exec(container, &["ping", "-c", "1", "-W", &secs, target])
            .is_ok()
    }

    /// Panics unless `container` gets a reply to one ping to `target`
    /// within 2 s.
    pub fn assert_pings(&self, container: &str, target: &str) {
        let out = self.exec(container, &["ping", "-c", "1", "-W", "2", target]);
        assert!(
            out.is_ok(),
            "{container} on {} cannot ping {target}: {out:?}",
            self.netns
        );
    }

    /// `docker run -d --name NAME --network NET EXTRA... IMAGE CMD...`
    /// (`sleep 3600` without a command); panics on failure.
    pub fn run_container(&self, name: &str, net: &str, extra: &[&str], cmd: &[&str]) {
        let cmd: &[&str] = if cmd.is_empty() {
            &["sleep", "3600"]
        } else {
            cmd
        };
        let args = [
            &["run", "-d", "--name", name, "--network", net],
            extra,
            &[IMAGE],
            cmd,
        ]
        .concat();
        if let Err(e) = self.docker(&args) {
            panic!("run {name} on {}: {e}", self.netns);
        }
    }

    /// How long `docker run -d --name NAME --network NET IMAGE sleep 600`
    /// takes to return; the container is removed after. Panics on failure.
    pub fn time_run(&self, net: &str, name: &str) -> Duration {
        let started = std::time::Instant::now();
        self.run_container(name, net, &[], &["sleep", "600"]);
        let elapsed = started.elapsed();
        if let Err(e) = self.docker(&["rm", "-f", name]) {
            panic!("rm {name} on {}: {e}", self.netns);
        }
        elapsed
    }

    /// A container's address on `net`.
    pub fn ip_of(&self, container: &str, net: &str) -> String {
        let format = format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}");
        self.docker(&["inspect", "-f", &format, container])
            .unwrap_or_else(|e| panic!("inspect {container}: {e}"))
    }

    /// A container's IPv6 address on `net` (panics without one).
    pub fn ip6_of(&self, container: &str, net: &str) -> String {
        let format =
            format!("{{{{(index .NetworkSettings.Networks \"{net}\").GlobalIPv6Address}}}}");
        let ip = self
            .docker(&["inspect", "-f", &format, container])
            .unwrap_or_else(|e| panic!("inspect {container}: {e}"));
        let ip = ip.trim().to_owned();
        assert!(
            ip.contains(':'),
            "{container} has no IPv6 address on {net}: {ip:?}"
        );
        ip
    }

    /// Whether `container` gets a ping reply over IPv6 from `target` (an
    /// address or a name) within `secs` seconds: a new address is
    /// tentative (duplicate address detection) for a moment.
    pub fn pings6_within(&self, container: &str, target: &str, secs: u64) -> bool {
        within(secs, || {
            self.exec(container, &["ping", "-6", "-c", "1", "-W", "2", target])
                .is_ok()
        })
    }

    /// Panics if `container`'s eth0 has an IPv4 address (an IPv6-only
    /// network's container).
    pub fn assert_no_ipv4(&self, container: &str) {
        let v4 = self
            .exec(container, &["ip", "-4", "addr", "show", "eth0"])
            .unwrap_or_else(|e| panic!("ip -4 in {container}: {e}"));
        assert!(!v4.contains("inet "), "IPv4 in {container}: {v4}");
    }

    /// This host's IPv6 address on the underlay, fd99::K for 10.99.0.K
    /// (once [`Self::add_underlay6`] gave it).
    pub fn underlay6(&self) -> String {
        let index = self.addr.rsplit('.').next().unwrap_or_default();
        format!("fd99::{index}")
    }

    /// Gives the underlay interface its IPv6 address too (no duplicate
    /// address detection: usable at once).
    pub fn add_underlay6(&self) {
        let address = format!("{}/64", self.underlay6());
        run(self
            .cmd("ip")
            .args(["-6", "addr", "add", &address, "dev", "ul0", "nodad"]))
        .unwrap_or_else(|e| panic!("underlay IPv6 address on {}: {e}", self.netns));
    }

    /// On an engine before 28, which ignores `--ipv4=false`: creates a
    /// rustnet network `name` with it and `extra` as a user would, panics
    /// unless it has an IPv4 and an IPv6 subnet, and removes it.
    pub fn assert_ipv4_false_ignored(&self, name: &str, extra: &[&str]) {
        self.create_network(
            "rustnet",
            name,
            &[&["--ipv4=false", "--ipv6"], extra].concat(),
        );
        let format = "{{range .IPAM.Config}}{{.Subnet}} {{end}}";
        let subnets = docker_ok(
            self.docker(&["network", "inspect", "-f", format, name]),
            "subnets",
        );
        assert!(subnets.contains('.') && subnets.contains(':'), "{subnets}");
        docker_ok(self.docker(&["network", "rm", name]), "network rm");
    }

    /// Whether this host's Docker has network `name` (an overlay created
    /// on another host, once it got here).
    pub fn has_network(&self, name: &str) -> bool {
        self.docker(&["network", "inspect", name]).is_ok()
    }

    /// `ip -d link show type vxlan`: this host's VXLAN devices in detail.
    pub fn vxlan_details(&self) -> String {
        run(self.cmd("ip").args(["-d", "link", "show", "type", "vxlan"])).unwrap_or_default()
    }

    /// The VNI of this host's first VXLAN device (panics without one).
    pub fn vxlan_vni(&self) -> String {
        let details = self.vxlan_details();
        details
            .split_whitespace()
            .skip_while(|w| *w != "id")
            .nth(1)
            .unwrap_or_else(|| panic!("no VXLAN device on {}: {details}", self.netns))
            .to_owned()
    }

    /// Packets the rule of rustnet's VXLAN ingress chain with the word
    /// `word` (its target, a member's address) took, in `tool`'s
    /// (`iptables` or `ip6tables`) counters; 0 without such a rule.
    pub fn vxlan_ingress_packets(&self, tool: &str, word: &str) -> u64 {
        run(self
            .cmd(tool)
            .args(["-v", "-x", "-n", "-L", "RUSTNET-VXLAN"]))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|words| words.contains(&word))
        .and_then(|words| words.first()?.parse().ok())
        .unwrap_or(0)
    }

    /// Makes this host (no member of the cluster) send VXLAN frames of
    /// `vni` to `remote` on `port`, from `local` (`None`: the kernel's
    /// choice), through a device `vx0` holding `address`: an intruder on
    /// the underlay.
    pub fn add_vxlan_sender(
        &self,
        vni: &str,
        local: Option<&str>,
        remote: &str,
        port: &str,
        address: &str,
    ) {
        let ip = |args: &[&str]| {
            run(self.cmd("ip").args(args)).unwrap_or_else(|e| panic!("ip {args:?}: {e}"))
        };
        let mut add = vec!["link", "add", "vx0", "type", "vxlan", "id", vni];
        if let Some(local) = local {
            add.extend(["local", local]);
        }
        add.extend(["remote", remote, "dstport", port, "dev", "ul0"]);
        ip(&add);
        ip(&["addr", "add", address, "dev", "vx0"]);
        ip(&["link", "set", "vx0", "up"]);
    }

    /// Starts recording every packet on this host's underlay interface
    /// (tcpdump, whole packets): what went on the wire from and to it.
    pub fn capture_underlay(&self, name: &str) -> Capture {
        let path = self.dir.join(format!("{name}.pcap"));
        let child = self
            .cmd("tcpdump")
            .args(["-i", "ul0", "-n", "--immediate-mode", "-U", "-s", "0", "-w"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(
                File::create(path.with_extension("log"))
                    .unwrap_or_else(|e| panic!("tcpdump log: {e}")),
            )
            .spawn()
            .unwrap_or_else(|e| panic!("tcpdump on {}: {e}", self.netns));
        // tcpdump writes the file's header once it listens.
        let started = Instant::now();
        while std::fs::metadata(&path).map_or(0, |m| m.len()) == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "tcpdump on {} did not start",
                self.netns
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Capture { child, path }
    }

    /// Panics unless three pings from this host's root namespace to
    /// `target` (through an intruder's VXLAN device) all go unanswered.
    pub fn assert_no_reply_from(&self, target: &str, what: &str) {
        let out = run(self
            .cmd("busybox")
            .args(["ping", "-c", "3", "-W", "1", target]));
        assert!(
            out.as_ref()
                .is_err_and(|e| e.contains("0 packets received")),
            "{what} reached {target}, or ping did not run: {out:?}"
        );
    }

    /// `docker exec CONTAINER CMD...`.
    pub fn exec(&self, container: &str, cmd: &[&str]) -> Result<String, String> {
        self.docker(&[&["exec", container], cmd].concat())
    }

    /// What `nslookup NAME` in `container` resolves NAME to (its addresses
    /// after the "Name:" line), or the failure.
    pub fn lookup(&self, container: &str, name: &str) -> Result<Vec<String>, String> {
        let out = self.exec(container, &["nslookup", name])?;
        let answer = out
            .split_once("Name:")
            .map(|(_, rest)| rest)
            .ok_or_else(|| format!("no answer for {name}: {out}"))?;
        Ok(answer
            .split_whitespace()
            .filter(|w| w.parse::<std::net::Ipv4Addr>().is_ok())
            .map(str::to_owned)
            .collect())
    }

    /// Starts (or restarts) this host's rustnet daemon with extra settings
    /// and waits until it answers.
    pub fn start_rustnet(&self, env: &[(&str, &str)]) {
        self.spawn_rustnet(env);
        let started = Instant::now();
        while let Err(e) = self.try_status() {
            assert!(
                started.elapsed() < Duration::from_secs(40),
                "rustnet on {} not ready after 40 s: {e}\n{}",
                self.netns,
                self.log_tail("rustnet.log")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `binary` as this host's rustnet (daemon and CLI) from its next
    /// start on; `None`: the binary under test.
    pub fn use_rustnet(&self, binary: Option<PathBuf>) {
        *self
            .release
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = binary;
    }

    /// The rustnet binary this host runs.
    pub fn rustnet_bin(&self) -> PathBuf {
        self.release
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .unwrap_or_else(rustnet_bin)
    }

    /// Starts this host's rustnet daemon without waiting for it.
    pub fn spawn_rustnet(&self, env: &[(&str, &str)]) {
        let mut slot = self.rustnet_slot();
        assert!(slot.is_none(), "rustnet already running on {}", self.netns);
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("rustnet.log"))
            .unwrap_or_else(|e| panic!("open rustnet.log: {e}"));
        let mut cmd = self.cmd(&self.rustnet_bin().display().to_string());
        cmd.arg("daemon")
            .env("RUSTNET_SOCKET", SOCKET)
            .env("RUSTNET_STATE_DIR", self.dir.join("state"))
            .env("RUSTNET_DOCKER_SOCKET", self.dir.join("docker.sock"))
            .env("RUSTNET_ADVERTISE_ADDR", &self.addr)
            .env("RUSTNET_LOG", "info,rustnet=debug,openraft=warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        *slot = Some(cmd.spawn().unwrap_or_else(|e| panic!("spawn rustnet: {e}")));
    }

    /// How this host's rustnet daemon ended, if it did within `secs`.
    pub fn rustnet_exit(&self, secs: u64) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let mut slot = self.rustnet_slot();
            let status = slot.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if status.is_some() {
                slot.take();
                return status;
            }
            drop(slot);
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `script` with `sh -c` in this host's mount and network
    /// namespaces (where its dockerd and rustnet see their files).
    pub fn sh(&self, script: &str) -> Result<String, String> {
        run(self.cmd("sh").args(["-c", script]))
    }

    /// The pid of the rustnet daemon this host started (not a managed
    /// plugin's), while it runs.
    pub fn rustnet_pid(&self) -> Option<u32> {
        self.rustnet_slot().as_ref().map(Child::id)
    }

    /// Kills rustnet with SIGKILL, as a crash would.
    pub fn kill_rustnet(&self) {
        if let Some(mut child) = self.rustnet_slot().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops rustnet with SIGTERM and waits for it.
    pub fn stop_rustnet(&self) {
        if let Some(mut child) = self.rustnet_slot().take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn rustnet_slot(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.rustnet
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The plugin socket inside this host's mount namespace.
    pub fn socket(&self) -> String {
        self.socket_slot().clone()
    }

    /// `rustnet status --json`, or why it failed.
    pub fn try_status(&self) -> Result<Value, String> {
        let socket = self.socket();
        let out = run(self
            .cmd(&self.rustnet_bin().display().to_string())
            .args(["status", "--json", "--socket", &socket]))?;
        serde_json::from_str(&out).map_err(|e| format!("status is not JSON ({e}): {out}"))
    }

    /// The cluster's join token, as `rustnet status --token` shows it here.
    pub fn join_token(&self) -> String {
        let socket = self.socket();
        run(self
            .cmd(&self.rustnet_bin().display().to_string())
            .args(["status", "--token", "--socket", &socket]))
        .unwrap_or_else(|e| panic!("rustnet status --token on {}: {e}", self.netns))
    }

    /// Starts rustnet on this host, a new cluster, then on each of `others`
    /// joined to it, one after another; answers how to join it again.
    pub fn start_cluster(&self, others: &[&Self]) -> Joining {
        self.start_rustnet(&[]);
        let joining = Joining {
            join: format!("{}:7950", self.addr),
            token: self.join_token(),
        };
        for host in others {
            host.start_rustnet(&joining.env());
        }
        joining
    }

    /// `rustnet status --json` on this host.
    pub fn status(&self) -> Value {
        self.try_status()
            .unwrap_or_else(|e| panic!("rustnet status on {}: {e}", self.netns))
    }

    /// The last lines of one of the host's logs.
    pub fn log_tail(&self, name: &str) -> String {
        let text = self.log(name);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The whole of this host's log `name` (say `rustnet.log`); empty when
    /// there is none yet.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    fn wait_for_dockerd(&self) {
        let started = Instant::now();
        while self
            .docker(&["version", "--format", "{{.Server.Version}}"])
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "dockerd on {} did not start:\n{}",
                self.netns,
                self.log_tail("dockerd.log")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Imports a busybox image built from the host's busybox-static (no
    /// registry is reachable).
    fn import_image(&self, tools: &[&str]) {
        let root = self.dir.join("image");
        std::fs::create_dir_all(root.join("bin")).unwrap_or_else(|e| panic!("image dir: {e}"));
        for dir in ["tmp", "etc", "proc", "sys", "dev", "root"] {
            std::fs::create_dir_all(root.join(dir)).unwrap_or_else(|e| panic!("image dir: {e}"));
        }
        run_ok(Command::new("chmod").arg("1777").arg(root.join("tmp")));
        run_ok(
            Command::new("cp")
                .arg("/bin/busybox")
                .arg(root.join("bin/busybox")),
        );
        let applets = run_ok(Command::new("/bin/busybox").arg("--list"));
        for applet in applets.lines().filter(|a| *a != "busybox") {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
        for tool in tools {
            copy_with_libraries(Path::new(tool), &root);
        }
        let tar = self.dir.join("image.tar");
        run_ok(
            Command::new("tar")
                .arg("-C")
                .arg(&root)
                .arg("-cf")
                .arg(&tar)
                .arg("."),
        );
        let tar = tar.display().to_string();
        self.docker(&["import", "--change", "CMD [\"sh\"]", &tar, IMAGE])
            .unwrap_or_else(|e| panic!("docker import: {e}"));
    }

    /// Removes every container and every user-defined network.
    pub fn reset(&self) {
        if let Ok(ids) = self.docker(&["ps", "-aq"]) {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = self.docker(&[&["rm", "-f"], ids.as_slice()].concat());
            }
        }
        if let Ok(nets) = self.docker(&["network", "ls", "--filter", "type=custom", "-q"]) {
            for id in nets.split_whitespace() {
                let _ = self.docker(&["network", "rm", id]);
            }
        }
    }
}

impl Drop for SimHost {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("=== {} ran {}", self.netns, self.engine);
            eprintln!(
                "=== {} dockerd.log\n{}",
                self.netns,
                self.log_tail("dockerd.log")
            );
            eprintln!(
                "=== {} rustnet.log\n{}",
                self.netns,
                self.log_tail("rustnet.log")
            );
        }
        self.reset();
        self.stop_rustnet();
        let _ = self.docker(&["plugin", "rm", "-f", "rustnet"]);
        stop_child(&mut self.dockerd_slot(), Duration::from_secs(20));
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        remove_place(&self.netns, &self.veth, &self.underlay, &self.dir);
    }
}

/// How a host joins a cluster: a member's peer address and the join token.
#[derive(Debug, Clone)]
pub struct Joining {
    join: String,
    token: String,
}

impl Joining {
    /// `RUSTNET_JOIN` and `RUSTNET_JOIN_TOKEN`, for `start_rustnet`.
    pub fn env(&self) -> [(&str, &str); 2] {
        [
            ("RUSTNET_JOIN", self.join.as_str()),
            ("RUSTNET_JOIN_TOKEN", self.token.as_str()),
        ]
    }
}

/// A host's place on the underlay: its network namespace with address
/// 10.99.0.K on a veth to the underlay bridge, and its directory.
pub(crate) struct Place {
    pub(crate) netns: String,
    pub(crate) veth: String,
    pub(crate) addr: String,
    pub(crate) underlay: String,
    pub(crate) dir: PathBuf,
    pub(crate) index: u8,
}

impl Place {
    pub(crate) fn add() -> Self {
        crate::require_root();
        let index = NEXT_INDEX.fetch_add(1, Ordering::SeqCst);
        assert!(index < 250, "at most 249 simulated hosts per process");
        let pid = std::process::id();
        let underlay = ensure_underlay(pid);
        let netns = format!("rn-{pid}-{index}");
        let veth = format!("rnv{}x{index}", pid % 1_000_000);
        let addr = format!("10.99.0.{index}");
        let dir = PathBuf::from(format!("/tmp/rustnet-e2e/{netns}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        run_ok(Command::new("ip").args(["netns", "add", &netns]));
        for args in [
            vec!["-n", &netns, "link", "set", "lo", "up"],
            vec![
                "link", "add", &veth, "type", "veth", "peer", "name", "ul0", "netns", &netns,
            ],
            vec!["link", "set", &veth, "master", &underlay, "up"],
            vec![
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "ul0",
            ],
            vec!["-n", &netns, "link", "set", "ul0", "up"],
            vec![
                "-n",
                &netns,
                "route",
                "add",
                "default",
                "via",
                UNDERLAY_GATEWAY,
            ],
        ] {
            run_ok(Command::new("ip").args(&args));
        }
        Self {
            netns,
            veth,
            addr,
            underlay,
            dir,
            index,
        }
    }
}

/// Removes a host's namespace, veth and directory; the last host of this
/// process removes the underlay.
pub(crate) fn remove_place(netns: &str, veth: &str, underlay: &str, dir: &Path) {
    let _ = Command::new("ip").args(["netns", "del", netns]).status();
    let _ = Command::new("ip").args(["link", "del", veth]).status();
    // RUSTNET_E2E_KEEP=1 keeps each host's directory (its logs) for a look.
    if std::env::var_os("RUSTNET_E2E_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(dir);
    }
    let hosts = run(Command::new("ip").args(["-o", "link", "show", "master", underlay]))
        .unwrap_or_default();
    if hosts.trim().is_empty() {
        let _ = std::fs::remove_dir_all(format!("/tmp/rustnet-e2e/plugin-{}", std::process::id()));
        let _ = Command::new("ip").args(["link", "del", underlay]).status();
        let _ = Command::new("iptables")
            .args([
                "-D", "FORWARD", "-i", underlay, "-o", underlay, "-j", "ACCEPT",
            ])
            .status();
    }
}

/// Copies a dynamically linked binary into `root`'s /bin and the libraries
/// `ldd` lists to the same paths under `root`.
fn copy_with_libraries(binary: &Path, root: &Path) {
    let name = binary
        .file_name()
        .unwrap_or_else(|| panic!("{} has no file name", binary.display()));
    run_ok(
        Command::new("cp")
            .arg(binary)
            .arg(root.join("bin").join(name)),
    );
    let libraries = run_ok(Command::new("ldd").arg(binary));
    for library in libraries.split_whitespace().filter(|w| w.starts_with('/')) {
        let target = root.join(library.trim_start_matches('/'));
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        }
        run_ok(Command::new("cp").arg("-L").arg(library).arg(&target));
    }
}

/// SIGTERM, then SIGKILL after `patience`.
fn stop_child(child: &mut Child, patience: Duration) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline && !matches!(child.try_wait(), Ok(Some(_))) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// How a simulated host finds its upstream resolver (the test upstream on
/// the underlay gateway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolver {
    /// /etc/resolv.conf names it.
    Plain,
    /// /etc/resolv.conf names systemd-resolved's stub, whose own file
    /// names it.
    SystemdResolved,
}

/// A process that holds the host's private mount namespace, whose
/// /run/docker, /etc/docker and /etc/resolv.conf (and for systemd-resolved
/// /run/systemd) are its own. With `dns_setting`, its
/// /etc/docker/daemon.json names rustnet's resolver in `dns`.
fn spawn_holder(dir: &Path, resolver: Resolver, dns_setting: bool) -> Child {
    let ready = dir.join("mounts-ready");
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path.display().to_string()
    };
    let upstream = format!("nameserver {UNDERLAY_GATEWAY}\n");
    let resolv = match resolver {
        Resolver::Plain => write("resolv.conf", upstream.clone()),
        Resolver::SystemdResolved => write("resolv.conf", "nameserver 127.0.0.53\n".into()),
    };
    let systemd = match resolver {
        Resolver::Plain => String::new(),
        Resolver::SystemdResolved => format!(
            "mkdir -p /run/systemd; mount -t tmpfs tmpfs /run/systemd; \
             mkdir /run/systemd/resolve; cp {} /run/systemd/resolve/resolv.conf; ",
            write("systemd-resolv.conf", upstream)
        ),
    };
    let daemon_json = if dns_setting {
        format!(
            "cp {} /etc/docker/daemon.json; ",
            write(
                "daemon.json",
                format!("{{\"dns\": [\"{RESOLVER_ADDR}\", \"{RESOLVER_ADDR6}\"]}}\n")
            )
        )
    } else {
        String::new()
    };
    let script = format!(
        "set -e; mkdir -p /run/docker /etc/docker; \
         mount -t tmpfs tmpfs /run/docker; mount -t tmpfs tmpfs /etc/docker; \
         {daemon_json}mount --bind {resolv} /etc/resolv.conf; {systemd}\
         mkdir -p /run/docker/plugins; touch {}; exec sleep infinity",
        ready.display()
    );
    let child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn the mount namespace holder: {e}"));
    crate::wait_until("the host's mount namespace", 10, || ready.exists());
    child
}

/// dockerd inside `netns` and the holder's mount namespace. `nsenter
/// --net`, not `ip netns exec`: the latter remounts /sys and dockerd then
/// fails ("Devices cgroup isn't mounted").
fn spawn_dockerd(
    engine: Engine,
    holder: u32,
    netns: &str,
    dir: &Path,
    index: u8,
    extra: &[&str],
) -> Child {
    let d = dir.display();
    let log = File::options()
        .create(true)
        .append(true)
        .open(dir.join("dockerd.log"))
        .unwrap_or_else(|e| panic!("dockerd.log: {e}"));
    let err = log
        .try_clone()
        .unwrap_or_else(|e| panic!("dockerd.log: {e}"));
    // A fetched engine's own docker-proxy and docker-init come first.
    let mut path: Vec<PathBuf> = engine.bin_dirs().into_iter().flatten().collect();
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let path = std::env::join_paths(path).unwrap_or_else(|e| panic!("PATH: {e}"));
    Command::new("nsenter")
        .args(["-m", "-t", &holder.to_string()])
        .arg(format!("--net=/run/netns/{netns}"))
        .arg(engine.dockerd())
        .env("PATH", path)
        .arg(format!("--data-root={d}/data"))
        .arg(format!("--exec-root={d}/exec"))
        .arg(format!("--host=unix://{d}/docker.sock"))
        .arg(format!("--pidfile={d}/docker.pid"))
        .arg(format!("--bip=172.30.{index}.1/24"))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn dockerd: {e}"))
}

/// The repository's root.
fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The managed-plugin folder, built once per test process from the binary
/// under test with `docker-plugin/build.sh`.
fn plugin_folder() -> PathBuf {
    static FOLDER: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FOLDER
        .get_or_init(|| {
            let folder = PathBuf::from(format!("/tmp/rustnet-e2e/plugin-{}", std::process::id()));
            build_plugin(&folder);
            folder
        })
        .clone()
}

/// `docker-plugin/build.sh FOLDER` with the binary under test.
fn build_plugin(folder: &Path) {
    run_ok(
        Command::new(repo_root().join("docker-plugin/build.sh"))
            .env("RUSTNET_BIN", rustnet_bin())
            .arg(folder),
    );
}

/// The underlay bridge of this test process, created once; stale bridges
/// of dead test processes are removed first.
fn ensure_underlay(pid: u32) -> String {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let name = format!("rnul-{pid}");
    let links = run_ok(Command::new("ip").args(["-o", "link", "show", "type", "bridge"]));
    if links.contains(&format!(" {name}:")) {
        return name;
    }
    for stale in links
        .split_whitespace()
        .filter_map(|w| w.strip_suffix(':'))
        .filter(|w| w.starts_with("rnul-"))
    {
        let _ = Command::new("ip").args(["link", "del", stale]).status();
    }
    run_ok(Command::new("ip").args(["link", "add", &name, "type", "bridge"]));
    run_ok(Command::new("ip").args([
        "addr",
        "add",
        &format!("{UNDERLAY_GATEWAY}/24"),
        "dev",
        &name,
    ]));
    run_ok(Command::new("ip").args(["link", "set", &name, "up"]));
    crate::upstream::serve(
        UNDERLAY_GATEWAY
            .parse()
            .unwrap_or_else(|e| panic!("{UNDERLAY_GATEWAY}: {e}")),
    );
    // A dockerd in the root namespace sets FORWARD to DROP; let the
    // underlay's own traffic through.
    run_ok(
        Command::new("iptables").args(["-I", "FORWARD", "-i", &name, "-o", &name, "-j", "ACCEPT"]),
    );
    name
}

/// Packets recorded on an underlay interface (see
/// [`SimHost::capture_underlay`]).
#[derive(Debug)]
pub struct Capture {
    child: Child,
    path: PathBuf,
}

impl Capture {
    /// Stops recording once tcpdump has written what the kernel handed it
    /// (the file has not grown for 300 ms, or 5 s passed: an interrupted
    /// tcpdump drops what it has not read yet, and on a loaded machine the
    /// last packets of an exchange are often among them); the pcap file's
    /// bytes (headers and whole packets).
    pub fn stop(mut self) -> Vec<u8> {
        let size = || std::fs::metadata(&self.path).map_or(0, |m| m.len());
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = size();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(300));
            let now = size();
            if now == last {
                break;
            }
            last = now;
        }
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        std::fs::read(&self.path).unwrap_or_else(|e| panic!("read {}: {e}", self.path.display()))
    }
}

/// Whether `needle` occurs in `haystack`.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
