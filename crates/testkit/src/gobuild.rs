//! Builds the Go programs Sluice runs beside it (the control plane, kwok, kubectl, Helm) from their
//! published modules at pinned versions, into a version-keyed cache outside the checkout.
//!
//! Each program comes from a small wrapper module under `xtask/go/<name>/` (a `go.mod` + `go.sum`
//! that pin the version, and a `tools.go` naming the commands). A build is keyed by the wrapper's
//! `go.sum` and the flags, so editing either rebuilds, and every clone with the same pins reuses it.

use std::{path::PathBuf, process::Command, time::Instant};

use anyhow::{Context, Result, bail};

use crate::paths;

/// One wrapper module and the binaries built from it.
pub struct Component {
    /// Directory under `xtask/go/` and prefix of the cache directory.
    pub name: &'static str,
    /// The pinned upstream version (must match the wrapper's `go.mod`).
    pub version: &'static str,
    /// `(binary name, Go package)` pairs.
    pub binaries: &'static [(&'static str, &'static str)],
    /// Build tags.
    pub tags: &'static str,
    /// Extra `-ldflags` (after `-s -w`).
    pub ldflags: fn(&'static str) -> String,
    /// Whether the build links C code (off for everything but InfluxDB).
    pub cgo: Cgo,
}

/// How a component's build treats cgo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cgo {
    /// `CGO_ENABLED=0`: a static Go binary.
    Off,
    /// cgo on, with Flux's Rust library (libflux): the wrapper module also pins influxdata's
    /// `pkg-config` wrapper (this Go package), which is built first and answers cgo's
    /// `pkg-config flux` by building libflux with the machine's cargo (crates from crates.io)
    /// into the Go build cache.
    FluxPkgConfig(&'static str),
}

/// The Kubernetes version of the local control plane and of kubectl.
pub const KUBERNETES_VERSION: &str = "v1.35.8";

/// The control plane and kubectl, from `k8s.io/kubernetes`.
pub const KUBERNETES: Component = Component {
    name: "kubernetes",
    version: KUBERNETES_VERSION,
    binaries: &[
        ("kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver"),
        (
            "kube-controller-manager",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
        ),
        ("kube-scheduler", "k8s.io/kubernetes/cmd/kube-scheduler"),
        ("kubectl", "k8s.io/kubernetes/cmd/kubectl"),
    ],
    tags: "selinux,notest",
    ldflags: kubernetes_ldflags,
    cgo: Cgo::Off,
};

/// etcd, the apiserver's store.
pub const ETCD: Component = Component {
    name: "etcd",
    version: "v3.6.16",
    binaries: &[("etcd", "go.etcd.io/etcd/server/v3")],
    tags: "",
    ldflags: |_| String::new(),
    cgo: Cgo::Off,
};

/// kwok, which plays the nodes and makes pods run, become ready, crash or complete.
pub const KWOK: Component = Component {
    name: "kwok",
    version: "v0.8.0",
    binaries: &[("kwok", "sigs.k8s.io/kwok/cmd/kwok")],
    tags: "",
    ldflags: |_| String::new(),
    cgo: Cgo::Off,
};

/// Helm, to lint and install the chart.
pub const HELM: Component = Component {
    name: "helm",
    version: "v3.22.0",
    binaries: &[("helm", "helm.sh/helm/v3/cmd/helm")],
    tags: "",
    ldflags: helm_ldflags,
    cgo: Cgo::Off,
};

/// Prometheus, the metrics server of the analysis tests and benchmarks. Without service discovery
/// (tests list their targets) and without the web UI's assets: the query API is what they use.
pub const PROMETHEUS: Component = Component {
    name: "prometheus",
    version: "v0.316.0",
    binaries: &[(
        "prometheus",
        "github.com/prometheus/prometheus/cmd/prometheus",
    )],
    tags: "remove_all_sd",
    ldflags: |_| "-X github.com/prometheus/common/version.Version=3.16.0".to_string(),
    cgo: Cgo::Off,
};

/// Argo Rollouts' controller, the peer of the benchmarks (built on first `cargo xtask bench`).
pub const ARGO_ROLLOUTS: Component = Component {
    name: "argo-rollouts",
    version: "v1.9.1",
    binaries: &[(
        "rollouts-controller",
        "github.com/argoproj/argo-rollouts/cmd/rollouts-controller",
    )],
    tags: "",
    ldflags: |v| {
        format!(
            "-X github.com/argoproj/argo-rollouts/utils/version.version={}",
            v.trim_start_matches('v')
        )
    },
    cgo: Cgo::Off,
};

/// Argo CD (v3.5; one binary that is the CLI, the server, the repo server or the application
/// controller by its name), for the tests that run Sluice under Argo CD. Its version is set
/// without the leading `v` (Argo CD adds one) and its kubectl version is its `k8s.io/client-go`'s.
pub const ARGOCD: Component = Component {
    name: "argocd",
    version: "v3.5.7",
    binaries: &[("argocd", "github.com/argoproj/argo-cd/v3/cmd")],
    tags: "",
    ldflags: argocd_ldflags,
    cgo: Cgo::Off,
};

/// Traefik, the real proxy the traffic tests send requests through (Gateway API, its own CRDs,
/// Ingress). Built with lego's API but not its ACME client (see `xtask/go/traefik/go.mod`); the
/// version as Traefik's releases report it (no leading `v`), with a constant build date.
pub const TRAEFIK: Component = Component {
    name: "traefik",
    version: "v3.7.13",
    binaries: &[("traefik", "github.com/traefik/traefik/v3/cmd/traefik")],
    tags: "",
    ldflags: |v| {
        let pkg = "github.com/traefik/traefik/v3/pkg/version";
        format!(
            "-X {pkg}.Version={} -X {pkg}.BuildDate=2026-01-01T00:00:00Z",
            v.trim_start_matches('v')
        )
    },
    cgo: Cgo::Off,
};

/// InfluxDB 1.x's server, the influxdb provider's test server: Flux (`/api/v2/query`, annotated
/// CSV) needs cgo and Flux's Rust library, built by influxdata's pkg-config wrapper (see
/// [`Cgo::FluxPkgConfig`]; the first build takes a while, later ones reuse the caches).
pub const INFLUXDB: Component = Component {
    name: "influxdb",
    version: "v1.13.2",
    binaries: &[("influxd", "github.com/influxdata/influxdb/cmd/influxd")],
    tags: "",
    ldflags: |v| {
        format!(
            "-X main.version={} -X main.branch=v1.13 -X main.commit=none",
            v.trim_start_matches('v')
        )
    },
    cgo: Cgo::FluxPkgConfig("github.com/influxdata/pkg-config"),
};

/// Everything `cluster build` makes: the cluster, and the tools the tests run beside it.
pub const ALL: [&Component; 7] = [
    &ETCD,
    &KUBERNETES,
    &KWOK,
    &HELM,
    &PROMETHEUS,
    &ARGOCD,
    &TRAEFIK,
];

/// Helm's version, and the Kubernetes version `helm template` and `helm lint` assume without a
/// cluster: Helm's own Makefile derives it from its `k8s.io/client-go` (v0.37 in v3.22.0, so
/// v1.37); unset, Helm assumes v1.20 and refuses charts that require newer.
fn helm_ldflags(version: &'static str) -> String {
    let (major, minor) = ("1", "37");
    let mut flags = format!("-X helm.sh/helm/v3/internal/version.version={version}");
    for pkg in [
        "helm.sh/helm/v3/pkg/lint/rules",
        "helm.sh/helm/v3/pkg/chartutil",
    ] {
        flags.push_str(&format!(
            " -X {pkg}.k8sVersionMajor={major} -X {pkg}.k8sVersionMinor={minor}"
        ));
    }
    flags
}

fn argocd_ldflags(version: &'static str) -> String {
    let pkg = "github.com/argoproj/argo-cd/v3/common";
    // A constant build date, as for Kubernetes: a warm relink stays a relink.
    format!(
        "-X {pkg}.version={} -X {pkg}.kubectlVersion=v0.36.1 -X {pkg}.gitTreeState=clean \
         -X {pkg}.buildDate=2026-01-01T00:00:00Z",
        version.trim_start_matches('v')
    )
}

fn kubernetes_ldflags(version: &'static str) -> String {
    let mut parts = version.trim_start_matches('v').split('.');
    let (major, minor) = (parts.next().unwrap_or("0"), parts.next().unwrap_or("0"));
    // A constant build date keeps a warm relink under a second (the date is part of the link key).
    [
        "k8s.io/component-base/version",
        "k8s.io/client-go/pkg/version",
    ]
    .iter()
    .map(|pkg| {
        format!(
            "-X {pkg}.gitVersion={version} -X {pkg}.gitMajor={major} -X {pkg}.gitMinor={minor} \
                 -X {pkg}.gitTreeState=clean -X {pkg}.buildDate=2026-01-01T00:00:00Z"
        )
    })
    .collect::<Vec<_>>()
    .join(" ")
}

impl Component {
    fn wrapper_dir(&self) -> PathBuf {
        paths::repo_root().join("xtask").join("go").join(self.name)
    }

