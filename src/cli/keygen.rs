//! `ec-node keygen`.
use super::Failure;
use argh::FromArgs;
use ec_node::crypto::{KeyError, NodeKey};
use std::path::PathBuf;

/// Generate a node key (Ed25519), write it with mode 0600 and print the node id.
#[derive(FromArgs)]
#[argh(subcommand, name = "keygen")]
pub struct Args {
    /// where to write the secret key
    #[argh(option)]
    out: PathBuf,
    /// replace an existing key file
    #[argh(switch)]
    force: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> Result<(), Failure> {
    let key = NodeKey::generate().map_err(|e| Failure::other(e.to_string()))?;
    key.write(&args.out, args.force).map_err(|e| match e {
        KeyError::Exists(_) => Failure::usage(e.to_string()),
        // A folder that does not exist is a wrong --out, not a failure of the machine.
        KeyError::Io(_, ref io) if io.kind() == std::io::ErrorKind::NotFound => {
            Failure::usage(e.to_string())
        }
        _ => Failure::other(e.to_string()),
    })?;
    println!("{}", key.node_id());
    Ok(())
}
