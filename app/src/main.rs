//! `otaforge`: with a subcommand, a headless tool; without one, the desktop app (feature `gui`).

use std::process::ExitCode;

use clap::Parser;
use otaforge::cli::Cli;

fn main() -> ExitCode {
    // espflash warns about every baud rate above 115200; `otaforge flash` says what matters itself.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn,espflash=error")).init();
    let cli = Cli::parse();
    let dir = cli.project_dir();
    match cli.command {
        Some(command) => otaforge::cli::run(dir, command),
        None => desktop_app(dir),
    }
}

#[cfg(feature = "gui")]
fn desktop_app(dir: std::path::PathBuf) -> ExitCode {
    match otaforge::ui::run(dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("(every step also works headless: otaforge --help)");
            ExitCode::FAILURE
        }
    }
}

/// This build has no desktop app: say so and how to get one, and list what it can do.
#[cfg(not(feature = "gui"))]
fn desktop_app(_dir: std::path::PathBuf) -> ExitCode {
    use clap::CommandFactory;
    eprintln!(
        "This otaforge was built without the desktop app (--no-default-features): run one of the commands below, \
         or install the build with the app (cargo install --path app)."
    );
    let _ = Cli::command().print_help();
    ExitCode::from(2)
}
