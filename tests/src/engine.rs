//! The Docker engines a simulated host can run: Debian 12's own (20.10,
//! the system's `dockerd`) and the newer ones of Debian's trixie (26.x)
//! and sid (28.x or later) suites, which `scripts/fetch-engines.sh`
//! unpacks under `target/engines/` (never installed on the system).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::run::run;

/// A Docker engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    /// Debian 12's docker.io (20.10), installed on the system.
    Bookworm,
    /// Debian 13's docker.io (26.1).
    Trixie,
    /// Debian unstable's docker.io (28.5 when this was written).
    Sid,
}

impl Engine {
    /// Every engine the matrix runs on, oldest first.
    pub const ALL: [Self; 3] = [Self::Bookworm, Self::Trixie, Self::Sid];

    /// The Debian suite the engine comes from.
    pub fn suite(self) -> &'static str {
        match self {
            Self::Bookworm => "bookworm",
            Self::Trixie => "trixie",
            Self::Sid => "sid",
        }
    }

    /// Where its `dockerd`, `docker-proxy` and `docker-init` are: first on
    /// dockerd's PATH. `None` for the system's own engine.
    pub(crate) fn bin_dirs(self) -> Option<[PathBuf; 2]> {
        if self == Self::Bookworm {
            return None;
        }
        let root = unpacked(self);
        Some([root.join("usr/sbin"), root.join("usr/bin")])
    }

    /// The `dockerd` binary.
    pub(crate) fn dockerd(self) -> PathBuf {
        self.bin_dirs().map_or_else(
            || PathBuf::from("dockerd"),
            |[sbin, _]| sbin.join("dockerd"),
        )
    }

    /// The engine's version, as `dockerd --version` prints it (say
    /// `28.5.2+dfsg4`).
    pub fn version(self) -> String {
        static VERSIONS: [OnceLock<String>; 3] =
            [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        let slot = match self {
            Self::Bookworm => &VERSIONS[0],
            Self::Trixie => &VERSIONS[1],
            Self::Sid => &VERSIONS[2],
        };
        slot.get_or_init(|| {
            let out = run(Command::new(self.dockerd()).arg("--version"))
                .unwrap_or_else(|e| panic!("{} --version: {e}", self.dockerd().display()));
            // "Docker version 28.5.2+dfsg4, build ..."
            out.split_whitespace()
                .nth(2)
                .unwrap_or_default()
                .trim_end_matches(',')
                .to_owned()
        })
        .clone()
    }

    /// The engine's major version (20, 26, 28, ...).
    pub fn major(self) -> u32 {
        self.version()
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| panic!("no major version in {:?}", self.version()))
    }

    /// Whether the engine asks the host's resolvers from its own network
    /// namespace (28 and later), so that names across hosts need rustnet's
    /// resolver address in daemon.json's `dns`.
    pub fn needs_dns_setting(self) -> bool {
        self.major() >= 28
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Docker {} ({})", self.version(), self.suite())
    }
}

/// The engine's unpacked package, fetched with `scripts/fetch-engines.sh`
/// the first time a test asks for it.
fn unpacked(engine: Engine) -> PathBuf {
    static FETCHED: OnceLock<()> = OnceLock::new();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let root = repo.join("target/engines").join(engine.suite());
    if !root.join("usr/sbin/dockerd").is_file() {
        FETCHED.get_or_init(|| {
            let out = run(&mut Command::new(repo.join("scripts/fetch-engines.sh")))
                .unwrap_or_else(|e| panic!("scripts/fetch-engines.sh: {e}"));
            eprintln!("{out}");
        });
    }
    assert!(
        root.join("usr/sbin/dockerd").is_file(),
        "{} has no dockerd: scripts/fetch-engines.sh did not unpack {}",
        root.display(),
        engine.suite()
    );
    root
}

/// Runs one end-to-end scenario on every engine of the matrix: a test
/// per engine, named after it (`SCENARIO::docker_28`), each calling
/// `SCENARIO(engine)`.
#[macro_export]
macro_rules! on_every_engine {
    ($scenario:ident) => {
        mod $scenario {
            #[test]
            #[ignore = "needs root, network namespaces and dockerd: scripts/test.sh runs it"]
            fn docker_20_10() {
                super::$scenario($crate::Engine::Bookworm);
            }
            #[test]
            #[ignore = "needs root, network namespaces and dockerd: scripts/test.sh runs it"]
            fn docker_26() {
                super::$scenario($crate::Engine::Trixie);
            }
            #[test]
            #[ignore = "needs root, network namespaces and dockerd: scripts/test.sh runs it"]
            fn docker_28() {
                super::$scenario($crate::Engine::Sid);
            }
        }
    };
}
