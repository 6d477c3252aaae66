//! `otaforge cert …` and `otaforge hosts`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use time::OffsetDateTime;

use otaforge_pki::{
    self as pki, CertInfo, CertReport, Host, IssueRequest, KeyKind, TrustMode, export, local,
};
use otaforge_project::{self as project, Secrecy};

/// Certificate subcommands.
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Make a private CA and a server certificate for the update-server host(s).
    New {
        /// Name or IP address devices use to reach the server (repeat for more).
        #[arg(long = "host", required = true, value_name = "HOST")]
        hosts: Vec<String>,
        /// Key algorithm.
        #[arg(long, value_enum, default_value_t = KeyArg::Ecdsa)]
        key: KeyArg,
        /// Make one self-signed certificate for devices to pin, as the tutorial did (no CA: when it
        /// expires every device must be reflashed).
        #[arg(long)]
        pin_leaf: bool,
        /// Server certificate validity in days.
        #[arg(long, default_value_t = pki::DEFAULT_SERVER_DAYS)]
        days: u32,
        /// Replace existing material. The old files move to retired/; devices that trust the old CA
        /// stop updating until reflashed.
        #[arg(long)]
        force: bool,
    },
    /// Show the certificates, their names, fingerprints and validity, and what needs attention.
    Show {
        /// Also check that this host is covered (repeatable).
        #[arg(long = "host", value_name = "HOST")]
        hosts: Vec<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Issue a new server certificate from the same CA; devices keep working.
    Renew {
        /// Hosts for the new certificate (default: those of the current one).
        #[arg(long = "host", value_name = "HOST")]
        hosts: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = pki::DEFAULT_SERVER_DAYS)]
        days: u32,
    },
    /// Print or write the trust anchor devices need (never a private key).
    Export {
        /// A C header (string literal, PROGMEM on ESP8266) instead of PEM.
        #[arg(long)]
        c_header: bool,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// Key algorithm choice on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyArg {
    /// ECDSA P-256 (default: small and fast on devices).
    Ecdsa,
    /// RSA 2048 (what the tutorial made).
    Rsa,
}

impl From<KeyArg> for KeyKind {
    fn from(k: KeyArg) -> Self {
        match k {
            KeyArg::Ecdsa => KeyKind::EcdsaP256,
            KeyArg::Rsa => KeyKind::Rsa2048,
        }
    }
}

fn parse_hosts(raw: &[String]) -> Result<Vec<Host>> {
    raw.iter().map(|h| Host::parse(h).map_err(Into::into)).collect()
}

pub(super) fn run(dir: &Path, cmd: CertCommand) -> Result<()> {
    match cmd {
        CertCommand::New { hosts, key, pin_leaf, days, force } => {
            let mut req = IssueRequest::new(parse_hosts(&hosts)?);
            req.key = key.into();
            req.mode = if pin_leaf { TrustMode::PinLeaf } else { TrustMode::PrivateCa };
            req.server_days = days;
            let report = pki::generate(dir, &req, force)?;
            println!("Wrote {} in {}", files_written(&report), dir.display());
            print_report(&report);
        }
        CertCommand::Show { hosts, json } => {
            let hosts = parse_hosts(&hosts)?;
            let report =
                pki::load(dir, &hosts)?.ok_or_else(|| pki::PkiError::NoMaterial { dir: dir.into() })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_report(&report);
            }
        }
        CertCommand::Renew { hosts, days } => {
            let hosts = parse_hosts(&hosts)?;
            let report = pki::renew(dir, (!hosts.is_empty()).then_some(hosts), days)?;
            println!(
                "Renewed the server certificate; the previous one is in {}.",
                dir.join(pki::RETIRED_DIR).display()
            );
            print_report(&report);
        }
        CertCommand::Export { c_header, out } => {
            let material =
                pki::Material::load(dir)?.ok_or_else(|| pki::PkiError::NoMaterial { dir: dir.into() })?;
            let text =
                if c_header { export::c_header(&material)? } else { export::pem(&material).to_string() };
            match out {
                Some(path) => {
                    project::write_atomic(&path, text.as_bytes(), Secrecy::Public)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!("Wrote {}", path.display());
                }
                None => std::io::stdout().write_all(text.as_bytes())?,
            }
        }
    }
    Ok(())
}

fn files_written(report: &CertReport) -> &'static str {
    match report.mode {
        TrustMode::PrivateCa => "ca.pem, ca.key, server.pem, server.key",
        TrustMode::PinLeaf => "server.pem, server.key",
    }
}

/// Prints a report the way `cert show` does.
pub fn print_report(report: &CertReport) {
    let now = OffsetDateTime::now_utc();
    println!("Project: {}", report.dir.display());
    println!(
        "Trust:   {}",
        match report.mode {
            TrustMode::PrivateCa =>
                "private CA (devices trust the CA; the server certificate can be renewed freely)",
            TrustMode::PinLeaf => "pinned leaf (devices trust this one server certificate)",
        }
    );
    if let Some(ca) = &report.ca {
        println!("\nCA certificate ({})", pki::CA_CERT);
        print_cert(ca, now);
    }
    println!("\nServer certificate ({})", pki::SERVER_CERT);
    print_cert(&report.server, now);
    if report.warnings.is_empty() {
        println!("\nNo problems found.");
    } else {
        println!("\nNeeds attention:");
        for w in &report.warnings {
            println!("  ! {w}");
        }
    }
}

fn print_cert(c: &CertInfo, now: OffsetDateTime) {
    println!("  Subject:   {}", c.subject);
    if c.issuer != c.subject {
        println!("  Issuer:    {}", c.issuer);
    }
    let names = c.names_text();
    if !names.is_empty() {
        println!("  Names:     {names}");
    }
    println!("  Key:       {} (signature {})", c.key, c.signature);
    if c.is_ca {
        println!("  CA:        yes{}", c.path_len.map(|p| format!(", path length {p}")).unwrap_or_default());
    }
    println!(
        "  Valid:     {} to {} ({} days left)",
        c.not_before.date(),
        c.not_after.date(),
        c.days_left(now)
    );
    println!("  SHA-256:   {}", c.sha256);
}

pub(super) fn hosts(check: Option<&str>) -> Result<()> {
    let local = local::LocalHosts::discover();
    match &local.hostname {
        Some(h) => println!("Host name: {h}"),
        None => println!("Host name: (none set)"),
    }
    if local.addresses.is_empty() {
        println!("No network addresses besides loopback: devices cannot reach this machine yet.");
    }
    for a in &local.addresses {
        println!("Address:   {} ({})", a.ip, a.interface);
    }
    println!(
        "Suggested: {}",
        local.suggestions().iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    );
    if let Some(raw) = check {
        let host = Host::parse(raw)?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let resolution = rt.block_on(local::check(&host, &local));
        println!("{}", resolution.describe(&host));
        if !resolution.reaches_here() {
            bail!("{host} does not lead to this machine");
        }
    }
    Ok(())
}
