//! Ctrl-C and SIGTERM: turned into a shared stop flag that long-running commands poll, so they
//! finish cleanly (playlists closed, sockets shut) instead of dying mid-write.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Set once SIGINT or SIGTERM arrives; cheap to clone and poll.
#[derive(Clone, Debug, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// A flag that SIGINT and SIGTERM set. A second signal while stopping ends the process at
    /// once (exit 130), for a stop that hangs.
    pub fn on_signals() -> std::io::Result<StopFlag> {
        let flag = StopFlag::default();
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register_conditional_shutdown(signal, 130, flag.0.clone())?;
            signal_hook::flag::register(signal, flag.0.clone())?;
        }
        Ok(flag)
    }

    /// Whether a stop was requested.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Requests a stop (used when one part of a command ends the others).
    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
