//! The serial monitor.
