//! `completion bash|zsh|fish`: a completion script for `kubectl-sluice`.

use std::process::ExitCode;

use clap::{Args, CommandFactory as _};
use clap_complete::Shell;

use super::Cli;

/// `completion`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  # Bash, for this shell\n  source <(kubectl-sluice completion bash)\n\n  \
                        # Zsh, installed\n  kubectl-sluice completion zsh > \"${fpath[1]}/_kubectl-sluice\"\n\n  \
                        # Fish\n  kubectl-sluice completion fish > ~/.config/fish/completions/kubectl-sluice.fish"
)]
pub struct CompletionArgs {
    /// The shell.
    #[arg(value_parser = ["bash", "zsh", "fish"])]
    pub shell: String,
}

/// Prints the script.
pub fn run(args: &CompletionArgs) -> ExitCode {
    let shell = match args.shell.as_str() {
        "zsh" => Shell::Zsh,
        "fish" => Shell::Fish,
        _ => Shell::Bash,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "kubectl-sluice", &mut out);
    let mut script = String::from_utf8_lossy(&out).into_owned();
    if shell == Shell::Bash {
        // clap_complete names the subcommands' cases after the binary with `-` turned into
        // `__subcmd__`, but looks them up with `-` turned into `__`: align them.
        script = script.replace("kubectl__subcmd__sluice", "kubectl__sluice");
    }
    super::print(&script);
    ExitCode::SUCCESS
}
