//! The `ec-node` binary: the command line (`cli`) over the `ec_node` library. It parses the
//! command line, runs one subcommand and turns the outcome into an exit code.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
