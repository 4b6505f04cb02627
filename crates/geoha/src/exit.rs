//! Exit codes of the command-line contract: 0 success, 1 an objective missed or a
//! runtime failure, 64 bad usage or a bad config/topology file.

use std::process::ExitCode;

/// Bad usage or configuration (BSD `EX_USAGE`).
pub(crate) const USAGE: u8 = 64;

/// Marks an error as the user's input being wrong, so it exits 64.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BadInput(pub(crate) String);

/// Prints a clap error and picks the exit code: 0 for help/version, 64 otherwise.
pub(crate) fn usage(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let _ = err.print();
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => ExitCode::SUCCESS,
        _ => ExitCode::from(USAGE),
    }
}

/// 64 when any error in the chain is a [`BadInput`], else 1.
pub(crate) fn code_for(err: &anyhow::Error) -> ExitCode {
    if err.chain().any(|e| e.downcast_ref::<BadInput>().is_some()) {
        ExitCode::from(USAGE)
    } else {
        ExitCode::FAILURE
    }
}
