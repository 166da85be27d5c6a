//! The seam to a payment processor, and the built-in test processor.
//!
//! Every call carries the payment attempt, whose id is the processor's
//! idempotency key: charging the same attempt twice returns the first
//! answer, and asking about an attempt (the reconciler does, for attempts a
//! crash or a timeout left pending) returns what became of it. A processor
//! that never saw an attempt closes it as failed when asked, so a charge
//! that arrives later cannot succeed behind the reconciler's back.
//!
//! Refunds go the same way: the refund id is the idempotency key, and
//! asking about a refund that never reached the processor makes it (a
//! refund, unlike a charge, is always wanted once reserved).

pub mod stripe;

use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;

use crate::domain::card::Card;
use crate::domain::{ChargeOutcome, PaymentAttempt, Refund, RefundOutcome, ids};
use crate::secrets::{SecretsError, SecretsKey};
use crate::store::{ProcessorAccount, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// The processor could not be reached or did not answer; the attempt
    /// stays pending and is asked about again later.
    #[error("the payment processor is unavailable: {0}")]
    Unavailable(String),
    /// The processor has no outcome yet (the customer is still
    /// authenticating); asked again later.
    #[error("the payment has no outcome yet: {0}")]
    Pending(String),
}

impl From<StoreError> for ProcessorError {
    fn from(error: StoreError) -> Self {
        ProcessorError::Unavailable(error.to_string())
    }
}

/// What the customer pays with: card details typed into paylink's own page
/// (the test processor only), or a processor's token for a card that never
/// reached paylink (a Stripe PaymentMethod, `pm_...`).
#[derive(Debug, Clone, Copy)]
pub enum PaymentSource<'a> {
    Card(&'a Card),
    PaymentMethod(&'a str),
}

#[async_trait]
pub trait PaymentProcessor: Send + Sync + 'static {
    /// The name stored with each attempt (`test`, `stripe`).
    fn name(&self) -> &'static str;
    /// Charges `attempt.amount` of `attempt.currency` to `source`, with the
    /// attempt id as idempotency key.
    async fn charge(
        &self,
        attempt: &PaymentAttempt,
        source: PaymentSource<'_>,
    ) -> Result<ChargeOutcome, ProcessorError>;
    /// What became of `attempt`, asked at `now`; an attempt the processor
    /// never saw (or never confirmed) is closed as declined, for good.
    async fn outcome(
        &self,
        attempt: &PaymentAttempt,
        now: Timestamp,
    ) -> Result<ChargeOutcome, ProcessorError>;
    /// The secret the customer's browser needs to finish authenticating
    /// `attempt` (3-D Secure), if it is waiting for that; lets a reloaded
    /// page pick the challenge up again.
    async fn pending_action(&self, _attempt: &PaymentAttempt) -> Option<String> {
        None
    }
    /// Makes sure `attempt` can no longer take money (Stripe: cancels its
    /// PaymentIntent) and answers its outcome: declined, or succeeded if it
    /// went through first.
    async fn void(&self, attempt: &PaymentAttempt) -> Result<ChargeOutcome, ProcessorError>;
    /// Gives `refund.amount` of its payment back, with the refund id as
    /// idempotency key; asking again answers what became of it.
    async fn refund(&self, refund: &Refund) -> Result<RefundOutcome, ProcessorError>;
}

pub const TEST_CARD_SUCCEEDS: &str = "4242424242424242";
pub const TEST_CARD_DECLINED: &str = "4000000000000002";
/// What the test processor answers about an attempt that never reached it.
pub const ABANDONED_MESSAGE: &str =
    "The payment was interrupted before it reached the processor; you have not been charged.";

/// Test mode: `4242 4242 4242 4242` succeeds, `4000 0000 0000 0002` is
/// declined, and any other (real-looking) number is refused, as real
/// processors do in test mode. Its ledger is a table of the store (the
/// first answer for an attempt id is kept), so its answers survive
/// restarts and agree across nodes.
pub struct TestProcessor {
    store: Arc<dyn Store>,
}

impl TestProcessor {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl PaymentProcessor for TestProcessor {
    fn name(&self) -> &'static str {
        "test"
    }

    async fn charge(
        &self,
        attempt: &PaymentAttempt,
        source: PaymentSource<'_>,
    ) -> Result<ChargeOutcome, ProcessorError> {
        let PaymentSource::Card(card) = source else {
            return Ok(ChargeOutcome::Declined {
                message: "The test processor takes card details only.".into(),
            });
        };
        let decided = match card.number() {
            TEST_CARD_SUCCEEDS => ChargeOutcome::Succeeded {
                payment_id: ids::new_payment_id(),
            },
            TEST_CARD_DECLINED => ChargeOutcome::Declined {
                message: "Your card was declined.".into(),
            },
            _ => ChargeOutcome::Declined {
                message: "Your card was declined: this is a test-mode link, use a test card such as 4242 4242 4242 4242."
                    .into(),
            },
        };
        self.ledger(&attempt.id, &decided).await
    }

