//! The Stripe connector: PaymentIntents and Refunds over Stripe's v1 API.
//!
//! A small client over reqwest, not `async-stripe`: async-stripe 1.0.0-rc.10
//! parses PaymentIntents strictly (it requires `amount_capturable`,
//! `amount_received`, `confirmation_method`, ... which the localstripe
//! emulator our tests run against does not send) and sends
//! `allowed_payment_method_types`, which localstripe refuses. paylink makes
//! five calls; this client sends only parameters both Stripe and
//! localstripe accept and reads only the fields paylink needs, so a field
//! Stripe adds or an emulator omits cannot break a payment. (PaymentIntents
//! here carry no `description`, which localstripe 1.15 refuses; the link
//! and attempt ids travel as metadata.)
//!
//! A payment is two calls, so a crash at any point can be reconciled:
//! 1. create the PaymentIntent unconfirmed (idempotency key: the attempt
//!    id), and write its id onto the attempt;
//! 2. confirm it (idempotency key: attempt id + `-confirm`).
//!
//! An attempt with no PaymentIntent id never moved money; one with an id is
//! asked about by that id. An unconfirmed or abandoned PaymentIntent is
//! cancelled at Stripe before the attempt is closed as failed, so it can
//! never succeed behind paylink's back; if the cancel finds it succeeded,
//! the success is what is recorded.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

mod webhooks;

pub use webhooks::*;

use super::{PaymentProcessor, PaymentSource, ProcessorError};
use crate::domain::{ChargeOutcome, PaymentAttempt, Refund, RefundOutcome};
use crate::store::Store;

pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";
pub const DEFAULT_JS_URL: &str = "https://js.stripe.com/v3/";
/// How long a customer has to finish 3-D Secure before the reconciler
/// cancels the PaymentIntent and frees the link.
pub const ACTION_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Stripe's metadata values are at most 500 characters.
const METADATA_VALUE_CHARS: usize = 500;

/// What an account stores (sealed) to use Stripe.
#[derive(Clone, Serialize, Deserialize)]
pub struct StripeConfig {
    pub secret_key: String,
    pub publishable_key: String,
    pub webhook_secret: String,
}

impl std::fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeConfig")
            .field("publishable_key", &self.publishable_key)
            .finish_non_exhaustive()
    }
}

pub struct StripeProcessor {
    http: reqwest::Client,
    /// Without a trailing slash.
    api_base: String,
    config: StripeConfig,
    store: Arc<dyn Store>,
}

/// The fields of a PaymentIntent paylink reads.
#[derive(Debug, Deserialize)]
pub struct PaymentIntent {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub last_payment_error: Option<StripeErrorBody>,
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct StripeErrorBody {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: StripeErrorBody,
}

#[derive(Debug, Deserialize)]
struct StripeRefund {
    id: String,
    status: String,
    #[serde(default)]
    metadata: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    failure_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RefundList {
    data: Vec<StripeRefund>,
}

/// A Stripe answer: the object, or Stripe's error with its HTTP status.
enum Answer<T> {
    Ok(T),
    Refused { status: u16, error: StripeErrorBody },
}

const DECLINED: &str = "Your card was declined.";
const UNREACHABLE: &str =
    "We could not reach the payment processor. You have not been charged; please try again.";

impl StripeProcessor {
    pub fn new(
        http: reqwest::Client,
        api_base: &str,
        config: StripeConfig,
        store: Arc<dyn Store>,
    ) -> Self {
        Self {
            http,
            api_base: api_base.trim_end_matches('/').to_owned(),
            config,
            store,
        }
    }

    pub fn config(&self) -> &StripeConfig {
        &self.config
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        form: &[(String, String)],
        idempotency_key: Option<&str>,
    ) -> Result<Answer<T>, ProcessorError> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.api_base))
            .bearer_auth(&self.config.secret_key);
        if method == reqwest::Method::GET {
            request = request.query(form);
        } else {
            request = request.form(form);
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request
            .send()
            .await
            .map_err(|error| ProcessorError::Unavailable(format!("Stripe: {error}")))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|error| ProcessorError::Unavailable(format!("Stripe: {error}")))?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&body)
                .map(Answer::Ok)
                .map_err(|error| {
                    ProcessorError::Unavailable(format!(
                        "Stripe answered an unreadable body: {error}"
                    ))
                });
        }
        if status >= 500 || status == 429 {
            return Err(ProcessorError::Unavailable(format!(
                "Stripe answered {status}"
            )));
        }
        let error = serde_json::from_slice::<ErrorEnvelope>(&body)
            .map(|e| e.error)
            .unwrap_or(StripeErrorBody {
                message: Some(String::from_utf8_lossy(&body).into_owned()),
                code: None,
                kind: None,
            });
        if status == 401 || status == 403 {
            return Err(ProcessorError::Unavailable(format!(
                "Stripe refused the account's secret key ({status}): {}",
                error.message.unwrap_or_default()
            )));
        }
        Ok(Answer::Refused { status, error })
    }

    async fn retrieve(&self, id: &str) -> Result<Answer<PaymentIntent>, ProcessorError> {
        self.call(
            reqwest::Method::GET,
            &format!("/v1/payment_intents/{id}"),
            &[],
            None,
        )
        .await
    }

    async fn cancel_intent(
        &self,
        attempt: &PaymentAttempt,
        id: &str,
    ) -> Result<ChargeOutcome, ProcessorError> {
        match self
            .call::<PaymentIntent>(
                reqwest::Method::POST,
                &format!("/v1/payment_intents/{id}/cancel"),
                &[],
                Some(&format!("{}-cancel", attempt.id)),
            )
            .await?
        {
            Answer::Ok(intent) if intent.status == "canceled" => Ok(abandoned()),
            // Not cancellable: it moved on (succeeded, or failed for good).
            _ => match self.retrieve(id).await? {
                Answer::Ok(intent) => Ok(settled_outcome(&intent).unwrap_or_else(abandoned)),
                Answer::Refused { status, error } => Err(ProcessorError::Unavailable(format!(
                    "Stripe could not find PaymentIntent {id} ({status}): {}",
                    error.message.unwrap_or_default()
                ))),
            },
        }
    }
}

