//! How Sluice's programs reach a cluster: the controller, the plugin and the test kit read a
//! kubeconfig path list and a context the way kubectl does, with one function; the plugin also
//! takes kubectl's connection flags ([`Overrides`]: `--cluster`, `--user`, `--server`, `--token`,
//! `--as`, …), applied over the kubeconfig as kubectl applies them.
#![forbid(unsafe_code)]

use std::{fmt, path::Path, path::PathBuf, time::Duration};

use anyhow::Context as _;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// The configuration from `kubeconfig` (a path list like `KUBECONFIG`, merged in order) and
/// `context`, else from the default kubeconfig or the in-cluster service account.
pub async fn config(
    kubeconfig: Option<&str>,
    context: Option<String>,
) -> anyhow::Result<kube::Config> {
    let options = KubeConfigOptions {
        context,
        ..KubeConfigOptions::default()
    };
    load(kubeconfig, &options).await
}

/// The kubeconfig(s) read as kubectl reads them, with the context, cluster and user `options`
/// name.
async fn load(
    kubeconfig: Option<&str>,
    options: &KubeConfigOptions,
) -> anyhow::Result<kube::Config> {
    match kubeconfig.filter(|paths| !paths.is_empty()) {
        Some(paths) => {
            let mut merged: Option<Kubeconfig> = None;
            for path in std::env::split_paths(paths).filter(|p| !p.as_os_str().is_empty()) {
                let file = read_kubeconfig(&path)?;
                merged = Some(match merged {
                    Some(first) => first
                        .merge(file)
                        .with_context(|| format!("merging kubeconfig {}", path.display()))?,
                    None => file,
                });
            }
            let merged = merged.context("--kubeconfig names no file")?;
            kube::Config::from_custom_kubeconfig(merged, options)
                .await
                .with_context(|| format!("loading the Kubernetes configuration from {paths}"))
        }
        None if options.context.is_some() || options.cluster.is_some() || options.user.is_some() => {
            kube::Config::from_kubeconfig(options).await.context(
                "loading the default kubeconfig (~/.kube/config) for --context, --cluster or --user",
            )
        }
        None => kube::Config::infer().await.context(
            "no Kubernetes configuration found: pass --kubeconfig, set KUBECONFIG, \
             or run in a cluster with a service account",
        ),
    }
}

fn read_kubeconfig(path: &Path) -> anyhow::Result<Kubeconfig> {
    Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {}", path.display()))
}

/// A bearer token from the command line: never printed, not even by `{:?}`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl std::str::FromStr for Token {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s))
    }
}

/// kubectl's connection flags, each overriding what the kubeconfig says (absent: the
/// kubeconfig's value).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--context`: the kubeconfig context to use.
    pub context: Option<String>,
    /// `--cluster`: the kubeconfig cluster to use instead of the context's.
    pub cluster: Option<String>,
    /// `--user`: the kubeconfig user to use instead of the context's.
    pub user: Option<String>,
    /// `-s/--server`: the API server's URL.
    pub server: Option<String>,
    /// `--certificate-authority`: a PEM file of the CA certificates to trust.
    pub certificate_authority: Option<PathBuf>,
    /// `--insecure-skip-tls-verify`: do not check the server's certificate.
    pub insecure_skip_tls_verify: bool,
    /// `--token`: authenticate with this bearer token only.
    pub token: Option<Token>,
    /// `--client-certificate`: a PEM file of the client certificate.
    pub client_certificate: Option<PathBuf>,
    /// `--client-key`: a PEM file of the client certificate's key.
    pub client_key: Option<PathBuf>,
    /// `--as`: the user to impersonate.
    pub impersonate: Option<String>,
    /// `--as-group`: the groups to impersonate.
    pub impersonate_groups: Vec<String>,
    /// `--request-timeout`: the longest a request may take to connect, send, or wait for
    /// the next bytes of its answer; `None` keeps the client's defaults.
    pub request_timeout: Option<Duration>,
}

/// The configuration from `kubeconfig` (as [`config`] reads it) with kubectl's flags applied.
///
/// As kubectl: `--server` alone is enough when no kubeconfig exists; `--token` replaces the
/// kubeconfig user's credentials (client certificate, exec plugin, password) unless
/// `--client-certificate` is given too; `--insecure-skip-tls-verify` with
/// `--certificate-authority` is refused.
pub async fn config_with(
    kubeconfig: Option<&str>,
    overrides: &Overrides,
) -> anyhow::Result<kube::Config> {
    if overrides.insecure_skip_tls_verify && overrides.certificate_authority.is_some() {
        anyhow::bail!(
            "--certificate-authority and --insecure-skip-tls-verify contradict each other: pass one"
        );
    }
    let options = KubeConfigOptions {
        context: overrides.context.clone(),
        cluster: overrides.cluster.clone(),
        user: overrides.user.clone(),
    };
    let mut config = match (load(kubeconfig, &options).await, &overrides.server) {
        (Ok(config), _) => config,
        // No kubeconfig at all: the flags say where and who.
        (Err(_), Some(server))
            if kubeconfig.is_none()
                && options.context.is_none()
                && options.cluster.is_none()
                && options.user.is_none() =>
        {
            kube::Config::new(parse_server(server)?)
        }
        (Err(e), _) => return Err(e),
    };
    apply(&mut config, overrides)?;
    Ok(config)
}

