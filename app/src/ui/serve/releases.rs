//! Releases: what each channel serves now and to what share of devices, its history, and the
//! controls to promote, roll back, pause and resume. A release a channel serves whose firmware
//! file is damaged is shown disabled with the reason, and rows that cannot be read are named.

use std::collections::HashMap;

use egui::RichText;

use super::{bytes, clock};
use crate::worker::{Command, ServeCommand, Worker};
use otaforge_store::{Channel, PayloadKind, Release};

/// What the tab lists.
pub(super) struct Lists<'a> {
    pub channels: &'a [Channel],
    pub releases: &'a [Release],
    /// Releases a channel serves that cannot be served, with why.
    pub disabled: &'a HashMap<i64, String>,
    /// Rows that cannot be read, in words.
    pub unreadable: &'a [String],
}

pub(super) fn ui(
    ui: &mut egui::Ui,
    worker: &Worker,
    lists: Lists<'_>,
    edits: &mut HashMap<String, u8>,
    targets: &mut HashMap<String, String>,
) {
    for row in lists.unreadable {
        ui.colored_label(
            ui.visuals().error_fg_color,
            format!("{row}: it is left out. Fix that column, or restore otaforge.db from a backup."),
        );
    }
    if lists.releases.is_empty() {
        if lists.unreadable.is_empty() {
            ui.label(
                "No releases yet. Drop a .bin on this window, or type its path under Firmware to publish, to \
                 publish one.",
            );
        }
        return;
    }
    egui::ScrollArea::vertical().id_salt("releases").auto_shrink([false, false]).show(ui, |ui| {
        for channel in lists.channels {
            channel_ui(ui, worker, channel, &lists, edits, targets);
            ui.add_space(10.0);
        }
    });
}

fn channel_ui(
    ui: &mut egui::Ui,
    worker: &Worker,
    channel: &Channel,
    lists: &Lists<'_>,
    edits: &mut HashMap<String, u8>,
    targets: &mut HashMap<String, String>,
) {
    let history: Vec<&Release> = lists.releases.iter().filter(|r| r.channel == channel.name).collect();
    let current = history.iter().find(|r| Some(r.id) == channel.current_sketch);
    let name = &channel.name;
    let path = if name == otaforge_protocol::DEFAULT_CHANNEL {
        "/update".to_string()
    } else {
        format!("/update/{name}")
    };
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new(format!("Channel \"{name}\"")).strong());
        ui.label(RichText::new(path).monospace());
        match current {
            Some(r) => ui.label(format!("serves {} (#{})", r.version, r.id)),
            None => ui.label("serves nothing"),
        };
        if channel.paused {
            ui.colored_label(ui.visuals().warn_fg_color, "paused");
        }
    });
    for r in
        history.iter().filter(|r| Some(r.id) == channel.current_sketch || Some(r.id) == channel.current_fs)
    {
        if let Some(why) = lists.disabled.get(&r.id) {
            ui.colored_label(
                ui.visuals().error_fg_color,
                format!(
                    "{} (#{}) is disabled: {why}. Devices on \"{name}\" are told 304 until the file is restored \
                     from a backup or another release is made current (roll back, or publish a newer one).",
                    r.version, r.id
                ),
            );
        }
    }
    ui.horizontal_wrapped(|ui| {
        let share = edits.entry(name.clone()).or_insert(channel.rollout_percent);
        let label = ui.label(format!("Rollout share of \"{name}\""));
        ui.add(egui::Slider::new(share, 0..=100).suffix(" %")).labelled_by(label.id);
        let share = *share;
        if share != channel.rollout_percent && ui.button(format!("Offer to {share}%")).clicked() {
            worker.send(Command::Serve(ServeCommand::Rollout {
                channel: name.clone(),
                percent: Some(share),
                paused: None,
            }));
        }
        let (text, pause) = if channel.paused { ("Resume", false) } else { ("Pause", true) };
        if ui.button(format!("{text} \"{name}\"")).clicked() {
            worker.send(Command::Serve(ServeCommand::Rollout {
                channel: name.clone(),
                percent: None,
                paused: Some(pause),
            }));
        }
        let earlier =
            current.is_some_and(|c| history.iter().any(|r| r.id < c.id && r.kind == PayloadKind::Sketch));
        if ui.add_enabled(earlier, egui::Button::new(format!("Roll back \"{name}\""))).clicked() {
            worker.send(Command::Serve(ServeCommand::RollBack(name.clone())));
        }
    });
    if let Some(current) = current {
        promote_row(ui, worker, name, current, targets);
    }
    history_table(ui, worker, channel, &history, lists);
}

/// The channel's releases, newest first, each on two lines — number, version and its button, then
/// what else is known of it, wrapping — so a narrow window cuts nothing off.
fn history_table(
    ui: &mut egui::Ui,
    worker: &Worker,
    channel: &Channel,
    history: &[&Release],
    lists: &Lists<'_>,
) {
    for r in history {
        let is_current = Some(r.id) == channel.current_sketch || Some(r.id) == channel.current_fs;
        ui.separator();
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new(format!("#{}", r.id)).strong());
            let version = match (is_current, lists.disabled.contains_key(&r.id)) {
                (true, true) => format!("{} — current, disabled", r.version),
                (true, false) => format!("{} — current", r.version),
                _ => r.version.clone(),
            };
            ui.label(RichText::new(version).monospace());
            if !is_current && ui.button(format!("Make #{} current", r.id)).clicked() {
                worker.send(Command::Serve(ServeCommand::Promote { id: r.id, to: None }));
            }
        });
        ui.horizontal_wrapped(|ui| {
            let chip = match r.kind {
                PayloadKind::Sketch => r.chip.clone().unwrap_or_else(|| "?".into()),
                PayloadKind::Filesystem => "filesystem".into(),
            };
            ui.label(chip);
            ui.label(bytes(r.size));
            ui.label(format!("published {} UTC", clock(r.published_at)));
            if !r.file_name.is_empty() {
                ui.label(&r.file_name);
            }
            ui.label(RichText::new(signature(r)).monospace());
        });
    }
}

/// "signed by / verifies with" as short fingerprints (`otaforge key show` prints the long ones):
/// a carrier release is signed by one key and carries another.
fn signature(r: &Release) -> String {
    let short = |fp: &str| fp[..fp.len().min(8)].to_string();
    let signed =
        r.signed_by.as_deref().map_or("unsigned".to_string(), |by| format!("signed by {}", short(by)));
    match r.trusts.as_deref() {
        Some(t) if r.signed_by.as_deref().is_some_and(|by| by != t) => {
            format!("{signed}, carries {} (carrier)", short(t))
        }
        Some(t) => format!("{signed}, verifies {}", short(t)),
        None => signed,
    }
}

/// Copies the channel's current release to another channel (a beta build promoted to stable).
fn promote_row(
    ui: &mut egui::Ui,
    worker: &Worker,
    channel: &str,
    current: &Release,
    targets: &mut HashMap<String, String>,
) {
    ui.horizontal_wrapped(|ui| {
        let target = targets.entry(channel.to_string()).or_default();
        let label = ui.label(format!("Promote {} to channel", current.version));
        let edit = egui::TextEdit::singleline(target).hint_text("e.g. stable").desired_width(120.0);
        ui.add(edit).labelled_by(label.id);
        let to = target.trim().to_string();
        let usable = !to.is_empty() && to != channel;
        if ui.add_enabled(usable, egui::Button::new(format!("Promote \"{channel}\""))).clicked() {
            worker.send(Command::Serve(ServeCommand::Promote { id: current.id, to: Some(to) }));
            target.clear();
        }
    });
}
