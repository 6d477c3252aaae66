//! `otaforge key …`: the firmware signing keys, and signing or checking a file by hand.

use otaforge_pki::signing::short;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};

use otaforge_firmware::signature;
use otaforge_pki::signing::{self, Family, FamilyKeys, Keys, PublicKey};
use otaforge_project::{self as project, Secrecy};

/// Signing-key subcommands.
#[derive(Debug, Subcommand)]
#[command(after_long_help = ROTATION_HELP)]
pub enum KeyCommand {
    /// Make the signing keys (RSA-2048 for ESP8266, ECDSA P-256 for ESP32). Private keys stay in
    /// the project directory, mode 0600; only the public keys go into firmware.
    New {
        /// Only this family's key (default: both).
        #[arg(long, value_enum)]
        family: Option<FamilyArg>,
        /// Replace an existing key; the old one moves to retired/ (see ROTATION below).
        #[arg(long)]
        replace: bool,
    },
    /// Show the keys, their fingerprints and the retired ones.
    Show,
    /// Print or write a public key (never a private one).
    Export {
        /// Which family's key.
        #[arg(long, value_enum)]
        family: FamilyArg,
        /// A C header instead of PEM.
        #[arg(long)]
        c_header: bool,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Sign a firmware file in its family's format (for pipelines that host updates elsewhere;
    /// `otaforge publish --sign` does this for releases).
    Sign {
        /// The image (.bin, or .bin.gz for ESP8266: signed after compressing).
        file: PathBuf,
        /// Which family's format and key.
        #[arg(long, value_enum)]
        family: FamilyArg,
        /// Where to write the signed file.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Check a signed file as the device would, against the project's keys (current and retired).
    Verify {
        /// The signed file.
        file: PathBuf,
        /// Which family's format.
        #[arg(long, value_enum)]
        family: FamilyArg,
    },
}

const ROTATION_HELP: &str = "ROTATION: a device checks updates against the key baked into the firmware it runs. To move \
to a new key without reflashing, publish a release signed by the current key that carries the new public key, let \
devices install it, then replace the key (otaforge key new --replace) and sign with the new one.";

/// A device family, as given on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FamilyArg {
    /// ESP8266 (RSA-2048).
    Esp8266,
    /// ESP32 family (ECDSA P-256).
    Esp32,
}

impl From<FamilyArg> for Family {
    fn from(f: FamilyArg) -> Family {
        match f {
            FamilyArg::Esp8266 => Family::Esp8266,
            FamilyArg::Esp32 => Family::Esp32,
        }
    }
}

/// Runs a `key` subcommand.
pub fn run(dir: &Path, cmd: KeyCommand) -> Result<()> {
    match cmd {
        KeyCommand::New { family, replace } => {
            let families: Vec<Family> = family.map(|f| vec![f.into()]).unwrap_or(Family::ALL.to_vec());
            let keys = signing::generate(dir, &families, replace)?;
            print_keys(&keys);
            println!(
                "Next: otaforge key export --family esp8266 --c-header, or bake: the public key goes into the firmware."
            );
            Ok(())
        }
        KeyCommand::Show => {
            let keys = signing::load(dir)?;
            if keys.current.is_empty() && keys.retired.is_empty() {
                println!("No signing keys yet: otaforge key new");
            }
            print_keys(&keys);
            Ok(())
        }
        KeyCommand::Export { family, c_header, out } => {
            let key = current_public(dir, family.into())?;
            let text = if c_header { key.to_c_header() } else { key.to_pem() };
            match out {
                Some(path) => {
                    project::write_atomic(&path, text.as_bytes(), Secrecy::Public)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    println!(
                        "Wrote the {family:?} public key to {}",
                        path.display(),
                        family = Family::from(family)
                    );
                }
                None => print!("{text}"),
            }
            Ok(())
        }
        KeyCommand::Sign { file, family, out } => {
            let keys = signing::load(dir)?;
            let family = Family::from(family);
            let Some(key) = keys.current(family) else {
                bail!(
                    "this project has no {family} signing key: otaforge key new --family {}",
                    family_slug(family)
                )
            };
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            if signature::split(family, &bytes).is_some_and(|s| key.public().verify(s.body, s.signature)) {
                bail!("{} is already signed by this key: nothing to do", file.display());
            }
            let signed = signature::sign(&bytes, key)?;
            project::write_atomic(&out, &signed, Secrecy::Public)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!(
                "Signed {} ({} bytes) with the {family} key {}: {}",
                file.display(),
                bytes.len(),
                short(&key.public().fingerprint()),
                out.display()
            );
            Ok(())
        }
        KeyCommand::Verify { file, family } => {
            let keys = signing::load(dir)?;
            let family = Family::from(family);
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let report = describe(&keys, family, &bytes);
            println!("{report}");
            if report.starts_with("signed by") {
                Ok(())
            } else {
                bail!("{} would be refused by the device", file.display())
            }
        }
    }
}

/// One line about a file's signature: which of the project's keys made it, or why it fails.
pub fn describe(keys: &Keys, family: Family, bytes: &[u8]) -> String {
    let known = keys.all_public(family);
    if known.is_empty() {
        return format!("no {family} signing key in this project to check against");
    }
    let mut last = signature::SignatureError::Unsigned;
    for key in &known {
        match signature::verify(bytes, key) {
            Ok(()) => {
                let fp = key.fingerprint();
                let whose = match keys.signer(&fp) {
                    signing::Signer::Current => "this project's current",
                    signing::Signer::Retired => "a retired",
                    signing::Signer::Unknown => "an unknown",
                };
                return format!("signed by {whose} {family} key {}: the signature verifies", short(&fp));
            }
            Err(e) => last = e,
        }
    }
    match last {
        signature::SignatureError::Mismatch => {
            format!("{last}: not signed by any of this project's keys, or changed after signing")
        }
        e => e.to_string(),
    }
}

fn current_public(dir: &Path, family: Family) -> Result<PublicKey> {
    let keys = signing::load(dir)?;
    match keys.current(family) {
        Some(k) => Ok(k.public()),
        None => bail!(
            "this project has no {family} signing key: otaforge key new --family {}",
            family_slug(family)
        ),
    }
}

fn print_keys(keys: &Keys) {
    for key in &keys.current {
        let public = key.public();
        println!(
            "{:<8} {}  {}  (current)",
            key.family().to_string(),
            public.fingerprint(),
            key.family().algorithm()
        );
    }
    for (folder, public) in &keys.retired {
        println!(
            "{:<8} {}  retired in {}",
            public.family.to_string(),
            public.fingerprint(),
            folder.display()
        );
    }
}

fn family_slug(family: Family) -> &'static str {
    match family {
        Family::Esp8266 => "esp8266",
        Family::Esp32 => "esp32",
    }
}
