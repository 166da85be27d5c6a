//! localstripe (PyPI `localstripe`), a stateful Stripe emulator, started on
//! a free port for a test. When it is not installed the test says so and is
//! skipped, unless `CI=true`, which makes it mandatory.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::{Child, Command};

pub const SECRET_KEY: &str = "sk_test_paylink";
pub const PUBLISHABLE_KEY: &str = "pk_test_paylink";
pub const WEBHOOK_SECRET: &str = "whsec_paylink_tests";

pub struct Localstripe {
    child: Option<Child>,
    pub port: u16,
    pub base: String,
    client: reqwest::Client,
}

fn installed() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import localstripe"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

impl Localstripe {
    /// A fresh localstripe, or `None` (having said why) when it is not
    /// installed and this is not CI.
    pub async fn start(test: &str) -> Option<Self> {
        if !installed() {
            assert!(
                std::env::var("CI").is_err(),
                "CI=true needs localstripe (pip install localstripe)"
            );
            eprintln!("SKIPPED {test}: localstripe is not installed (pip install localstripe)");
            return None;
        }
        let port = super::free_port();
        let mut emulator = Self {
            child: None,
            port,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        };
        emulator.run().await;
        Some(emulator)
    }

    async fn run(&mut self) {
        let child = Command::new("python3")
            .args([
                "-m",
                "localstripe",
                "--port",
                &self.port.to_string(),
                "--from-scratch",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start localstripe");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = self
                .client
                .get(format!("{}/v1/payment_intents", self.base))
                .basic_auth(SECRET_KEY, Some(""))
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "localstripe was not up within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops it (its state is gone, as after an outage with data loss).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        }
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.run().await;
    }

    /// Stripe.js as a page loads it (localstripe's stand-in).
    pub fn js_url(&self) -> String {
        format!("{}/js.stripe.com/v3/", self.base)
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .basic_auth(SECRET_KEY, Some(""))
            .form(form)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("localstripe answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> Value {
        self.client
            .get(format!("{}{path}", self.base))
            .basic_auth(SECRET_KEY, Some(""))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("localstripe answers")
            .json()
            .await
            .expect("JSON")
    }

    /// What Stripe.js's `createPaymentMethod` makes from a card in the
    /// browser (localstripe's stand-in for it does nothing, so tests make
    /// this same request).
    pub async fn payment_method(&self, number: &str) -> String {
        let (status, body) = self
            .post(
                "/v1/payment_methods",
                &[
                    ("type", "card"),
                    ("card[number]", number),
                    ("card[exp_month]", "12"),
                    ("card[exp_year]", "2034"),
                    ("card[cvc]", "123"),
                ],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["id"].as_str().expect("pm id").to_owned()
    }

    /// Has localstripe send its (Stripe-signed) events to `url`.
    pub async fn send_webhooks_to(&self, url: &str) {
        let response = self
            .client
            .post(format!("{}/_config/webhooks/paylink", self.base))
            .form(&[("url", url), ("secret", WEBHOOK_SECRET)])
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("localstripe answers");
        assert!(response.status().is_success());
    }

    /// What Stripe.js's 3-D Secure modal does when the customer completes
    /// (or fails) the challenge.
    pub async fn authenticate(&self, client_secret: &str, success: bool) {
        let intent = client_secret.split("_secret_").next().unwrap();
        let response = self
            .client
            .post(format!(
                "{}/v1/payment_intents/{intent}/_authenticate?success={success}",
                self.base
            ))
            .body(
                serde_json::json!({"key": PUBLISHABLE_KEY, "client_secret": client_secret})
                    .to_string(),
            )
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("localstripe answers");
        assert!(
            response.status().is_success(),
            "{}",
            response.text().await.unwrap_or_default()
        );
    }
}

/// A `Stripe-Signature` header for `body`, as Stripe signs it.
pub fn sign(body: &str, secret: &str, at: i64) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{at}.{body}").as_bytes());
    format!("t={at},v1={}", hex::encode(mac.finalize().into_bytes()))
}
