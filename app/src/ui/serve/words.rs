//! Numbers and times in words, and result lines, as the Serve step shows them.

/// Bytes in words: "512 B", "420 KB", "1.2 MB".
pub(crate) fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{} KB", n / 1024),
        _ => format!("{:.1} MB", n as f64 / 1_048_576.0),
    }
}

/// Unix seconds as a UTC time of day (dates for anything older than a day).
pub(crate) fn clock(at: i64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(at) else { return "?".into() };
    if otaforge_store::now_unix() - at > 86_400 {
        return t.date().to_string();
    }
    format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
}

/// How long ago, in words.
pub(crate) fn ago(at: i64) -> String {
    let secs = (otaforge_store::now_unix() - at).max(0);
    match secs {
        0..5 => "just now".into(),
        5..60 => format!("{secs} s ago"),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86_400 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// A result line: ✔ in the text colour, ✖ in the error colour.
pub(crate) fn message(ui: &mut egui::Ui, ok: bool, text: &str) {
    if ok {
        ui.label(format!("✔ {text}"));
    } else {
        ui.colored_label(ui.visuals().error_fg_color, format!("✖ {text}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages_in_words() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(420_000), "410 KB");
        assert_eq!(bytes(12_000_000), "11.4 MB");
        let now = otaforge_store::now_unix();
        assert_eq!(ago(now), "just now");
        assert_eq!(ago(now - 90), "1 min ago");
        assert_eq!(ago(now - 7200), "2 h ago");
    }
}
