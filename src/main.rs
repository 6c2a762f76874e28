//! The `labctl` command: parse arguments, call the library, render for people or machines.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
