//! The `kubectl sluice` plugin: one file per command, rendering as pure functions of objects.
