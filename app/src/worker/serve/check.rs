//! Checking a file before it is published, and publishing it: the same checks as
//! `otaforge publish` (so the window and the CLI refuse the same things), plus what the fleet
//! reports about its free space.

use std::path::Path;
use std::sync::Arc;

use super::{PublishCheck, PublishDraft, sentence};
use otaforge_actions::channels;
use otaforge_actions::publish::{self as publish, PublishRequest};
use otaforge_firmware as firmware;
use otaforge_store::{Device, PayloadKind, Release, Store};

fn request(draft: &PublishDraft, sign_with: Option<Arc<otaforge_pki::signing::Keys>>) -> PublishRequest {
    let version = Some(draft.version.trim()).filter(|v| !v.is_empty()).map(str::to_string);
    PublishRequest {
        channel: draft.channel.trim().to_string(),
        kind: PayloadKind::Sketch,
        version,
        notes: String::new(),
        file_name: draft.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        gzip: draft.gzip,
        sign_with,
    }
}

/// Reads and checks a file the way `otaforge publish` does; nothing is stored.
pub fn check_file(dir: &Path, draft: PublishDraft, devices: Vec<Device>) -> PublishCheck {
    let mut check = PublishCheck {
        size: 0,
        inspection: Err(String::new()),
        found_version: None,
        current: None,
        problems: Vec::new(),
        warnings: Vec::new(),
        checked: None,
        must_sign: false,
        draft,
    };
    let bytes = match std::fs::read(&check.draft.path) {
        Ok(b) => b,
        Err(e) => {
            let why = format!("Cannot read {}: {e}", check.draft.path.display());
            check.inspection = Err(why.clone());
            check.problems.push(why);
            return check;
        }
    };
    check.size = bytes.len() as u64;
    check.inspection = firmware::report(&bytes).map(Box::new).map_err(|e| sentence(&e.to_string()));
    let info = check.inspection.as_ref().ok().map(|r| &r.image);
    check.found_version = firmware::carried_version::carried_version(&bytes, info).map(|(v, _)| v);
    let store = match Store::open(dir) {
        Ok(s) => s,
        Err(e) => {
            check.problems.push(sentence(&e.to_string()));
            return check;
        }
    };
    check.must_sign = publish::signing_needed(&store, check.draft.channel.trim()).unwrap_or(false);
    let sign_with = if check.draft.sign || check.must_sign {
        match otaforge_pki::signing::load(dir) {
            Ok(keys) => Some(Arc::new(keys)),
            Err(e) => {
                check.problems.push(sentence(&e.to_string()));
                return check;
            }
        }
    } else {
        None
    };
    let req = request(&check.draft, sign_with);
    check.current = store
        .channel(&req.channel)
        .ok()
        .flatten()
        .and_then(|c| c.current_sketch)
        .and_then(|id| store.release(id).ok());
    let channel = req.channel.clone();
    if let Some(warning) = new_channel_warning(&store, &channel) {
        check.warnings.push(warning);
    }
    match publish::check(&store, bytes, req) {
        Ok(checked) => {
            check.warnings.extend(checked.warnings.iter().cloned());
            check.checked = Some(Arc::new(checked));
        }
        Err(e) => check.problems.push(sentence(&e.to_string())),
    }
    let short: Vec<&Device> = devices
        .iter()
        .filter(|d| d.channel == channel && d.free_space.is_some_and(|f| f < check.size))
        .collect();
    if !short.is_empty() {
        let on_channel = devices.iter().filter(|d| d.channel == channel).count();
        let least = short.iter().filter_map(|d| d.free_space).min().unwrap_or(0);
        check.warnings.push(format!(
            "{} of {on_channel} devices on \"{}\" report less free space ({} KB at least) than this {} KB \
             image: they will not be offered it.",
            short.len(),
            channel,
            least / 1024,
            check.size / 1024
        ));
    }
    check
}

/// The window's `--create`: publishing to a channel that does not exist makes it, so the check
/// says so before Publish is pressed (a mistyped name would otherwise be a channel no device polls).
fn new_channel_warning(store: &Store, channel: &str) -> Option<String> {
    let channels = channels::Channels::of(store).ok()?;
    let name = channels::channel_or_default(channel);
    (!channels.exists(name)).then(|| {
        format!(
            "There is no channel \"{name}\" yet (channels: {}): publishing creates it, and only devices \
             whose firmware was baked for \"{name}\" will poll it. Check the name if that is not what you meant.",
            channels::quoted(&channels.all())
        )
    })
}

/// Publishes what [`check_file`] passed: the bytes it read, not the file as it is now.
pub(super) fn publish_checked(dir: &Path, checked: &publish::Checked) -> Result<Release, String> {
    let mut store = Store::open(dir).map_err(|e| sentence(&e.to_string()))?;
    publish::publish(&mut store, checked).map_err(|e| sentence(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_channel_is_named_before_it_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for existing in ["stable", "", "demo"] {
            assert_eq!(new_channel_warning(&store, existing), None, "{existing:?} always exists");
        }
        let warning = new_channel_warning(&store, "stabel").expect("a typo is a new channel");
        assert!(warning.contains("no channel \"stabel\"") && warning.contains("\"stable\""), "{warning}");
        drop(store);
        // The publish dialog shows it among the check's warnings.
        let path = dir.path().join("fw.bin");
        std::fs::write(&path, firmware::ImageBuilder::for_chip(firmware::Chip::Esp8266).build()).unwrap();
        let draft = PublishDraft {
            path,
            version: "1.0.0".into(),
            channel: "stabel".into(),
            sign: false,
            gzip: false,
        };
        let check = check_file(dir.path(), draft, Vec::new());
        assert!(check.warnings.contains(&warning), "{:?}", check.warnings);
    }
}
