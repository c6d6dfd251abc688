//! The local cluster's certificates, made once with the `openssl` command and kept between runs.

use std::{path::Path, process::Command};

use anyhow::{Context, Result};

use crate::gobuild::run_quiet;

/// Host names and addresses the apiserver's serving certificate is valid for.
const APISERVER_SANS: &str = "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,\
DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1";

/// Makes the CA, the apiserver serving pair, the admin client pair and the service-account key pair
/// in `dir`, unless they are there already.
pub fn ensure(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if ["ca.crt", "apiserver.crt", "admin.crt", "sa.key", "sa.pub"]
        .iter()
        .all(|f| dir.join(f).is_file())
    {
        return Ok(());
    }
    eprintln!(
        "making the cluster's certificates (once) in {}",
        dir.display()
    );
    let openssl = |args: &[&str]| -> Result<()> {
        run_quiet(Command::new("openssl").current_dir(dir).args(args))
            .with_context(|| format!("openssl {}", args.first().copied().unwrap_or_default()))
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "3650",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=sluice-local-ca",
    ])?;
    signed(
        dir,
        &openssl,
        "apiserver",
        "/CN=kube-apiserver",
        &format!("subjectAltName={APISERVER_SANS}\nextendedKeyUsage=serverAuth\n"),
    )?;
    signed(
        dir,
        &openssl,
        "admin",
        "/O=system:masters/CN=sluice-admin",
        "extendedKeyUsage=clientAuth\n",
    )?;
    openssl(&["genrsa", "-out", "sa.key", "2048"])?;
    openssl(&["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
    Ok(())
}

/// A key pair `<name>.key`/`<name>.crt` signed by the CA, with the given subject and extensions.
fn signed(
    dir: &Path,
    openssl: &dyn Fn(&[&str]) -> Result<()>,
    name: &str,
    subject: &str,
    extensions: &str,
) -> Result<()> {
    let (key, csr, crt, ext) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}.ext"),
    );
    std::fs::write(dir.join(&ext), extensions).with_context(|| format!("writing {ext}"))?;
    openssl(&[
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subject,
    ])?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "3650",
        "-out",
        &crt,
        "-extfile",
        &ext,
    ])
}
