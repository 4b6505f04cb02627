//! Turns SIGINT and SIGTERM into a shutdown future for the libraries' `run` functions.

use std::future::Future;

use tokio::signal::unix::{signal, SignalKind};

/// Completes on the first SIGINT (Ctrl-C) or SIGTERM. The handlers are installed when
/// this is called (not when the future is first polled), so a signal that arrives
/// while a server is still starting is not lost to the default action.
/// Must be called inside the tokio runtime.
pub(crate) fn shutdown() -> impl Future<Output = ()> + Send + 'static {
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = int.recv() => tracing::info!("SIGINT received"),
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                }
            }
            (Err(err), _) | (_, Err(err)) => {
                tracing::warn!(%err, "cannot listen for SIGTERM/SIGINT; only Ctrl-C stops");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
