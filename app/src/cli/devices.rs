//! `otaforge devices`: the inventory as a table (or JSON), and `devices rename` / `devices forget`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use otaforge_server::device::parse_mac;
use otaforge_store::{Device, Store};

/// `otaforge devices`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DevicesArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Change one device instead of listing them.
    #[command(subcommand)]
    pub command: Option<DevicesCommand>,
}

/// `otaforge devices rename|forget`.
#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Show a device as NAME (here, in the app and in this list) instead of the name it
    /// reports; "" goes back to the reported one. The device itself is not changed.
    Rename {
        /// The device's MAC (AA:BB:CC:DD:EE:FF, dashes or none also work).
        mac: String,
        /// The name; "" clears it.
        name: String,
    },
    /// Remove a device from the inventory, with its name given here and its request history.
    /// Nothing is sent to it: if it still runs, it reappears at its next check.
    Forget {
        /// The device's MAC.
        mac: String,
    },
}

pub(super) fn run(dir: &Path, args: DevicesArgs) -> Result<()> {
    match args.command {
        None => list(dir, args.json),
        Some(DevicesCommand::Rename { mac, name }) => rename(dir, &mac, &name),
        Some(DevicesCommand::Forget { mac }) => forget(dir, &mac),
    }
}

fn mac_of(raw: &str) -> Result<String> {
    parse_mac(raw).with_context(|| format!("\"{raw}\" is not a MAC address (AA:BB:CC:DD:EE:FF)"))
}

fn unknown(mac: &str) -> anyhow::Error {
    anyhow::anyhow!("no device {mac} in the inventory (otaforge devices lists them)")
}

fn rename(dir: &Path, raw: &str, name: &str) -> Result<()> {
    let mac = mac_of(raw)?;
    let mut store = Store::open(dir)?;
    if !store.rename_device(&mac, name)? {
        return Err(unknown(&mac));
    }
    let d = store.device(&mac)?.ok_or_else(|| unknown(&mac))?;
    match (d.user_name.as_str(), d.name.as_str()) {
        ("", "") => println!("{mac}: name cleared (it reports none)"),
        ("", reported) => println!("{mac}: name cleared; shown as it reports itself, \"{reported}\""),
        (given, _) => println!("{mac}: shown as \"{given}\""),
    }
    Ok(())
}

fn forget(dir: &Path, raw: &str) -> Result<()> {
    let mac = mac_of(raw)?;
    let mut store = Store::open(dir)?;
    if !store.forget_device(&mac)? {
        bail!(unknown(&mac));
    }
    println!(
        "Forgot {mac}: its record, name and request history. If it still runs, it reappears at its \
         next check (a running otaforge serve lists it until then)."
    );
    Ok(())
}

/// When the device's next check is due, in words ("in 3 min", "overdue by 2 h"; "-" until known).
fn next_check(d: &Device, now: i64) -> String {
    let Some(at) = d.next_check_at() else { return "-".into() };
    let left = at - now;
    let words = |s: i64| match s {
        ..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    };
    if left >= 0 { format!("in {}", words(left)) } else { format!("overdue by {}", words(-left)) }
}

fn list(dir: &Path, json: bool) -> Result<()> {
    let store = Store::open(dir)?;
    let devices = store.devices()?;
    let now = otaforge_store::now_unix();
    if json {
        let rows: Vec<serde_json::Value> = devices
            .iter()
            .map(|d| {
                let mut v = serde_json::to_value(d).unwrap_or_default();
                v["silent_since_update"] = d.silent_since_update(now).into();
                v["next_check_at"] = d.next_check_at().into();
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if devices.is_empty() {
        println!("No device has checked in yet.");
        return Ok(());
    }
    println!(
        "{:<17}  {:<16}  {:<7}  {:<10}  {:<8}  {:<15}  {:<16}  {:<19}  why",
        "MAC", "name", "chip", "version", "channel", "address", "next check", "state"
    );
    let named = devices.iter().any(|d| !d.user_name.is_empty());
    for d in devices {
        let state = match d.silent_since_update(now) {
            Some(_) => "silent since update",
            None => d.state.label(),
        };
        // A name given here is marked, so it is not mistaken for what the device reports.
        let name = match (d.user_name.as_str(), d.name.as_str()) {
            ("", "") => "-".to_string(),
            ("", reported) => reported.to_string(),
            (given, _) => format!("{given} *"),
        };
        println!(
            "{:<17}  {:<16}  {:<7}  {:<10}  {:<8}  {:<15}  {:<16}  {:<19}  {}",
            d.mac,
            name,
            d.family,
            d.version.as_deref().unwrap_or("-"),
            d.channel,
            d.remote_ip,
            next_check(&d, now),
            state,
            d.last_reason
        );
    }
    if named {
        println!("(* = named here: otaforge devices rename MAC NAME; \"\" goes back to the reported name)");
    }
    Ok(())
}
