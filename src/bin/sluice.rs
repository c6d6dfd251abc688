//! The Sluice controller process.
fn main() {}
