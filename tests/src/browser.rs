//! A headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`), for
//! the tests and benchmarks of the web console.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value as Json, json};

/// chromedriver's command that hands over (and clears) the performance log: the DevTools
/// events it recorded.
#[derive(Debug)]
struct PerformanceLog;

impl WebDriverCompatibleCommand for PerformanceLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"performance"}"#.into()))
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A chromedriver process and a headless Chromium session through it.
pub struct Browser {
    driver: Child,
    /// The WebDriver session.
    pub client: Client,
    shots: PathBuf,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium (`--no-sandbox`: the tests may run as
    /// root); `None` with a note when they are not installed (`.ci/run` installs them).
    pub async fn start() -> Option<Self> {
        Self::start_with(false).await
    }

    /// [`Browser::start`], with the DevTools network events of every page recorded for
    /// [`Browser::network_log`] (each request's URL and headers, each answer's status).
    pub async fn start_recording_network() -> Option<Self> {
        Self::start_with(true).await
    }

    async fn start_with(record_network: bool) -> Option<Self> {
        if Command::new("chromedriver")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("chromedriver is not installed (Debian: chromium chromium-driver): skipped");
            return None;
        }
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromedriver never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,800"],
            }),
        );
        if record_network {
            caps["goog:chromeOptions"]["perfLoggingPrefs"] =
                json!({"enableNetwork": true, "enablePage": false});
            caps.insert("goog:loggingPrefs".into(), json!({"performance": "ALL"}));
        }
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
        std::fs::create_dir_all(&shots).expect("the screenshots folder");
        Some(Self {
            driver,
            client,
            shots,
        })
    }

    /// Runs `script` until it returns something other than `null`/`false`, and returns that.
    pub async fn until(&self, what: &str, script: &str) -> Json {
        let start = Instant::now();
        loop {
            let got = self.client.execute(script, vec![]).await.expect(what);
            if !got.is_null() && got != Json::Bool(false) {
                return got;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let body = self
                    .client
                    .execute("return document.body.innerText", vec![])
                    .await
                    .unwrap_or_default();
                panic!("timed out waiting for {what}; the page shows:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The DevTools `Network.*` events (`{"method", "params"}`) recorded since the last call,
    /// oldest first; the browser must have been started with
    /// [`Browser::start_recording_network`].
    pub async fn network_log(&self) -> Vec<Json> {
        let entries = self
            .client
            .issue_cmd(PerformanceLog)
            .await
            .expect("the browser's performance log");
        entries
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| serde_json::from_str::<Json>(e["message"].as_str()?).ok())
            .map(|m| m["message"].clone())
            .filter(|m| {
                m["method"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("Network."))
            })
            .collect()
    }

    /// Saves a screenshot as `target/console-screenshots/<name>`.
    pub async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::write(self.shots.join(name), png).expect("writing a screenshot");
    }

    /// Replaces the text of the field `css` with `text`, typed.
    pub async fn type_into(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.expect(css);
        field.clear().await.expect(css);
        field.send_keys(text).await.expect(css);
    }

    /// Ends the session and chromedriver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
