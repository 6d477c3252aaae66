//! Images that run only on OTA Forge's virtual boards: `otaforge sim reference-image`, the demo's
//! and "Try without hardware"'s builds. They carry [`crate::synth::SYNTHETIC_MARKER`] in their
//! config block's segment, so whoever holds the file (inspect, the Firmware and Flash steps, the
//! flasher) can tell it is filler in a real image layout, not firmware a real board could run.

/// The words every place that finds the marker uses.
pub const VIRTUAL_BOARDS_ONLY: &str = "virtual boards only";

/// Why, in a few words.
pub const WHY: &str = "a stand-in made by `otaforge sim reference-image` (or the demo): its code is filler \
                       in a real image layout. A real board needs a build of the reference sketch.";

/// The sentence said about such an image.
pub const NOTE: &str = "Runs on virtual boards only: a stand-in made by `otaforge sim reference-image` (or the \
                        demo): its code is filler in a real image layout. A real board needs a build of the \
                        reference sketch.";

/// Whether `image` is a stand-in for virtual boards.
pub fn is_virtual_only(image: &[u8]) -> bool {
    super::synth::is_synthetic(image)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_note_uses_the_words() {
        let note = format!("Runs on {}: {}", super::VIRTUAL_BOARDS_ONLY, super::WHY);
        assert_eq!(super::NOTE, note);
    }
}
