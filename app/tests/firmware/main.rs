//! Step 2, Firmware: baking settings into images and sketches (and NVS partitions checked against
//! Espressif's generator), and the reference sketches compiled on the host.

#[path = "../support/mod.rs"]
mod support;

mod bake;
mod build;
mod sketches;