    fn ldflags(&self) -> String {
        let extra = (self.ldflags)(self.version);
        if extra.is_empty() {
            "-s -w".to_string()
        } else {
            format!("-s -w {extra}")
        }
    }

    /// What the build depends on besides the sources: the wrapper's `go.sum` and the flags.
    fn key(&self) -> Result<String> {
        let sum = std::fs::read(self.wrapper_dir().join("go.sum"))
            .with_context(|| format!("reading the {} wrapper's go.sum", self.name))?;
        let mut input = sum;
        input.extend_from_slice(self.tags.as_bytes());
        input.extend_from_slice(self.ldflags().as_bytes());
        if let Cgo::FluxPkgConfig(package) = self.cgo {
            input.extend_from_slice(format!("cgo {package}").as_bytes());
        }
        Ok(format!("{:016x}", fnv1a(&input)))
    }

    /// The cache directory holding this component's binaries.
    pub fn bin_dir(&self) -> Result<PathBuf> {
        Ok(paths::cache_root().join("bin").join(format!(
            "{}-{}-{}",
            self.name,
            self.version,
            &self.key()?[..8]
        )))
    }

    /// The path of one of this component's binaries (built or not).
    pub fn binary(&self, name: &str) -> Result<PathBuf> {
        Ok(self.bin_dir()?.join(name))
    }

