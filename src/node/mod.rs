//! Pipelines: threads joined by bounded channels, wired from the format, capture, MoQ and
//! output modules, and the MoQ application layer they share ([`tracks`]). No format or
//! protocol logic lives here — only who runs where, what flows between them, and how a stop
//! propagates.

pub mod cat;
pub mod demo;
pub mod folder;
pub mod forward;
pub mod ingest;
pub mod lan;
pub mod publish;
pub mod record;
pub mod subscribe;
pub mod timing;
pub mod tracks;
pub mod tuner;
