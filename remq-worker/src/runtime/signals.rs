//! SIGTERM and SIGINT start a graceful shutdown.

use tokio_util::sync::CancellationToken;

/// Cancels `shutdown` on the first SIGTERM or SIGINT.
pub(super) async fn cancel_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = terminate => tracing::info!("SIGTERM received; shutting down gracefully"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; shutting down gracefully"),
        _ = shutdown.cancelled() => return,
    }
    shutdown.cancel();
}