    /// `go` in the wrapper module, with the shared module and build caches.
    fn go(&self) -> Command {
        let cache = paths::cache_root();
        let mut cmd = Command::new("go");
        cmd.current_dir(self.wrapper_dir())
            .env("GOWORK", "off")
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "-buildvcs=false -mod=readonly")
            .env("GOMODCACHE", cache.join("go").join("mod"))
            .env("GOCACHE", cache.join("go").join("build"));
        cmd
    }

    /// Builds influxdata's pkg-config wrapper (pinned by the wrapper module) into `dir`.
    fn build_pkg_config(&self, package: &str, dir: &std::path::Path) -> Result<PathBuf> {
        let wrapper = dir.join("pkg-config");
        run(self
            .go()
            .env("CGO_ENABLED", "0")
            .args(["build", "-trimpath", "-o"])
            .arg(&wrapper)
            .arg(package))
        .with_context(|| format!("building {package}"))?;
        Ok(wrapper)
    }

    /// Builds the binaries unless the cache already has them; returns their directory.
    pub fn ensure_built(&self) -> Result<PathBuf> {
        let dir = self.bin_dir()?;
        if self.binaries.iter().all(|(bin, _)| dir.join(bin).is_file()) {
            return Ok(dir);
        }
        check_go()?;
        let partial = dir.with_extension(format!("partial-{}", std::process::id()));
        std::fs::create_dir_all(&partial)
            .with_context(|| format!("creating {}", partial.display()))?;
        let cache = paths::cache_root();
        let pkg_config = match self.cgo {
            Cgo::Off => None,
            Cgo::FluxPkgConfig(package) => Some(self.build_pkg_config(package, &partial)?),
        };
        for (bin, package) in self.binaries {
            let started = Instant::now();
            eprintln!(
                "building {bin} {} from {package} (first time only; cached in {})",
                self.version,
                cache.display()
            );
            let mut cmd = self.go();
            match &pkg_config {
                None => cmd.env("CGO_ENABLED", "0"),
                Some(wrapper) => flux_cgo(&mut cmd, wrapper),
            };
            cmd.args(["build", "-trimpath"]);
            if !self.tags.is_empty() {
                cmd.args(["-tags", self.tags]);
            }
            cmd.args(["-ldflags", &self.ldflags(), "-o"])
                .arg(partial.join(bin))
                .arg(package);
            run(&mut cmd).with_context(|| format!("building {bin} {}", self.version))?;
            eprintln!("built {bin} in {:.0?}", started.elapsed());
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("replacing {}", dir.display()))?;
        }
        std::fs::rename(&partial, &dir)
            .with_context(|| format!("moving the build into {}", dir.display()))?;
        Ok(dir)
    }
}

