//! `ec-node hdhr-lineup`: prints a tuner's device description and channel lineup.

use super::{Exit, Failure};
use argh::FromArgs;
use ec_node::hdhr::client::{self, ClientError};

/// Print an HDHomeRun device (discover.json) and its lineup (lineup.json).
#[derive(FromArgs)]
#[argh(subcommand, name = "hdhr-lineup")]
pub struct Args {
    /// device address: HOST or HOST:PORT (the device's web port, 80 unless given)
    #[argh(positional)]
    device: String,
}

/// Runs the subcommand.
pub fn run(args: Args) -> Result<(), Failure> {
    let (device, channels) = client::fetch(&args.device).map_err(|e| match e {
        ClientError::Unreachable(..) => Failure::new(Exit::Connect, e.to_string()),
        _ => Failure::other(e.to_string()),
    })?;
    println!(
        "device {} \"{}\" (model {}, firmware {}), {} tuners",
        device.id, device.name, device.model, device.firmware, device.tuners
    );
    for c in &channels {
        println!(
            "{}\t{}\t{} {}\t{}",
            c.guide_number, c.guide_name, c.video_codec, c.audio_codec, c.url
        );
    }
    Ok(())
}
