//! The `kubectl sluice` plugin: commands, rendering and the writes it makes.
