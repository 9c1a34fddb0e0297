//! The process-wide shutdown signal: SIGTERM or Ctrl-C cancels one token that
//! the HTTP server, consumers and relays all watch.

pub use tokio_util::sync::CancellationToken;

/// Resolves on SIGTERM or Ctrl-C, then cancels `token`.
pub async fn on_signal(token: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            token.cancel();
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = token.cancelled() => return,
    }
    tracing::info!("shutdown requested");
    token.cancel();
}
