//! The `otaforge` command line: every capability of the app, headless (a Raspberry Pi, CI, a script).
//! With no subcommand the binary opens the desktop app instead.

mod cert;
mod demo;
mod devices;
mod firmware;
mod flash;
mod fleet;
mod key;
mod releases;
mod secret;
mod serve;
mod sim;
mod virtual_board;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use cert::CertCommand;
pub use devices::{DevicesArgs, DevicesCommand};
pub use firmware::BakeArgs;
pub use flash::{BoardArgs, DeviceSettingsArgs, FlashArgs, MonitorArgs, ProvisionArgs};
pub use key::KeyCommand;
pub use releases::{PublishArgs, RolloutArgs};
pub use serve::{CheckArgs, ServeArgs};
pub use sim::SimCommand;

/// OTA Forge: secure self-updating ESP8266 and ESP32 devices.
#[derive(Debug, Parser)]
#[command(name = "otaforge", version, about, long_about = None)]
pub struct Cli {
    /// Project directory (certificates, releases, device store). Default: the platform data directory.
    #[arg(long, global = true, env = otaforge_project::DIR_ENV, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// What to do; without one, the desktop app opens.
    #[command(subcommand)]
    pub command: Option<Commands>,
}

impl Cli {
    /// The project directory in use.
    pub fn project_dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(otaforge_project::default_dir)
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Step 1: the private CA and the server certificate.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Firmware signing keys: make, show, export the public half, sign or verify a file.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Which names and addresses devices can use to reach this machine; check one with --check.
    Hosts {
        /// A host name or IP address to check.
        #[arg(long, value_name = "HOST")]
        check: Option<String>,
    },
    /// Step 2: put the CA and the update settings into firmware (sketch source or a prebuilt .bin).
    Bake(BakeArgs),
    /// Read a firmware file: format, chip, flash settings, checksums, version, config block.
    Inspect {
        /// The .bin file.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the config-block C header the reference firmware includes.
    #[command(hide = true)]
    ConfigBlockHeader,
    /// Print the device-settings C header the reference firmware includes.
    #[command(hide = true)]
    DeviceSettingsHeader,
    /// Serial ports a board could be on (ESP boards first, virtual devices included).
    Ports {
        /// Print JSON instead of a list.
        #[arg(long)]
        json: bool,
    },
    /// Step 3: flash a board over USB serial (ESP8266, ESP32 family), with progress and diagnosis.
    Flash(FlashArgs),
    /// Write a board's own settings (name, Wi-Fi) without touching its firmware: seconds, and
    /// no update ever replaces them.
    Provision(ProvisionArgs),
    /// Identify the board on a port: chip, MAC, flash size (nothing is written).
    Board(BoardArgs),
    /// Show what a board prints on its serial port.
    Monitor(MonitorArgs),
    /// Step 4: serve updates over HTTPS to the devices that poll.
    Serve(ServeArgs),
    /// Check the update server the way a device will (name, handshake, certificate, answer).
    Check(CheckArgs),
    /// Publish a firmware file as a channel's new release.
    Publish(PublishArgs),
    /// List releases and what each channel serves.
    Releases {
        /// Only this channel (one that does not exist is refused, naming those that do).
        #[arg(long)]
        channel: Option<String>,
    },
    /// List the devices that have checked in; rename or forget one.
    Devices(DevicesArgs),
    /// Change a channel's rollout: share, pause/resume, promote, roll back, credentials, allow-list.
    Rollout(RolloutArgs),
    /// Virtual devices: a simulated ESP on a serial port, for trying the app without hardware.
    #[command(subcommand)]
    Sim(SimCommand),
    /// See it work, no board needed: certificates, bake, flash a virtual board, publish, watch it
    /// update itself (in a temporary project; exit status 0 only if it ends installed).
    Demo(demo::DemoArgs),
}

/// Runs a subcommand and turns its outcome into an exit code (errors go to stderr in plain words).
pub fn run(dir: PathBuf, command: Commands) -> ExitCode {
    let result = match command {
        Commands::Cert(cmd) => cert::run(&dir, cmd),
        Commands::Key(cmd) => key::run(&dir, cmd),
        Commands::Hosts { check } => cert::hosts(check.as_deref()),
        Commands::Bake(args) => firmware::bake(&dir, args),
        Commands::Inspect { file, json } => firmware::inspect_file(&dir, &file, json),
        Commands::ConfigBlockHeader => {
            print!("{}", otaforge_firmware::config_block::c_header());
            Ok(())
        }
        Commands::DeviceSettingsHeader => {
            print!("{}", otaforge_firmware::device_settings::c_header());
            Ok(())
        }
        Commands::Ports { json } => flash::ports(&dir, json),
        Commands::Flash(args) => flash::flash(&dir, args),
        Commands::Provision(args) => flash::provision(&dir, args),
        Commands::Board(args) => flash::board(&dir, args),
        Commands::Monitor(args) => flash::monitor(&dir, args),
        Commands::Serve(args) => serve::serve(&dir, args),
        Commands::Check(args) => serve::check(&dir, args),
        Commands::Publish(args) => releases::publish_file(&dir, args),
        Commands::Releases { channel } => releases::releases(&dir, channel.as_deref()),
        Commands::Devices(args) => devices::run(&dir, args),
        Commands::Rollout(args) => releases::rollout(&dir, args),
        Commands::Sim(cmd) => sim::run(&dir, cmd),
        Commands::Demo(args) => demo::demo(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