fn abandoned() -> ChargeOutcome {
    ChargeOutcome::Declined {
        message: "The payment was not completed; you have not been charged.".into(),
    }
}

/// The final outcome a PaymentIntent's status shows, if it has one.
fn settled_outcome(intent: &PaymentIntent) -> Option<ChargeOutcome> {
    match intent.status.as_str() {
        "succeeded" => Some(ChargeOutcome::Succeeded {
            payment_id: intent.id.clone(),
        }),
        "canceled" => Some(abandoned()),
        // After a failed confirmation Stripe wants another payment method:
        // for paylink this attempt has failed.
        "requires_payment_method" if intent.last_payment_error.is_some() => {
            Some(ChargeOutcome::Declined {
                message: intent
                    .last_payment_error
                    .as_ref()
                    .and_then(|e| e.message.clone())
                    .unwrap_or_else(|| DECLINED.into()),
            })
        }
        _ => None,
    }
}

fn truncate(text: &str, chars: usize) -> String {
    text.chars().take(chars).collect()
}

#[async_trait]
impl PaymentProcessor for StripeProcessor {
    fn name(&self) -> &'static str {
        "stripe"
    }

    async fn charge(
        &self,
        attempt: &PaymentAttempt,
        source: PaymentSource<'_>,
    ) -> Result<ChargeOutcome, ProcessorError> {
        let PaymentSource::PaymentMethod(payment_method) = source else {
            // Card numbers never reach paylink on a Stripe link.
            return Ok(ChargeOutcome::Declined {
                message: "This payment needs a card entered through Stripe.".into(),
            });
        };
        let form = vec![
            ("amount".to_owned(), attempt.amount.to_string()),
            (
                "currency".to_owned(),
                attempt.currency.code().to_ascii_lowercase(),
            ),
            ("payment_method".to_owned(), payment_method.to_owned()),
            ("payment_method_types[]".to_owned(), "card".to_owned()),
            (
                "metadata[paylink_link_id]".to_owned(),
                attempt.link_id.clone(),
            ),
            (
                "metadata[paylink_attempt_id]".to_owned(),
                attempt.id.clone(),
            ),
        ];
        // Until the confirm is sent no money can move: a failure before it
        // closes the attempt at once, and the customer may simply retry.
        let unreachable = |error: ProcessorError| {
            tracing::warn!(%error, attempt_id = %attempt.id, "Stripe could not be reached before confirming; nothing was charged");
            ChargeOutcome::Declined {
                message: UNREACHABLE.into(),
            }
        };
        let intent = match self
            .call::<PaymentIntent>(
                reqwest::Method::POST,
                "/v1/payment_intents",
                &form,
                Some(&attempt.id),
            )
            .await
        {
            Ok(Answer::Ok(intent)) => intent,
            Ok(Answer::Refused { error, .. }) => {
                return Ok(ChargeOutcome::Declined {
                    message: error.message.unwrap_or_else(|| DECLINED.into()),
                });
            }
            Err(error) => return Ok(unreachable(error)),
        };
        // From here on the reconciler can ask Stripe about this attempt.
        match self
            .store
            .set_attempt_reference(&attempt.id, &intent.id)
            .await
        {
            Ok(true) => {}
            // Closed meanwhile: it must never take money now.
            Ok(false) => return Ok(abandoned()),
            Err(error) => return Ok(unreachable(error.into())),
        }
        let confirmed = match self
            .call::<PaymentIntent>(
                reqwest::Method::POST,
                &format!("/v1/payment_intents/{}/confirm", intent.id),
                &[],
                Some(&format!("{}-confirm", attempt.id)),
            )
            .await?
        {
            Answer::Ok(intent) => intent,
            Answer::Refused { status, error }
                if status == 402 || error.kind.as_deref() == Some("card_error") =>
            {
                return Ok(ChargeOutcome::Declined {
                    message: error.message.unwrap_or_else(|| DECLINED.into()),
                });
            }
            Answer::Refused { error, .. } => {
                // Not confirmed (a bad request): make sure it never will be.
                tracing::warn!(attempt_id = %attempt.id, message = ?error.message, code = ?error.code, "Stripe refused to confirm a PaymentIntent");
                return self.cancel_intent(attempt, &intent.id).await;
            }
        };
        if let Some(outcome) = settled_outcome(&confirmed) {
            return Ok(outcome);
        }
        match confirmed.status.as_str() {
            "requires_action" => Ok(ChargeOutcome::RequiresAction {
                client_secret: confirmed.client_secret.unwrap_or_default(),
            }),
            other => Err(ProcessorError::Pending(format!(
                "PaymentIntent {} is {other}",
                confirmed.id
            ))),
        }
    }

    async fn outcome(
        &self,
        attempt: &PaymentAttempt,
        now: Timestamp,
    ) -> Result<ChargeOutcome, ProcessorError> {
        let Some(id) = &attempt.processor_reference else {
            // Never created at Stripe as far as paylink knows: nothing was
            // confirmed, so nothing was charged.
            return Ok(abandoned());
        };
        let intent = match self.retrieve(id).await? {
            Answer::Ok(intent) => intent,
            Answer::Refused { status, error } => {
                return Err(ProcessorError::Unavailable(format!(
                    "Stripe could not find PaymentIntent {id} ({status}): {}",
                    error.message.unwrap_or_default()
                )));
            }
        };
        if let Some(outcome) = settled_outcome(&intent) {
            return Ok(outcome);
        }
        let age = now.duration_since(attempt.created_at);
        if intent.status == "requires_action" && age.unsigned_abs() < ACTION_WINDOW {
            return Err(ProcessorError::Pending(
                "the customer is completing 3-D Secure".into(),
            ));
        }
        // Unconfirmed, or its customer walked away from 3-D Secure.
        self.cancel_intent(attempt, id).await
    }

    async fn pending_action(&self, attempt: &PaymentAttempt) -> Option<String> {
        let id = attempt.processor_reference.as_deref()?;
        match self.retrieve(id).await.ok()? {
            Answer::Ok(intent) if intent.status == "requires_action" => intent.client_secret,
            _ => None,
        }
    }

    async fn void(&self, attempt: &PaymentAttempt) -> Result<ChargeOutcome, ProcessorError> {
        match &attempt.processor_reference {
            Some(id) => self.cancel_intent(attempt, id).await,
            None => Ok(abandoned()),
        }
    }

    async fn refund(&self, refund: &Refund) -> Result<RefundOutcome, ProcessorError> {
        // Asked again (by the reconciler), find the refund made before
        // rather than make another.
        if let Answer::Ok(list) = self
            .call::<RefundList>(
                reqwest::Method::GET,
                "/v1/refunds",
                &[("payment_intent".to_owned(), refund.payment_id.clone())],
                None,
            )
            .await?
            && let Some(found) = list
                .data
                .into_iter()
                .find(|r| r.metadata.get("paylink_refund_id") == Some(&refund.id))
        {
            return Ok(refund_outcome(found));
        }
        let mut form = vec![
            ("payment_intent".to_owned(), refund.payment_id.clone()),
            ("amount".to_owned(), refund.amount.to_string()),
            ("metadata[paylink_refund_id]".to_owned(), refund.id.clone()),
            (
                "metadata[paylink_link_id]".to_owned(),
                refund.link_id.clone(),
            ),
        ];
        if let Some(reason) = &refund.reason {
            form.push((
                "metadata[reason]".to_owned(),
                truncate(reason, METADATA_VALUE_CHARS),
            ));
        }
        match self
            .call::<StripeRefund>(
                reqwest::Method::POST,
                "/v1/refunds",
                &form,
                Some(&refund.id),
            )
            .await?
        {
            Answer::Ok(made) => Ok(refund_outcome(made)),
            Answer::Refused { error, .. } => Ok(RefundOutcome::Failed {
                message: error
                    .message
                    .unwrap_or_else(|| "Stripe refused the refund.".into()),
            }),
        }
    }
}

fn refund_outcome(refund: StripeRefund) -> RefundOutcome {
    match refund.status.as_str() {
        "failed" | "canceled" => RefundOutcome::Failed {
            message: refund
                .failure_reason
                .unwrap_or_else(|| format!("Stripe reports the refund {}", refund.status)),
        },
        // `pending` at Stripe means Stripe has accepted it; the money is on
        // its way and Stripe's own retries finish it.
        _ => RefundOutcome::Succeeded {
            processor_refund_id: refund.id,
        },
    }
}
