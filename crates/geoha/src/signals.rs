//! Turns SIGINT and SIGTERM into a shutdown future for the libraries' `run` functions.

use tokio::signal::unix::{signal, SignalKind};

/// Completes on the first SIGINT (Ctrl-C) or SIGTERM.
pub(crate) async fn shutdown() {
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(err) => {
            tracing::warn!(%err, "cannot listen for SIGTERM; only Ctrl-C stops");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}