    async fn outcome(
        &self,
        attempt: &PaymentAttempt,
        _now: Timestamp,
    ) -> Result<ChargeOutcome, ProcessorError> {
        let abandoned = ChargeOutcome::Declined {
            message: ABANDONED_MESSAGE.into(),
        };
        self.ledger(&attempt.id, &abandoned).await
    }

    async fn void(&self, attempt: &PaymentAttempt) -> Result<ChargeOutcome, ProcessorError> {
        self.outcome(attempt, Timestamp::now()).await
    }

    /// Every refund of a test payment succeeds (paylink has already made
    /// sure it is not more than what is left).
    async fn refund(&self, refund: &Refund) -> Result<RefundOutcome, ProcessorError> {
        let decided = RefundOutcome::Succeeded {
            processor_refund_id: format!("tre_{}", ids::random_base62(24)),
        };
        self.ledger(&refund.id, &decided).await
    }
}

impl TestProcessor {
    /// Records `decided` for `key` unless an answer is recorded already;
    /// returns the recorded answer.
    async fn ledger<T>(&self, key: &str, decided: &T) -> Result<T, ProcessorError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        let decided = serde_json::to_value(decided)
            .map_err(|error| ProcessorError::Unavailable(error.to_string()))?;
        let recorded = self
            .store
            .record_test_outcome(key, decided, Timestamp::now())
            .await?;
        serde_json::from_value(recorded)
            .map_err(|error| ProcessorError::Unavailable(format!("test ledger: {error}")))
    }
}

/// Where the processors paylink connects to live, and the key their
/// secrets are sealed with (`PAYLINK_SECRETS_KEY`).
#[derive(Debug, Clone)]
pub struct ProcessorSettings {
    pub secrets_key: Option<SecretsKey>,
    /// `PAYLINK_STRIPE_API_BASE`.
    pub stripe_api_base: String,
    /// `PAYLINK_STRIPE_JS_URL`: the one script a Stripe checkout page loads.
    pub stripe_js_url: String,
}

impl Default for ProcessorSettings {
    fn default() -> Self {
        Self {
            secrets_key: None,
            stripe_api_base: stripe::DEFAULT_API_BASE.to_owned(),
            stripe_js_url: stripe::DEFAULT_JS_URL.to_owned(),
        }
    }
}

/// The associated data an account's processor configuration is sealed
/// with: it opens only for that account and mode.
pub fn config_purpose(account_id: &str, livemode: bool) -> String {
    format!(
        "processor:{account_id}:{}",
        if livemode { "live" } else { "test" }
    )
}

/// Opens the processors accounts configure.
pub struct Connectors {
    settings: ProcessorSettings,
    http: reqwest::Client,
    store: Arc<dyn Store>,
}

impl Connectors {
    pub fn new(settings: ProcessorSettings, store: Arc<dyn Store>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(15))
            .connect_timeout(std::time::Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            settings,
            http,
            store,
        }
    }

    pub fn settings(&self) -> &ProcessorSettings {
        &self.settings
    }

    /// Seals a processor configuration for an account and mode; refused
    /// without `PAYLINK_SECRETS_KEY`.
    pub fn seal(
        &self,
        config: &[u8],
        account_id: &str,
        livemode: bool,
    ) -> Result<String, SecretsError> {
        let key = self
            .settings
            .secrets_key
            .as_ref()
            .ok_or(SecretsError::NoKey)?;
        Ok(key.seal(config, &config_purpose(account_id, livemode)))
    }

    /// The Stripe configuration an account stored, opened.
    pub fn stripe_config(
        &self,
        configured: &ProcessorAccount,
        account_id: &str,
        livemode: bool,
    ) -> Result<stripe::StripeConfig, StoreError> {
        let key = self
            .settings
            .secrets_key
            .as_ref()
            .ok_or_else(|| StoreError::Internal(SecretsError::NoKey.to_string()))?;
        let plain = key
            .open(
                &configured.sealed_config,
                &config_purpose(account_id, livemode),
            )
            .map_err(|error| StoreError::Internal(error.to_string()))?;
        serde_json::from_slice(&plain).map_err(|error| {
            StoreError::Internal(format!("a sealed Stripe configuration: {error}"))
        })
    }

    /// The processor a stored configuration names.
    pub fn open(
        &self,
        configured: &ProcessorAccount,
        account_id: &str,
        livemode: bool,
    ) -> Result<Option<Arc<dyn PaymentProcessor>>, StoreError> {
        match configured.processor.as_str() {
            "stripe" => Ok(Some(Arc::new(stripe::StripeProcessor::new(
                self.http.clone(),
                &self.settings.stripe_api_base,
                self.stripe_config(configured, account_id, livemode)?,
                Arc::clone(&self.store),
            )))),
            _ => Ok(None),
        }
    }
}
