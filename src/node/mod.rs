//! Pipelines: threads joined by bounded channels, wired from the format, capture and output
//! modules. No format or protocol logic lives here — only who runs where, what flows between
//! them, and how a stop propagates.

pub mod demo;
pub mod forward;
pub mod ingest;
pub mod publish;
pub mod record;
pub mod serve;
pub mod subscribe;
pub mod timing;
pub mod tuner;
