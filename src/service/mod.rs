//! Use cases. Each loads state, asks the domain what should happen, and
//! hands the resulting transition (new state + event) to the store as one
//! atomic, version-checked write. A lost race is retried from a fresh read,
//! so the loser answers from the winner's outcome, never a half-state.

mod accounts;
#[cfg(test)]
mod delivery_ownership;
#[cfg(test)]
mod dispatcher_wakes;
mod idempotency;
mod key_cache;
mod links;
mod payments;
mod refunds;
#[cfg(test)]
pub(crate) mod test_shop;
mod webhooks;

pub use key_cache::KEY_CACHE_TTL;
pub use webhooks::{EndpointUpdate, EventPage, NewEndpoint};

use key_cache::{CachedKey, KeyCache};

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::domain::cancel::CancelRefusal;
use crate::domain::card::Card;
use crate::domain::link::{
    AttemptStart, Creation, LinkUpdate, RefundStart, StateConflict, UpdateError,
};
use crate::domain::{
    Actor, AttemptState, Branding, CancelDecision, CancelPolicy, ChargeOutcome, EventType,
    FieldError, Link, LinkEvent, LinkStatus, NewLink, PaymentAttempt, Reason, Refund, RefundKind,
    RefundOutcome, RefundState, Transition, ids,
};
use crate::payments::{PaymentProcessor, PaymentSource, TestProcessor};
use crate::store::{
    Account, ApiKeyRecord, Applied, DeliveriesOwed, IdempotencyClaim, IdempotencyMark,
    IdempotencyWindow, LinkFilter, Page, Scope, StatsRow, Store, StoreError, StoredResponse,
};

/// How long a write that keeps losing races goes on before it gives up
/// (each loss means another writer changed the link, so the link moves on;
/// this bounds pathological contention). A time, not a count of attempts:
/// each winner's commit waits on the disk, and on an hour when fsync's p99
/// was 3 ms, forty PATCHes of one link on PostgreSQL outlasted sixteen
/// attempts' pauses and one answered 409 (a CI run of 2026-12-03).
const CONTENTION_BUDGET: Duration = Duration::from_secs(2);
/// The longest pause between two attempts of a write that lost a race.
const MAX_CONTENTION_PAUSE: Duration = Duration::from_millis(32);

/// Before a write's next attempt (the link changed under it): a random
/// pause, up to twice as long after each loss (capped). Writers that retry
/// at once keep colliding: twenty refunds settling on one link at the same
/// moment made some lose every race of their budget and leave their refund
/// pending for the reconciler, a minute later. Spread out, each gets its
/// turn in a few milliseconds.
async fn contention_pause(attempt: usize) {
    let ceiling = Duration::from_micros(250)
        .saturating_mul(1u32 << attempt.min(8))
        .min(MAX_CONTENTION_PAUSE);
    let ceiling_nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    tokio::time::sleep(Duration::from_nanos(rand::random_range(0..=ceiling_nanos))).await;
}

/// How many writes one bulk operation keeps in flight (they share commits).
const BULK_CONCURRENCY: usize = 64;
pub const MAX_BULK_CANCEL: usize = 1000;
/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_KEY_LIFETIME: SignedDuration = SignedDuration::from_hours(24);
/// A claimed key whose request never finished (its node died) is free
/// again after this; longer than any request may run.
const IDEMPOTENCY_LEASE: SignedDuration = SignedDuration::from_secs(120);
/// Longest the checkout waits for a processor's answer; past it the
/// attempt stays pending and the reconciler asks the processor later.
const PROCESSOR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// Longest a cancel waits for a payment attempt in flight to resolve
/// before it answers that a payment is in progress: long enough for a
/// card payment's round trip to the processor, short enough for an HTTP
/// client's patience.
const PAYMENT_SETTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// How often that wait looks again (a read by primary key; any node may
/// be the one settling the attempt).
const PAYMENT_SETTLE_POLL: std::time::Duration = std::time::Duration::from_millis(50);
/// A key's `last_used_at` is written at most this often (one write a
/// minute per busy key, not one per request).
const LAST_USED_RESOLUTION: SignedDuration = SignedDuration::from_mins(1);
/// Pending attempts the reconciler resolves per round.
const RECONCILE_BATCH: usize = 100;

tokio::task_local! {
    /// The idempotency key the current request runs under, set by the HTTP
    /// layer around the handler.
    static IDEMPOTENCY: IdempotencyContext;
}

