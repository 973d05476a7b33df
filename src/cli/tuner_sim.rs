//! `ec-node tuner-sim`: an HDHomeRun double on one port, for tests and demos without hardware.
//! Turns flags into a [`SimConfig`], binds, prints one ready line and serves until stopped.

use super::{Exit, Failure};
use argh::FromArgs;
use ec_node::clip::BUILTIN_TS;
use ec_node::hdhr::sim::broadcast::{Broadcast, MAX_CLIP_BYTES};
use ec_node::hdhr::sim::server::Server;
use ec_node::hdhr::sim::{Channel, Fault, SimConfig, Simulator};
use ec_node::hdhr::GuideNumber;
use ec_node::stop::StopFlag;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;

/// Simulate an HDHomeRun tuner: discover.json, lineup.json, status.json and live MPEG-TS streams
/// of looped clips at /auto/vGUIDE and /tunerN/vGUIDE, with fault injection.
#[derive(FromArgs)]
#[argh(subcommand, name = "tuner-sim")]
pub struct Args {
    /// address to listen on, IP:PORT; port 0 picks a free port (default 127.0.0.1:5004)
    #[argh(option, default = "String::from(\"127.0.0.1:5004\")")]
    listen: String,
    /// transport stream to broadcast (default: the built-in clip)
    #[argh(option)]
    input: Option<String>,
    /// guide number of that channel (default 5.1)
    #[argh(option)]
    guide_number: Option<String>,
    /// a channel as GUIDE=FILE, repeatable; replaces --input and --guide-number
    #[argh(option)]
    channel: Vec<String>,
    /// number of tuners, 1-16 (default 2)
    #[argh(option, default = "2")]
    tuners: u8,
    /// fault to inject, repeatable: per connection no-data, stall-after:SECS, close-after:SECS,
    /// drop-every:N, garbage-every:SECS, refuse; on the broadcast clock (seconds since start,
    /// every connection) silence:AT:FOR, busy:AT:FOR (805), no-video:AT:FOR (807)
    #[argh(option)]
    fault: Vec<String>,
    /// apply the per-connection faults only to the first N stream connections (default: all)
    #[argh(option)]
    fault_connections: Option<u64>,
    /// apply the faults only to this channel, repeatable (default: every channel)
    #[argh(option)]
    fault_channel: Vec<String>,
}

/// Runs the subcommand.
pub fn run(args: Args) -> Result<(), Failure> {
    let listen: SocketAddr = args.listen.parse().map_err(|_| {
        Failure::usage(format!(
            "--listen {}: expected IP:PORT, e.g. 127.0.0.1:5004",
            args.listen
        ))
    })?;
    let channels = channels(&args)?;
    let faults = args
        .fault
        .iter()
        .map(|spec| Fault::parse(spec))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::usage(e.to_string()))?;
    let fault_channels = args
        .fault_channel
        .iter()
        .map(|g| guide(g))
        .collect::<Result<Vec<_>, _>>()?;
    let sim = Simulator::new(SimConfig {
        channels,
        tuners: args.tuners,
        faults,
        fault_connections: args.fault_connections,
    })
    .and_then(|sim| sim.with_fault_channels(fault_channels))
    .map_err(|e| Failure::usage(e.to_string()))?;
    let stop = StopFlag::on_signals()
        .map_err(|e| Failure::other(format!("cannot handle signals: {e}")))?;
    let server = Server::bind(listen).map_err(|e| Failure::new(Exit::Connect, e.to_string()))?;
    for channel in sim.channels() {
        let b = &channel.broadcast;
        log::info!(
            "channel {} ({}): loop of {:.3} s, {} packets",
            channel.guide,
            channel.name,
            b.loop_duration().as_secs_f64(),
            b.packets_per_loop()
        );
    }
    let ready = serde_json::json!({
        "listen": server.local_addr().to_string(),
        "channels": sim.channels().iter().map(|c| c.guide.as_str()).collect::<Vec<_>>(),
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{ready}")
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::other(format!("cannot write to standard output: {e}")))?;
    drop(stdout);
    server.run(&sim, &stop);
    log::info!("stopped");
    Ok(())
}

/// The channels from `--channel`, or the one of `--input` / `--guide-number`.
fn channels(args: &Args) -> Result<Vec<Channel>, Failure> {
    if args.channel.is_empty() {
        let guide = guide(args.guide_number.as_deref().unwrap_or("5.1"))?;
        return Ok(vec![match &args.input {
            None => channel(
                guide,
                "Built-in clip".into(),
                BUILTIN_TS,
                "the built-in clip",
            )?,
            Some(path) => file_channel(guide, path)?,
        }]);
    }
    if args.input.is_some() || args.guide_number.is_some() {
        return Err(Failure::usage(
            "--channel cannot be combined with --input or --guide-number",
        ));
    }
    args.channel
        .iter()
        .map(|spec| {
            let (number, path) = spec
                .split_once('=')
                .ok_or_else(|| Failure::usage(format!("--channel {spec}: expected GUIDE=FILE")))?;
            file_channel(guide(number)?, path)
        })
        .collect()
}

fn guide(text: &str) -> Result<GuideNumber, Failure> {
    GuideNumber::parse(text).ok_or_else(|| {
        Failure::usage(format!(
            "guide number {text:?}: expected digits with at most one dot, e.g. 5.1"
        ))
    })
}

fn file_channel(guide: GuideNumber, path: &str) -> Result<Channel, Failure> {
    let cannot = |e: std::io::Error| Failure::usage(format!("cannot read {path}: {e}"));
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(cannot)?
        .take(MAX_CLIP_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    let name = Path::new(path)
        .file_stem()
        .map_or_else(|| path.to_string(), |s| s.to_string_lossy().into_owned());
    channel(guide, name, &bytes, path)
}

fn channel(guide: GuideNumber, name: String, clip: &[u8], what: &str) -> Result<Channel, Failure> {
    let broadcast = Broadcast::new(clip).map_err(|e| Failure::usage(format!("{what}: {e}")))?;
    Ok(Channel {
        guide,
        name,
        broadcast,
    })
}
