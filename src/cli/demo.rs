//! `ec-node demo`: the split-source mesh on loopback with no hardware, the README's main job.
//!
//! Clears a previous demo's output, runs [`ec_node::node::demo`] until `--seconds` pass or Ctrl-C,
//! and tells the user who ran where, what was verified, and how to play the result.

use super::moq_publish::publish_fields;
use super::moq_subscribe::{subscribe_failure, subscribe_fields, subscribe_line, with_progress};
use super::summary::{self, Line, Summary};
use super::{Exit, Failure};
use argh::FromArgs;
use ec_node::node::demo::{demo, DemoConfig, DemoError, DemoNodes, DemoSummary, STREAM_ID};
use ec_node::node::publish::PublishSummary;
use ec_node::stop::StopFlag;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Run the split-source mesh on loopback: the built-in broadcast on a tuner simulator, a leader
/// publishing only signed manifests, an availability node publishing only encrypted chunks, and
/// a subscriber that verifies the one against the other and writes HLS.
#[derive(FromArgs)]
#[argh(subcommand, name = "demo")]
pub struct Args {
    /// HLS output folder (default ./ec-demo; a previous demo's output there is replaced)
    #[argh(option, default = "PathBuf::from(\"ec-demo\")")]
    out: PathBuf,
    /// stop after this many seconds; 0 runs until Ctrl-C (default 30)
    #[argh(option, default = "30")]
    seconds: u64,
    /// print the summary as one JSON object on stdout instead of text on stderr
    #[argh(switch)]
    json: bool,
}

/// Runs the subcommand, tells its summary and, when it worked, how to play the result.
pub fn run(args: Args) -> Result<(), Failure> {
    let mut told = None;
    let outcome = run_demo(&args, &mut told);
    summary::report("demo", args.json, told.as_ref(), outcome)?;
    let playlist = args.out.join("index.m3u8");
    eprintln!("demo: stream id {STREAM_ID}; play it with any of:");
    for player in ["ffplay", "mpv", "vlc"] {
        eprintln!("  {player} {}", playlist.display());
    }
    Ok(())
}

/// Runs the mesh; `told` gets the summary once it has run.
fn run_demo(args: &Args, told: &mut Option<DemoReport>) -> Result<(), Failure> {
    clear_previous_output(&args.out)?;
    let stop = StopFlag::on_signals()
        .map_err(|e| Failure::other(format!("cannot install signal handlers: {e}")))?;
    if args.seconds > 0 {
        let timer = stop.clone();
        let seconds = args.seconds;
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(seconds));
            timer.set();
        });
    }
    let out = args.out.clone();
    let announce = |nodes: &DemoNodes| {
        eprintln!(
            "demo: tuner simulator on http://{} (channel 5.1, the built-in clip)",
            nodes.tuner
        );
        eprintln!(
            "demo: leader        {} publishes signed manifests only",
            nodes.leader
        );
        eprintln!(
            "demo: availability  {} publishes encrypted chunks only",
            nodes.availability
        );
        eprintln!(
            "demo: subscriber takes chunks from the availability node and manifests from the \
             leader, accepts only what the leader's manifests vouch for, writes {}",
            out.join("index.m3u8").display()
        );
        match args.seconds {
            0 => eprintln!("demo: running until Ctrl-C"),
            s => eprintln!("demo: running for {s} s (Ctrl-C stops earlier)"),
        }
    };
    let config = DemoConfig {
        out: args.out.clone(),
    };
    let (summary, outcome) = with_progress(|progress| {
        let mut announce = announce;
        demo(config, &stop, &mut announce, progress)
    })
    .map_err(demo_failure)?;
    let outcome = outcome.map_err(|e| subscribe_failure(e, &summary.subscriber));
    let accepted = summary.subscriber.accepted;
    *told = Some(DemoReport {
        summary,
        out: args.out.clone(),
    });
    outcome?;
    if accepted == 0 {
        return Err(Failure::new(
            Exit::Idle,
            format!(
                "no segment verified within {} s; try more --seconds",
                args.seconds
            ),
        ));
    }
    Ok(())
}

/// What the demo's nodes published and its subscriber wrote.
struct DemoReport {
    summary: DemoSummary,
    /// The subscriber's HLS folder.
    out: PathBuf,
}

impl Summary for DemoReport {
    fn text(&self) -> String {
        let s = &self.summary;
        let published = |p: &Option<PublishSummary>| {
            p.as_ref().map_or("stopped early".to_string(), |p| {
                format!("{} chunks, {} manifests", p.chunks, p.manifests)
            })
        };
        let nodes = Line::new("demo", format!("leader published {}", published(&s.leader))).part(
            format!("availability node published {}", published(&s.availability)),
        );
        let subscriber = subscribe_line("demo: subscriber", &s.subscriber, &self.out);
        format!("{nodes}\n{subscriber}")
    }

    fn fields(&self) -> serde_json::Value {
        let s = &self.summary;
        serde_json::json!({
            "leader": s.leader.as_ref().map(publish_fields),
            "availability": s.availability.as_ref().map(publish_fields),
            "subscriber": subscribe_fields(&s.subscriber, &self.out),
        })
    }
}

/// Removes a previous demo's output from `dir` (only HLS segments, the playlist and temp files);
/// anything else there is left alone and the run refuses the folder.
fn clear_previous_output(dir: &Path) -> Result<(), Failure> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    let ours = |p: &PathBuf| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        p.is_file()
            && (name == "index.m3u8"
                || name.ends_with(".tmp")
                || name.starts_with("segment_") && name.ends_with(".ts"))
    };
    if !paths.iter().all(ours) {
        return Err(Failure::usage(format!(
            "{} holds files that are not a previous demo's output; give another --out",
            dir.display()
        )));
    }
    for path in paths {
        std::fs::remove_file(&path)
            .map_err(|e| Failure::other(format!("cannot remove {}: {e}", path.display())))?;
    }
    Ok(())
}

fn demo_failure(e: DemoError) -> Failure {
    match e {
        DemoError::Serve(e) => super::peer::serve_failure(e),
        e => Failure::other(e.to_string()),
    }
}
