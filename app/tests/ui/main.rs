//! The desktop app, driven headless with egui_kittest the way a user clicks, with its real worker
//! thread and real files; snapshots are compared as images.

#[path = "../support/mod.rs"]
mod support;
#[path = "../ui_support/mod.rs"]
mod ui_support;

mod certificate;
mod copy;
mod fake_toolchain;
mod file_fields;
mod firmware;
mod firmware_build;
mod flash;
mod layout;
mod restart;
mod serve;
mod snapshots;
mod steps_2_3;
