//! The command line: raw flags become validated settings, each subcommand runs, and its outcome
//! becomes one of the project's exit codes.
//!
//! This is the only module with a catch-all error type ([`Failure`]): library modules keep typed
//! errors, and each subcommand maps them to an [`Exit`] code and a one-line cause here. One file per
//! subcommand; nothing here parses media or speaks a protocol.

mod bench;
mod bounded;

mod chunks;
mod demo;
mod hdhr_lineup;
mod id;
mod keygen;
mod moq_cat;
mod moq_forward;
mod moq_publish;
mod moq_serve;
mod moq_subscribe;
mod peer;
mod record;
mod serve;
mod summary;
mod tuner_sim;

use argh::FromArgs;
use std::process::ExitCode;

/// every.channel node: deterministic broadcast chunking, encryption and MoQ serving.
#[derive(FromArgs)]
struct TopLevel {
    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Bench(bench::Args),
    Chunks(chunks::Args),
    Demo(demo::Args),
    HdhrLineup(hdhr_lineup::Args),
    Id(id::Args),
    Keygen(keygen::Args),
    MoqCat(moq_cat::Args),
    MoqForward(moq_forward::Args),
    MoqPublish(moq_publish::Args),
    MoqServe(moq_serve::Args),
    MoqSubscribe(moq_subscribe::Args),
    Record(record::Args),
    Serve(serve::Args),
    TunerSim(tuner_sim::Args),
}

/// The project's exit codes, the same for every command (docs/USAGE.md has the table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Anything not covered below.
    Other = 1,
    /// Usage error or unreadable configuration.
    Usage = 2,
    /// Cannot connect, the source or peer refused, or peer identity mismatch.
    Connect = 3,
    /// Verification failed.
    Verify = 4,
    /// The stream went idle or the peer left.
    Idle = 5,
}

/// Why a command failed: an exit code and one line naming the cause.
#[derive(Debug)]
pub struct Failure {
    /// The exit code the process ends with.
    pub exit: Exit,
    /// One line naming the cause, printed on stderr.
    pub cause: String,
}

impl Failure {
    /// A failure with the given exit code and cause.
    pub fn new(exit: Exit, cause: impl Into<String>) -> Self {
        Failure {
            exit,
            cause: cause.into(),
        }
    }

    /// A usage or configuration error (exit 2).
    pub fn usage(cause: impl Into<String>) -> Self {
        Failure::new(Exit::Usage, cause)
    }

    /// Anything else (exit 1).
    pub fn other(cause: impl Into<String>) -> Self {
        Failure::new(Exit::Other, cause)
    }
}

/// Runs the process: parses `std::env::args`, runs the subcommand, returns its exit code.
pub fn main() -> ExitCode {
    return_large_buffers_to_the_system();
    // People get warnings, a progress line and a summary; INFO and below only when asked.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp_millis()
        .init();
    let args = split_equals_flags(std::env::args().collect());
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let top = match TopLevel::from_args(&["ec-node"], &strs[1.min(strs.len())..]) {
        Ok(top) => top,
        Err(early) => {
            return match early.status {
                Ok(()) => {
                    println!("{}", early.output);
                    ExitCode::SUCCESS
                }
                Err(()) => {
                    summary::report_refused_flags(&strs, early.output.trim_end());
                    eprintln!("{}", early.output.trim_end());
                    ExitCode::from(Exit::Usage as u8)
                }
            };
        }
    };
    let outcome = match top.command {
        Command::Bench(args) => bench::run(args),
        Command::Chunks(args) => chunks::run(args),
        Command::Demo(args) => demo::run(args),
        Command::HdhrLineup(args) => hdhr_lineup::run(args),
        Command::Id(args) => id::run(args),
        Command::Keygen(args) => keygen::run(args),
        Command::MoqCat(args) => moq_cat::run(args),
        Command::MoqForward(args) => moq_forward::run(args),
        Command::MoqPublish(args) => moq_publish::run(args),
        Command::MoqServe(args) => moq_serve::run(args),
        Command::MoqSubscribe(args) => moq_subscribe::run(args),
        Command::Record(args) => record::run(args),
        Command::Serve(args) => serve::run(args),
        Command::TunerSim(args) => tuner_sim::run(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("ec-node: {}", failure.cause);
            ExitCode::from(failure.exit as u8)
        }
    }
}

/// Makes glibc's allocator serve every buffer of 1 MiB or more (chunks, objects, cached groups)
/// with its own mapping, returned to the system when freed. By default glibc raises that threshold
/// after the first such free and then keeps freed chunk-sized blocks in the per-thread arenas of
/// the pipeline threads that made them: tens of MiB of resident memory that no stage is using.
/// A few map/unmap calls per chunk cost far less than that on a small box.
fn return_large_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before any thread starts.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// argh accepts only `--flag value`; users also write `--flag=value`, so split it first.
fn split_equals_flags(args: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    for arg in args {
        match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") && flag.len() > 2 => {
                out.push(flag.to_string());
                out.push(value.to_string());
            }
            _ => out.push(arg),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::split_equals_flags;

    #[test]
    fn equals_flags_are_split_and_others_kept() {
        let args = [
            "ec-node",
            "chunks",
            "--chunk-ms=1500",
            "--input",
            "a=b.ts",
            "-",
        ];
        let split = split_equals_flags(args.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            split,
            [
                "ec-node",
                "chunks",
                "--chunk-ms",
                "1500",
                "--input",
                "a=b.ts",
                "-"
            ]
        );
    }
}
