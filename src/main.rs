//! The `ec-node` binary: parses the command line and turns the outcome into an exit code.

fn main() -> std::process::ExitCode {
    ec_node::cli::main()
}
