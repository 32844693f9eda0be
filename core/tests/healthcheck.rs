//! `oda-healthcheck`, the image's health check, against a real admin server.

use std::net::SocketAddr;
use std::process::Command;

use oda_cdc_core::admin::serve;
use oda_cdc_core::health::Health;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

fn healthcheck(args: &[&str], admin_port: Option<u16>) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_oda-healthcheck"));
    command.args(args).env_remove("ADMIN_PORT");
    if let Some(port) = admin_port {
        command.env("ADMIN_PORT", port.to_string());
    }
    let output = command.output().expect("oda-healthcheck runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_on_a_live_admin_port_and_fails_with_the_reason_otherwise() {
    let health = Health::new();
    health.register("kafka");
    let shutdown = CancellationToken::new();
    let server = serve(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Registry::new(),
        health.clone(),
        shutdown.clone(),
    )
    .await
    .expect("serves");
    let port = server.addr.port();

    let (ok, stderr) = tokio::task::spawn_blocking(move || healthcheck(&[], Some(port)))
        .await
        .expect("join");
    assert!(ok, "healthz via ADMIN_PORT: {stderr}");

    // /readyz while a check is failing: 503, with the reason.
    health.set_failed("kafka", "broker away");
    let readyz = format!("http://{}/readyz", server.addr);
    let (ok, stderr) = tokio::task::spawn_blocking(move || healthcheck(&[&readyz], None))
        .await
        .expect("join");
    assert!(!ok);
    assert!(
        stderr.contains("503") && stderr.contains("broker away"),
        "{stderr}"
    );

    shutdown.cancel();
    server.task.abort();
    let _ = server.task.await;
    let (ok, stderr) = tokio::task::spawn_blocking(move || healthcheck(&[], Some(port)))
        .await
        .expect("join");
    assert!(!ok, "nothing listens any more");
    assert!(stderr.contains("no answer"), "{stderr}");
}