/// The idempotency key a request runs under: its single change is marked
/// with it in the change's transaction, and `recall` (the event of a change
/// an earlier, crashed run committed) is answered instead of changing again.
#[derive(Debug, Clone)]
pub struct IdempotencyContext {
    pub mark: IdempotencyMark,
    pub recall: Option<String>,
}

/// Runs `work` (a request's handler) under `context`.
pub async fn under_idempotency_key<F: std::future::Future>(
    context: IdempotencyContext,
    work: F,
) -> F::Output {
    IDEMPOTENCY.scope(context, work).await
}

fn current_idempotency() -> Option<IdempotencyContext> {
    IDEMPOTENCY.try_with(Clone::clone).ok()
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Invalid(FieldError),
    #[error("{message}")]
    InvalidState { status: LinkStatus, message: String },
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("account suspended")]
    AccountSuspended,
    #[error("the link kept changing under this request")]
    Contention,
    #[error("payments are not available for live-mode links")]
    PaymentsUnavailable,
    /// The database cannot be reached or is shutting down; retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A fault on paylink's side (the detail is for the log, not the client).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(detail) => ServiceError::Unavailable(detail),
            StoreError::Internal(detail) => ServiceError::Internal(detail),
        }
    }
}

impl From<FieldError> for ServiceError {
    fn from(error: FieldError) -> Self {
        ServiceError::Invalid(error)
    }
}

impl From<CancelRefusal> for ServiceError {
    fn from(refusal: CancelRefusal) -> Self {
        ServiceError::InvalidState {
            status: refusal.status,
            message: refusal.message().to_owned(),
        }
    }
}

