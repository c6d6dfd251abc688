//! `dashboard`: a web page on localhost showing the rollouts live, served by the plugin itself
//! (its HTML, CSS and script compiled in), with the writing commands as buttons.
//!
//! - [`state`] keeps the list of rollouts from two watches in this process and computes, with the
//!   plugin's own model, what the pages show;
//! - [`server`] serves the page, the data as JSON, the changes as Server-Sent Events, and the
//!   actions as POSTs that call the same functions as `promote`, `abort`, `retry`, `restart` and
//!   `set image`.
//!
//! The server keeps no state of its own beyond what it watches: a reload shows the cluster.

pub mod server;
pub mod state;

use std::{net::IpAddr, process::ExitCode};

use clap::Args;

use super::{Context, Error, print};

/// `dashboard`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  # The rollouts of the current namespace, at http://127.0.0.1:3100/\n  \
                        kubectl sluice dashboard\n\n  \
                        # Of every namespace, on another port\n  \
                        kubectl sluice dashboard -A --port 8080"
)]
pub struct DashboardArgs {
    /// Show the rollouts of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Port to listen on (0: any free port, printed).
    #[arg(short, long, default_value_t = 3100)]
    pub port: u16,
    /// Address to listen on. Anything but a loopback address lets other machines use the
    /// dashboard with your credentials.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: IpAddr,
    /// Path the dashboard is served under, e.g. /sluice/ behind a reverse proxy.
    #[arg(long, default_value = "/", value_parser = root_path)]
    pub root_path: String,
}

/// The root path as the server uses it: starting and ending with `/`, made of URL-safe
/// characters only (it is written into the page).
pub fn root_path(path: &str) -> Result<String, String> {
    let trimmed = path.trim_matches('/');
    let safe = |c: char| c.is_ascii_alphanumeric() || "-._~/".contains(c);
    if !trimmed.chars().all(safe) || trimmed.contains("//") {
        return Err(format!(
            "\"{path}\" is not a path of letters, digits, '-', '.', '_', '~' and '/'"
        ));
    }
    Ok(if trimmed.is_empty() {
        "/".into()
    } else {
        format!("/{trimmed}/")
    })
}

/// Runs `dashboard` until Ctrl-C.
pub async fn run(ctx: &Context, args: DashboardArgs) -> Result<ExitCode, Error> {
    // Logs go to stderr; RUST_LOG chooses how much (warnings by default).
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    let listener = tokio::net::TcpListener::bind((args.address, args.port))
        .await
        .map_err(|e| {
            Error::Refused(format!(
                "cannot listen on {}:{}: {e} (choose another with --port)",
                args.address, args.port
            ))
        })?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::Refused(format!("reading the listening address: {e}")))?;
    let list = state::ListState::new();
    let keeper = tokio::spawn(state::keep(ctx.clone(), args.all_namespaces, list.clone()));
    let app = server::App::new(server::Config {
        ctx: ctx.clone(),
        all_namespaces: args.all_namespaces,
        root: args.root_path.clone(),
        local,
        list,
    });
    if !args.address.is_loopback() {
        tracing::warn!(address = %args.address, "the dashboard is reachable from other machines and acts with your credentials");
        eprintln!(
            "warning: listening on {}: anyone who reaches it acts on the cluster with your credentials",
            args.address
        );
    }
    print(&format!(
        "Sluice dashboard at http://{local}{} (Ctrl-C stops it)\n",
        args.root_path
    ));
    let served = tokio::select! {
        served = axum::serve(listener, app.router()) => served,
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    keeper.abort();
    served.map_err(|e| Error::Refused(format!("serving the dashboard: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::root_path;

    #[test]
    fn root_paths_are_normalised_and_safe() {
        assert_eq!(root_path("/").as_deref(), Ok("/"));
        assert_eq!(root_path("").as_deref(), Ok("/"));
        assert_eq!(root_path("sluice").as_deref(), Ok("/sluice/"));
        assert_eq!(root_path("/a/b/").as_deref(), Ok("/a/b/"));
        assert!(root_path("/a\"><script>").is_err());
        assert!(root_path("/a//b").is_err());
    }
}
