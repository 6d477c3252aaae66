//! `otaforge`: with a subcommand, a headless tool; without one, the desktop app.

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
        None => match otaforge::ui::run(dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                eprintln!("(every step also works headless: otaforge --help)");
                ExitCode::FAILURE
            }
        },
    }
}
