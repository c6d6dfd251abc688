//! `completion bash|zsh|fish|powershell`: a completion script for `kubectl-sluice`.

use std::process::ExitCode;

use clap::{Args, CommandFactory as _};
use clap_complete::Shell;

use super::Cli;

/// `completion`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  # Bash, for this shell\n  source <(kubectl-sluice completion bash)\n\n  \
                        # Zsh, installed\n  kubectl-sluice completion zsh > \"${fpath[1]}/_kubectl-sluice\"\n\n  \
                        # Fish\n  kubectl-sluice completion fish > ~/.config/fish/completions/kubectl-sluice.fish\n\n  \
                        # PowerShell, for this session\n  kubectl-sluice completion powershell | Out-String | Invoke-Expression"
)]
pub struct CompletionArgs {
    /// The shell.
    #[arg(value_parser = ["bash", "zsh", "fish", "powershell"])]
    pub shell: String,
}

/// Prints the script.
pub fn run(args: &CompletionArgs) -> ExitCode {
    super::print(&script(args));
    ExitCode::SUCCESS
}

/// The completion script for the shell. Pure.
pub fn script(args: &CompletionArgs) -> String {
    let shell = match args.shell.as_str() {
        "zsh" => Shell::Zsh,
        "fish" => Shell::Fish,
        "powershell" => Shell::PowerShell,
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
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powershell_gets_a_script_that_registers_the_plugin() {
        let text = script(&CompletionArgs {
            shell: "powershell".into(),
        });
        assert!(text.contains("Register-ArgumentCompleter"), "{text}");
        assert!(text.contains("kubectl-sluice"), "{text}");
        assert!(text.contains("'promote'"), "the commands are in it");
    }
}
