//! `sop`: the worker and the command line for people and scripts (see `vsm_sop::cli`).

use std::process::ExitCode;

use vsm_sop::cli::Cli;

fn init_tracing(json: bool, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let colour = in_colour(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR"),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Colour codes only for a person at a terminal who has not asked for none with a non-empty
/// `NO_COLOR` (<https://no-color.org>): piped or collected logs stay plain text.
fn in_colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|value| value.is_empty())
}

/// A reader that stopped reading (`sop contract | head`) ends the output, not the program
/// with a panic: `print!` panics on a closed pipe, and Rust ignores SIGPIPE, so the one quiet,
/// successful end is to exit here, as a shell tool killed by SIGPIPE would have.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

#[tokio::main]
async fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = match Cli::load() {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_tracing(cli.log_json, cli.default_log_filter());
    vsm_sop::cli::run(cli).await
}

#[cfg(test)]
mod tests {
    use super::in_colour;

    #[test]
    fn logs_are_coloured_only_at_a_terminal_without_no_color() {
        assert!(in_colour(true, None));
        assert!(
            in_colour(true, Some("".into())),
            "an empty NO_COLOR asks nothing"
        );
        assert!(!in_colour(true, Some("1".into())));
        assert!(!in_colour(false, None));
    }
}