fn parse_server(server: &str) -> anyhow::Result<http::Uri> {
    // kubectl takes a bare host:port as https.
    let url = if server.contains("://") {
        server.to_string()
    } else {
        format!("https://{server}")
    };
    url.parse::<http::Uri>()
        .with_context(|| format!("--server {server:?} is not a URL"))
}

/// Applies the flags to a loaded configuration. Files are checked to exist here, so a wrong
/// path is named now rather than as a TLS failure later.
fn apply(config: &mut kube::Config, o: &Overrides) -> anyhow::Result<()> {
    if let Some(server) = &o.server {
        config.cluster_url = parse_server(server)?;
    }
    if let Some(path) = &o.certificate_authority {
        let text = std::fs::read(path)
            .with_context(|| format!("reading --certificate-authority {}", path.display()))?;
        let certs: Vec<Vec<u8>> = pem::parse_many(&text)
            .with_context(|| format!("reading --certificate-authority {}", path.display()))?
            .into_iter()
            .filter(|p| p.tag() == "CERTIFICATE")
            .map(pem::Pem::into_contents)
            .collect();
        anyhow::ensure!(
            !certs.is_empty(),
            "--certificate-authority {} holds no PEM certificate",
            path.display()
        );
        config.root_cert = Some(certs);
        config.accept_invalid_certs = false;
    }
    if o.insecure_skip_tls_verify {
        config.accept_invalid_certs = true;
        config.root_cert = None;
    }
    let auth = &mut config.auth_info;
    if let Some(Token(token)) = &o.token {
        auth.token = Some(token.clone().into());
        auth.token_file = None;
        auth.username = None;
        auth.password = None;
        auth.exec = None;
        auth.auth_provider = None;
        if o.client_certificate.is_none() {
            auth.client_certificate = None;
            auth.client_certificate_data = None;
            auth.client_key = None;
            auth.client_key_data = None;
        }
    }
    for (flag, path) in [
        ("--client-certificate", &o.client_certificate),
        ("--client-key", &o.client_key),
    ] {
        if let Some(path) = path {
            anyhow::ensure!(path.is_file(), "{flag} {}: no such file", path.display());
        }
    }
    if let Some(path) = &o.client_certificate {
        auth.client_certificate = Some(path.display().to_string());
        auth.client_certificate_data = None;
    }
    if let Some(path) = &o.client_key {
        auth.client_key = Some(path.display().to_string());
        auth.client_key_data = None;
    }
    if let Some(user) = &o.impersonate {
        auth.impersonate = Some(user.clone());
    }
    if !o.impersonate_groups.is_empty() {
        anyhow::ensure!(
            auth.impersonate.is_some(),
            "--as-group needs --as: the API server impersonates groups only with a user"
        );
        auth.impersonate_groups = Some(o.impersonate_groups.clone());
    }
    if let Some(timeout) = o.request_timeout {
        config.connect_timeout = Some(timeout);
        config.read_timeout = Some(timeout);
        config.write_timeout = Some(timeout);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> kube::Config {
        let mut config = kube::Config::new("https://10.0.0.1:6443".parse().expect("a URL"));
        config.auth_info.client_certificate_data = Some("cert".into());
        config.auth_info.client_key_data = Some("key".to_string().into());
        config
    }

    #[test]
    fn a_token_replaces_the_kubeconfig_users_certificate() {
        let mut config = base();
        let o = Overrides {
            token: Some(Token::new("t0ken")),
            server: Some("127.0.0.1:9443".into()),
            ..Overrides::default()
        };
        apply(&mut config, &o).expect("applied");
        assert_eq!(config.cluster_url.to_string(), "https://127.0.0.1:9443/");
        assert!(config.auth_info.client_certificate_data.is_none());
        assert!(config.auth_info.client_key_data.is_none());
        assert!(config.auth_info.token.is_some());
        assert!(
            !format!("{o:?}").contains("t0ken"),
            "the token is never printed"
        );
    }

    #[test]
    fn impersonation_and_timeouts_are_set_and_checked() {
        let mut config = base();
        let o = Overrides {
            impersonate: Some("jane".into()),
            impersonate_groups: vec!["devs".into(), "ops".into()],
            request_timeout: Some(Duration::from_secs(5)),
            insecure_skip_tls_verify: true,
            ..Overrides::default()
        };
        apply(&mut config, &o).expect("applied");
        assert_eq!(config.auth_info.impersonate.as_deref(), Some("jane"));
        assert_eq!(
            config.auth_info.impersonate_groups,
            Some(vec!["devs".to_string(), "ops".to_string()])
        );
        assert_eq!(config.read_timeout, Some(Duration::from_secs(5)));
        assert!(config.accept_invalid_certs);
        // Client certificates are kept without --token.
        assert!(config.auth_info.client_certificate_data.is_some());

        let groups_alone = Overrides {
            impersonate_groups: vec!["devs".into()],
            ..Overrides::default()
        };
        let e = apply(&mut base(), &groups_alone).expect_err("--as-group needs --as");
        assert!(e.to_string().contains("--as-group needs --as"), "{e}");
        let missing = Overrides {
            client_certificate: Some("/nonexistent/cert.pem".into()),
            ..Overrides::default()
        };
        let e = apply(&mut base(), &missing).expect_err("no such file");
        assert_eq!(
            e.to_string(),
            "--client-certificate /nonexistent/cert.pem: no such file"
        );
    }
}
