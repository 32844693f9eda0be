//! `oda-healthcheck [URL]`: the container health check of the oda-cdc
//! image. Exit 0 when `URL` answers 2xx within 4 s, else 1 with the reason
//! on stderr. Without `URL`, the `/healthz` of the admin port in
//! `ADMIN_PORT` (9464, the producer's, when unset) on 127.0.0.1.
//!
//! A binary of our own rather than curl: the production image carries
//! the services and nothing an intruder could use to reach out.

use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let url = std::env::args().nth(1).unwrap_or_else(|| {
        let port = std::env::var("ADMIN_PORT").unwrap_or_else(|_| "9464".to_owned());
        format!("http://127.0.0.1:{port}/healthz")
    });
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("oda-healthcheck: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(oda_cdc_core::admin::probe(&url, Duration::from_secs(4))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("oda-healthcheck: {url}: {error}");
            ExitCode::FAILURE
        }
    }
}
