//! Steps that are not built yet say what they will do, so the user sees the whole path.

use super::Step;

pub(super) fn ui(ui: &mut egui::Ui, step: Step) {
    ui.heading(step.title());
    ui.add_space(8.0);
    let text = match step {
        Step::Flash => {
            "Coming next: flash an ESP8266 or ESP32 over USB with progress, automatic baud fallback and \
             plain-words diagnosis — or a virtual device when no board is plugged in."
        }
        Step::Serve => {
            "Coming next: the HTTPS update server devices poll. Drag a .bin onto the window to publish \
             it and watch each device download it live."
        }
        Step::Certificate | Step::Firmware => "",
    };
    ui.label(text);
    ui.add_space(8.0);
    ui.label("Until then, the Certificate step's export gives you the CA for your own sketch.");
}
