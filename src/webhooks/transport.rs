//! Sending one signed delivery over HTTP.
//!
//! One shared `reqwest` client: 15 s timeout, redirects never followed, no
//! proxy from the environment, and a DNS resolver that refuses internal
//! addresses, so the addresses a connection uses are exactly the ones that
//! were checked (no window for DNS rebinding between check and connect).
//! URLs with a literal IP are checked before sending.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::delivery::SendOutcome;
use super::schedule::parse_retry_after;
use super::signing::SignedHeaders;
use super::ssrf::{self, UnsafeUrl};

/// How long a receiver has to answer.
pub const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct OutgoingWebhook {
    pub url: String,
    pub headers: SignedHeaders,
    pub body: Vec<u8>,
}

/// Where deliveries go out. The dispatcher is written against this so its
/// schedule can be tested without a network.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    async fn send(&self, webhook: OutgoingWebhook) -> SendOutcome;
}

pub struct HttpTransport {
    client: reqwest::Client,
    allow_internal: bool,
}

impl HttpTransport {
    pub fn new(allow_internal: bool) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("paylink-webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(GuardedResolver { allow_internal })
            .build()?;
        Ok(Self {
            client,
            allow_internal,
        })
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn send(&self, webhook: OutgoingWebhook) -> SendOutcome {
        let url = match ssrf::check_url(&webhook.url, self.allow_internal) {
            Ok(url) => url,
            Err(refusal) => {
                return SendOutcome::NoResponse {
                    error: format!("not sent: {refusal}"),
                };
            }
        };
        let sent = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &webhook.headers.webhook_id)
            .header("webhook-timestamp", &webhook.headers.webhook_timestamp)
            .header("webhook-signature", &webhook.headers.webhook_signature)
            .body(webhook.body)
            .send()
            .await;
        match sent {
            Ok(response) => SendOutcome::Answered {
                status: response.status().as_u16(),
                retry_after: response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| parse_retry_after(value, jiff::Timestamp::now())),
            },
            Err(error) => SendOutcome::NoResponse {
                error: describe(&error),
            },
        }
    }
}

/// The error and its causes in one line ("timed out" first when it did).
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return format!("timed out after {} s", TIMEOUT.as_secs());
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Resolves like the system does, then refuses the name if any of its
/// addresses is internal (unless allowed).
struct GuardedResolver {
    allow_internal: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_internal = self.allow_internal;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addresses.is_empty() {
                return Err(UnsafeUrl::Unresolvable(host).into());
            }
            if !allow_internal
                && let Some(bad) = addresses.iter().find(|a| ssrf::is_internal(a.ip()))
            {
                return Err(UnsafeUrl::Internal(bad.ip()).into());
            }
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}
