//! What the whole window does beyond the steps: keyboard shortcuts, the theme switch, and the
//! overlay that says what a file dragged over the window will do.

use super::Step;

/// Ctrl+1…4 (Cmd on macOS) open a step; Tab and Shift+Tab move between controls, Enter or Space
/// press the focused one (egui's own keyboard navigation).
pub(super) fn step_shortcut(ctx: &egui::Context) -> Option<Step> {
    const KEYS: [egui::Key; 4] = [egui::Key::Num1, egui::Key::Num2, egui::Key::Num3, egui::Key::Num4];
    ctx.input_mut(|i| {
        KEYS.iter()
            .zip(Step::ALL)
            .find(|(key, _)| i.consume_key(egui::Modifiers::COMMAND, **key))
            .map(|(_, step)| step)
    })
}

/// The theme switch (system, light, dark) and the shortcut hint, for the bottom of the sidebar.
pub(super) fn sidebar_footer(ui: &mut egui::Ui) {
    ui.small("Ctrl+1…4: steps · Tab: next control");
    egui::widgets::global_theme_preference_buttons(ui);
}

/// While files hover over the window, a veil saying what dropping them will do.
pub(super) fn drop_overlay(ctx: &egui::Context, step: Step) {
    let hovering = ctx.input(|i| !i.raw.hovered_files.is_empty());
    if !hovering {
        return;
    }
    let text = match step {
        Step::Serve => "Drop the .bin to check it and publish it",
        Step::Flash => "Drop the .bin to flash it",
        _ => "Drop the .bin to inspect it and bake settings into it",
    };
    let layer = egui::LayerId::new(egui::Order::Foreground, egui::Id::unique("otaforge-drop-overlay"));
    let painter = ctx.layer_painter(layer);
    let rect = ctx.content_rect();
    painter.rect_filled(rect, 0.0, egui::Color32::from_black_alpha(180));
    painter.text(
        rect.center(),
        egui::Align2::CENTER_CENTER,
        text,
        egui::FontId::proportional(24.0),
        egui::Color32::WHITE,
    );
}

/// The smallest text the app draws, in points (pixels at scale 1).
pub const MIN_TEXT_SIZE: f32 = 11.0;

/// egui's Small text style is 9 px, too small to read, and fingerprints and hints used it: every
/// text style is raised to [`MIN_TEXT_SIZE`] here, where the app is built, so the real window and
/// the headless tests (which build it the same way) draw the same sizes.
pub(super) fn text_sizes(ctx: &egui::Context) {
    ctx.all_styles_mut(|style| {
        for font in style.text_styles.values_mut() {
            font.size = font.size.max(MIN_TEXT_SIZE);
        }
    });
}
