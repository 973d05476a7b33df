//! The deterministic chunker.
