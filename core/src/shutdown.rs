//! One shutdown signal for the whole process.
//!
//! SIGINT and SIGTERM cancel a [`CancellationToken`]; long-running code
//! takes the token and `select!`s on `cancelled()`, so it can finish or
//! abort its open transaction and flush within the 10 s of contract.md#shutdown.

use std::time::Duration;

pub use tokio_util::sync::CancellationToken;

/// How long a service may take to stop after the signal (contract.md#shutdown).
pub const SHUTDOWN_BUDGET: Duration = Duration::from_secs(10);

/// Returns a token cancelled on SIGINT or SIGTERM. Must be called inside a
/// Tokio runtime.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let signal = wait_for_signal().await;
        tracing::info!(signal, "Shutdown requested.");
        trigger.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => (term, int),
        _ => {
            // Without handlers the default action (exit) still applies.
            std::future::pending::<()>().await;
            unreachable!()
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "ctrl-c"
}
