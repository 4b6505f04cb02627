//! The `geoha` command line: parses arguments, wires sockets and signals to the
//! library crates, and maps their results to exit codes. No business logic lives here.
#![forbid(unsafe_code)]

mod cli;
mod cmd;
mod exit;
mod signals;

use std::process::ExitCode;

use clap::Parser;

/// Every server here allocates per request (headers, bodies, futures) on two busy
/// threads; mimalloc's per-thread heaps avoid glibc's arena lock (measured: see
/// docs/benchmarks.md, router overhead).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // clap exits 2 on misuse; the contract says 64 (help and version stay 0).
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return exit::usage(err),
    };
    match cmd::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("geoha: {err:#}");
            exit::code_for(&err)
        }
    }
}
