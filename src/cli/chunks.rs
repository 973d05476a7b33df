//! `ec-node chunks`.
use super::Failure;
use argh::FromArgs;

/// Cut a transport stream into deterministic chunks and print one line per chunk.
#[derive(FromArgs)]
#[argh(subcommand, name = "chunks")]
pub struct Args {}

/// Runs the subcommand.
pub fn run(_args: Args) -> Result<(), Failure> {
    Err(Failure::other("chunks: work in progress"))
}
