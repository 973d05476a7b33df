//! `ec-node id`.
use super::Failure;
use argh::FromArgs;
use ec_node::crypto::NodeKey;
use std::path::PathBuf;

/// Print the node id of a key file.
#[derive(FromArgs)]
#[argh(subcommand, name = "id")]
pub struct Args {
    /// the secret key file written by `ec-node keygen`
    #[argh(option)]
    key: PathBuf,
}

/// Runs the subcommand. A missing or corrupt key file is a usage error (exit 2).
pub fn run(args: Args) -> Result<(), Failure> {
    let key = NodeKey::read(&args.key).map_err(|e| Failure::usage(e.to_string()))?;
    println!("{}", key.node_id());
    Ok(())
}
