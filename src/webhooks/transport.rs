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

use crate::domain::webhook::delivery::SendOutcome;
use crate::domain::webhook::schedule::parse_retry_after;
use crate::domain::webhook::signing::SignedHeaders;
use crate::ssrf::{self, UnsafeUrl};

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
            Ok(mut response) => {
                let outcome = SendOutcome::Answered {
                    status: response.status().as_u16(),
                    retry_after: response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|value| value.to_str().ok())
                        .and_then(|value| parse_retry_after(value, jiff::Timestamp::now())),
                };
                // Read (and discard) a small answer so the connection can be
                // reused; stop at 64 KiB, as nothing in it matters.
                let mut read = 0;
                while let Ok(Some(chunk)) = response.chunk().await {
                    read += chunk.len();
                    if read > 64 * 1024 {
                        break;
                    }
                }
                outcome
            }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::domain::webhook::signing::sign;

    /// A loopback listener that counts the connections it accepts and
    /// answers each with `204 No Content`.
    async fn counting_listener() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buffer = [0u8; 4096];
                    let _ = socket.read(&mut buffer).await;
                    let _ = socket
                        .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    fn webhook(url: String) -> OutgoingWebhook {
        OutgoingWebhook {
            url,
            headers: sign(
                &[&crate::domain::webhook::signing::new_secret()],
                "evt_1",
                1,
                b"{}",
            )
            .unwrap(),
            body: b"{}".to_vec(),
        }
    }

    #[tokio::test]
    async fn internal_addresses_are_refused_at_delivery_by_literal_or_by_name() {
        let (addr, accepted) = counting_listener().await;
        let strict = HttpTransport::new(false).unwrap();
        for url in [
            format!("http://{addr}/hook"),
            format!("http://localhost:{}/hook", addr.port()),
            format!("http://2130706433:{}/hook", addr.port()),
        ] {
            match strict.send(webhook(url.clone())).await {
                SendOutcome::NoResponse { error } => {
                    assert!(error.contains("internal"), "{url}: {error}")
                }
                other => panic!("{url} was sent: {other:?}"),
            }
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 0, "no connection was made");

        let allowed = HttpTransport::new(true).unwrap();
        let outcome = allowed
            .send(webhook(format!("http://localhost:{}/hook", addr.port())))
            .await;
        assert_eq!(
            outcome,
            SendOutcome::Answered {
                status: 204,
                retry_after: None
            }
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }
}
