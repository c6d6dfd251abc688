//! Snapshot tests of the renderers.
