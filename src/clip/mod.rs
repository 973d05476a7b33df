//! The built-in clip.
