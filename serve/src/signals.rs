//! Stopping on SIGTERM (a service manager or the kubelet) or SIGINT (Ctrl-C).

use tokio::signal::unix::{SignalKind, signal};

/// Waits for SIGTERM or SIGINT and says which; an error when the handlers cannot be
/// installed.
pub async fn terminated() -> std::io::Result<&'static str> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Returns on SIGTERM or SIGINT (Ctrl-C alone when the handlers cannot be installed): for
/// servers that only need to know when to stop.
pub async fn until_terminated() {
    if terminated().await.is_err() {
        let _ = tokio::signal::ctrl_c().await;
    }
}