impl From<StateConflict> for ServiceError {
    fn from(conflict: StateConflict) -> Self {
        ServiceError::InvalidState {
            status: conflict.status,
            message: conflict.message,
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// An authenticated merchant request: the scope it acts in and the key it used.
#[derive(Debug, Clone)]
pub struct Caller {
    pub scope: Scope,
    pub key_id: String,
    pub account_name: String,
}

impl Caller {
    pub fn actor(&self) -> Actor {
        Actor::ApiKey {
            id: self.key_id.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub default_link_lifetime: SignedDuration,
    /// Lets webhook endpoints be loopback or private addresses
    /// (`PAYLINK_WEBHOOK_ALLOW_PRIVATE=1`; development and tests only).
    pub webhook_allow_private: bool,
    /// Processor endpoints and the key processor secrets are sealed with.
    pub processors: crate::payments::ProcessorSettings,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            default_link_lifetime: SignedDuration::from_hours(14 * 24),
            webhook_allow_private: false,
            processors: crate::payments::ProcessorSettings::default(),
        }
    }
}

/// A freshly created API key: the secret exists only here, never stored.
pub struct IssuedKey {
    pub secret: String,
    pub record: ApiKeyRecord,
    pub account: Account,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkOutcome {
    Cancelled,
    WouldCancel,
    AlreadyCancelled,
    Refused(CancelRefusal),
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct BulkCancelItem {
    pub link: Link,
    pub outcome: BulkOutcome,
}

#[derive(Debug, Clone)]
pub struct ListPage {
    pub links: Vec<Link>,
    pub has_more: bool,
}

enum LinkKey {
    Id(Scope, String),
    Slug(String),
}

impl LinkKey {
    /// The link an attempt or refund belongs to, in its own scope.
    fn of(account_id: &str, livemode: bool, link_id: &str) -> Self {
        LinkKey::Id(
            Scope {
                account_id: account_id.to_owned(),
                livemode,
            },
            link_id.to_owned(),
        )
    }
}

pub struct Service {
    store: Arc<dyn Store>,
    /// Opens the processors accounts configure (Stripe).
    connectors: crate::payments::Connectors,
    clock: Arc<dyn Clock>,
    settings: ServiceSettings,
    test_processor: Arc<dyn PaymentProcessor>,
    /// Wakes this node's webhook dispatcher after a write that owed
    /// deliveries (other nodes' writes are found by its polling).
    deliveries_waiting: tokio::sync::Notify,
    /// Keys that authenticated in the last second.
    keys: KeyCache,
}

/// What became of a customer's payment attempt.
#[derive(Debug, Clone)]
pub enum PaymentResult {
    Paid(Link),
    Declined {
        link: Link,
        message: String,
    },
    /// The processor has not answered yet; the reconciler will settle it.
    Processing(Link),
    /// The customer must authenticate (3-D Secure) on the page with the
    /// processor's `client_secret`; the outcome arrives later.
    ActionRequired {
        link: Link,
        attempt_id: String,
        client_secret: String,
    },
}

/// The processor an operator chooses for an account and mode.
#[derive(Debug, Clone)]
pub enum ProcessorChoice {
    /// The built-in test processor (test mode only).
    Test,
    Stripe(crate::payments::stripe::StripeConfig),
}

/// How the hosted page takes a link's payment.
#[derive(Debug, Clone)]
pub enum CheckoutProcessor {
    /// paylink's own card form, for the built-in test processor.
    TestCard,
    /// Stripe Elements collects the card; only a PaymentMethod id reaches paylink.
    Stripe {
        publishable_key: String,
        js_url: String,
    },
    /// No processor takes this link's payments.
    Unavailable,
}

/// The result of a refund request: the link after it, and the refund as
/// the processor left it (`pending` if it has not answered yet).
#[derive(Debug, Clone)]
pub struct RefundResult {
    pub link: Link,
    pub refund: Refund,
}

/// The stored form of an API key secret. Keys carry ~190 random bits, so a
/// plain SHA-256 cannot be reversed or brute-forced (no salt or KDF needed).
pub fn hash_api_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl Service {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, settings: ServiceSettings) -> Self {
        Self {
            connectors: crate::payments::Connectors::new(
                settings.processors.clone(),
                Arc::clone(&store),
            ),
            store: Arc::clone(&store),
            clock,
            settings,
            test_processor: Arc::new(TestProcessor::new(Arc::clone(&store))),
            deliveries_waiting: tokio::sync::Notify::new(),
            keys: KeyCache::default(),
        }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// A write whose event owes no delivery leaves the dispatcher asleep:
    /// waking it costs a look at the deliveries, and most writes on an
    /// account without endpoints owe none.
    fn wake_dispatcher_if(&self, owed: DeliveriesOwed) {
        if owed.any() {
            self.deliveries_waiting.notify_one();
        }
    }

    pub fn processor_settings(&self) -> &crate::payments::ProcessorSettings {
        &self.settings.processors
    }

    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    /// Readiness: the database answers.
    pub async fn ready(&self) -> ServiceResult<()> {
        Ok(self.store.ping().await?)
    }

    // ---- the write loop ----

    async fn load(&self, key: &LinkKey) -> ServiceResult<Link> {
        let link = match key {
            LinkKey::Id(scope, id) => self.store.get_link(scope, id).await?,
            LinkKey::Slug(slug) => self.store.get_link_by_slug(slug).await?,
        };
        link.ok_or(ServiceError::NotFound)
    }

    /// Reads the link, stores a due expiry first (so a write sees what a
    /// read sees), then applies what `decide` returns. `decide` answering
    /// `None` means "nothing to change": the current link is returned.
    ///
    /// With `idempotency`, the decided transition marks the request's key
    /// in its own transaction, and a change an earlier run of the request
    /// committed is recalled instead of decided again.
    async fn change(
        &self,
        key: &LinkKey,
        idempotency: Option<IdempotencyContext>,
        mut decide: impl FnMut(&Link, Timestamp) -> ServiceResult<Option<Transition>>,
    ) -> ServiceResult<Link> {
        if let Some(link) = self.recalled(idempotency.as_ref()).await? {
            return Ok(link);
        }
        let mark = idempotency.map(|c| c.mark);
        let started = std::time::Instant::now();
        'attempt: for attempt in 0.. {
            if attempt > 0 {
                if started.elapsed() >= CONTENTION_BUDGET {
                    break;
                }
                contention_pause(attempt).await;
            }
            let now = self.now();
            let mut link = self.load(key).await?;
            if let Some(expiry) = link.expire_if_due(now) {
                let expired = expiry.link.clone();
                match self.store.apply_transition(expiry, None).await? {
                    Applied::Yes(owed) => {
                        crate::telemetry::link_transition(EventType::Expired.as_str());
                        self.wake_dispatcher_if(owed);
                        link = expired;
                    }
                    Applied::StaleVersion => continue 'attempt,
                }
            }
            let Some(transition) = decide(&link, now)? else {
                return Ok(link);
            };
            let changed = transition.link.clone();
            let event_type = transition.event.event_type;
            match self
                .store
                .apply_transition(transition, mark.clone())
                .await?
            {
                Applied::Yes(owed) => {
                    crate::telemetry::link_transition(event_type.as_str());
                    self.wake_dispatcher_if(owed);
                    return Ok(changed);
                }
                Applied::StaleVersion => continue 'attempt,
            }
        }
        Err(ServiceError::Contention)
    }
}