/// cgo with Flux: cgo asks `wrapper` for `pkg-config flux`, and the wrapper runs `cargo build
/// --release` in a copy of libflux in the Go build cache. libflux's `rust-toolchain.toml` names
/// a Rust that cannot be downloaded here, so the toolchain running this command (or rustup's
/// stable) builds it; cargo puts its output where the wrapper looks, not in a target directory
/// this command was given.
fn flux_cgo<'a>(cmd: &'a mut Command, wrapper: &std::path::Path) -> &'a mut Command {
    let toolchain = std::env::var("RUSTUP_TOOLCHAIN")
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "stable".to_owned());
    cmd.env("CGO_ENABLED", "1")
        .env("PKG_CONFIG", wrapper)
        .env("RUSTUP_TOOLCHAIN", toolchain)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
}

fn check_go() -> Result<()> {
    crate::preflight::check(&[crate::preflight::Tool::Go])
}

/// Runs a command, failing with its exit status when it does not succeed.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{:?} failed: {status}", cmd.get_program());
    }
    Ok(())
}

/// Runs a command whose output is noise when it works (openssl's key generation): its output
/// is shown only when it fails.
pub fn run_quiet(cmd: &mut Command) -> Result<()> {
    let output = cmd
        .output()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    if !output.status.success() {
        bail!(
            "{:?} failed: {}\n{}{}",
            cmd.get_program(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// 64-bit FNV-1a: a stable, dependency-free fingerprint for cache keys (not for security).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The kubectl of the local cluster's version (the one on PATH may be older).
pub fn kubectl() -> Result<PathBuf> {
    KUBERNETES.ensure_built().map(|dir| dir.join("kubectl"))
}

/// The source of `module@version` in the shared module cache, downloaded first when it is not
/// there (for files a module publishes: CRDs, examples).
pub fn module_source(module: &str, version: &str) -> Result<PathBuf> {
    if let Ok(dir) = module_dir(module, version) {
        return Ok(dir);
    }
    crate::preflight::check(&[crate::preflight::Tool::Go])?;
    let cache = paths::cache_root();
    std::fs::create_dir_all(&cache)?;
    let spec = format!("{module}@{version}");
    eprintln!("downloading {spec} (first time only)");
    // Outside any module, with the same module cache the builds use.
    run_quiet(
        Command::new("go")
            .current_dir(&cache)
            .env("GOWORK", "off")
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "")
            .env("GOMODCACHE", cache.join("go").join("mod"))
            .args(["mod", "download", &spec]),
    )
    .with_context(|| format!("downloading {spec}"))?;
    module_dir(module, version)
}

/// The source of `module@version` in the shared module cache, if it is there (downloaded by a
/// build of the wrapper module that requires it, or by [`module_source`]).
pub fn module_dir(module: &str, version: &str) -> Result<PathBuf> {
    let dir = paths::cache_root()
        .join("go")
        .join("mod")
        .join(format!("{module}@{version}"));
    if !dir.is_dir() {
        bail!(
            "{module}@{version} is not in the module cache ({}); build its wrapper module first",
            dir.display()
        );
    }
    Ok(dir)
}
