use std::net::SocketAddr;

use oda_sim::{RunningSim, SimConfig, start};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// A simulator on a free port; stops when dropped.
pub(crate) struct Sim {
    pub(crate) sim: RunningSim,
    pub(crate) http: reqwest::Client,
}

impl Sim {
    pub(crate) async fn start(adjust: impl FnOnce(&mut SimConfig)) -> Sim {
        let mut config = SimConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            scale: 5_000,
            seed: 7,
            ..SimConfig::default()
        };
        adjust(&mut config);
        let sim = start(config, CancellationToken::new())
            .await
            .expect("oda-sim starts");
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .expect("client");
        Sim { sim, http }
    }

    pub(crate) fn api(&self, path_and_query: &str) -> String {
        format!("{}/{}", self.sim.base_url(), path_and_query)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.sim.addr, path)
    }

    /// GET, expecting 200 and JSON.
    pub(crate) async fn json(&self, url: &str) -> Value {
        let response = self.http.get(url).send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        assert_eq!(status, 200, "GET {url}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {text}"))
    }

    pub(crate) async fn status(&self, url: &str) -> u16 {
        self.http
            .get(url)
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    }

    /// Follows `odata.nextLink` from `url` and returns every record.
    pub(crate) async fn all_pages(&self, url: &str) -> (Vec<Value>, usize) {
        let mut rows = Vec::new();
        let mut next = Some(url.to_owned());
        let mut pages = 0;
        while let Some(url) = next {
            let page = self.json(&url).await;
            rows.extend(page["value"].as_array().expect("value").iter().cloned());
            next = page["odata.nextLink"].as_str().map(str::to_owned);
            pages += 1;
            assert!(pages < 10_000, "nextLink chain does not end");
        }
        (rows, pages)
    }

    pub(crate) async fn mutate(&self, body: Value) -> Value {
        let response = self
            .http
            .post(self.url("/_sim/mutate"))
            .json(&body)
            .send()
            .await
            .expect("mutate");
        assert_eq!(response.status(), 200);
        response.json().await.expect("json")
    }

    pub(crate) async fn changes(&self, after: u64) -> Vec<Value> {
        let text = self
            .http
            .get(self.url(&format!("/_sim/changes?after={after}")))
            .send()
            .await
            .expect("changes")
            .text()
            .await
            .expect("body");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }
}

pub(crate) fn ids(rows: &[Value]) -> Vec<i64> {
    rows.iter().map(|r| r["id"].as_i64().expect("id")).collect()
}
