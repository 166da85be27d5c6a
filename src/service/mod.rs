//! Use cases. Each loads state, asks the domain what should happen, and
//! hands the resulting transition (new state + event) to the store as one
//! atomic, version-checked write. A lost race is retried from a fresh read,
//! so the loser answers from the winner's outcome, never a half-state.

mod webhooks;

pub use webhooks::{EndpointUpdate, EventPage, NewEndpoint};

use std::sync::Arc;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::domain::cancel::CancelRefusal;
use crate::domain::card::Card;
use crate::domain::link::{
    AttemptStart, Creation, LinkUpdate, RefundStart, StateConflict, UpdateError, validate_reason,
};
use crate::domain::{
    Actor, AttemptState, CancelDecision, CancelPolicy, ChargeOutcome, FieldError, Link, LinkEvent,
    LinkStatus, NewLink, PaymentAttempt, Refund, RefundKind, RefundOutcome, RefundState,
    Transition, ids,
};
use crate::payments::{PaymentProcessor, PaymentSource, TestProcessor};
use crate::store::{
    Account, ApiKeyRecord, Applied, IdempotencyClaim, IdempotencyMark, IdempotencyWindow,
    LinkFilter, Page, Scope, StatsRow, Store, StoreError, StoredResponse,
};

/// Attempts before a write that keeps losing races gives up (each loss means
/// another writer changed the link, so this bounds pathological contention).
const MAX_ATTEMPTS: usize = 16;
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
    /// Wakes this node's webhook dispatcher after a write that stored
    /// events (other nodes' writes are found by its polling).
    deliveries_waiting: tokio::sync::Notify,
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
        }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
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

    // ---- accounts and keys ----

    pub async fn create_api_key(
        &self,
        account_name: &str,
        livemode: bool,
    ) -> ServiceResult<IssuedKey> {
        let name = account_name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(
                FieldError::new("account", "An account name is 1 to 100 characters.").into(),
            );
        }
        let now = self.now();
        let account = self
            .store
            .ensure_account(Account {
                id: ids::new_account_id(),
                name: name.to_owned(),
                suspended: false,
                created_at: now,
            })
            .await?;
        let secret = ids::new_api_key_secret(livemode);
        let record = ApiKeyRecord {
            id: ids::new_api_key_id(),
            account_id: account.id.clone(),
            livemode,
            key_hash: hash_api_key(&secret),
            key_prefix: secret.chars().take(12).collect(),
            created_at: now,
        };
        self.store.insert_api_key(record.clone()).await?;
        Ok(IssuedKey {
            secret,
            record,
            account,
        })
    }

    /// On a database with no account yet, creates `default` with one test
    /// key and returns it, so a newcomer can call the API at once.
    pub async fn bootstrap(&self) -> ServiceResult<Option<IssuedKey>> {
        if self.store.count_accounts().await? > 0 {
            return Ok(None);
        }
        Ok(Some(self.create_api_key("default", false).await?))
    }

    pub async fn set_account_suspended(&self, name: &str, suspended: bool) -> ServiceResult<()> {
        if self.store.set_account_suspended(name, suspended).await? {
            Ok(())
        } else {
            Err(ServiceError::NotFound)
        }
    }

    pub async fn authenticate(&self, secret: &str) -> ServiceResult<Caller> {
        if !(secret.starts_with("pl_test_") || secret.starts_with("pl_live_")) {
            return Err(ServiceError::Unauthorized(
                "The API key is not a paylink key (pl_test_... or pl_live_...).",
            ));
        }
        let (key, account) = self
            .store
            .find_api_key(&hash_api_key(secret))
            .await?
            .ok_or(ServiceError::Unauthorized("The API key is not valid."))?;
        if account.suspended {
            return Err(ServiceError::AccountSuspended);
        }
        Ok(Caller {
            scope: Scope {
                account_id: account.id,
                livemode: key.livemode,
            },
            key_id: key.id,
            account_name: account.name,
        })
    }

    /// Sets the processor an account takes payments with in a mode. Stripe
    /// secrets are sealed under `PAYLINK_SECRETS_KEY` (refused without it).
    pub async fn set_processor(
        &self,
        account_name: &str,
        livemode: bool,
        choice: ProcessorChoice,
    ) -> anyhow::Result<()> {
        let account = self
            .store
            .account_by_name(account_name)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no account named `{account_name}`"))?;
        let configured = match choice {
            ProcessorChoice::Test if livemode => {
                anyhow::bail!("the built-in test processor takes test-mode payments only")
            }
            ProcessorChoice::Test => None,
            ProcessorChoice::Stripe(config) => {
                let checks = [
                    ("--secret-key", &config.secret_key, &["sk_", "rk_"][..]),
                    ("--publishable-key", &config.publishable_key, &["pk_"][..]),
                    ("--webhook-secret", &config.webhook_secret, &["whsec_"][..]),
                ];
                for (flag, value, prefixes) in checks {
                    if !prefixes.iter().any(|p| value.starts_with(p)) {
                        anyhow::bail!("{flag} must start with {}", prefixes.join(" or "));
                    }
                }
                let expected_mode = if livemode { "_live_" } else { "_test_" };
                if !config.secret_key.contains(expected_mode)
                    || !config.publishable_key.contains(expected_mode)
                {
                    anyhow::bail!(
                        "the Stripe keys must be {} keys for {} mode",
                        expected_mode.trim_matches('_'),
                        if livemode { "live" } else { "test" }
                    );
                }
                let plain = serde_json::to_vec(&config)?;
                let sealed = self.connectors.seal(&plain, &account.id, livemode)?;
                Some(crate::store::ProcessorAccount {
                    processor: "stripe".into(),
                    sealed_config: sealed,
                    updated_at: self.now(),
                })
            }
        };
        self.store
            .set_processor_account(&account.id, livemode, configured)
            .await?;
        Ok(())
    }

    /// How the hosted page of `link` takes its payment.
    pub async fn checkout_processor(&self, link: &Link) -> ServiceResult<CheckoutProcessor> {
        let Some(configured) = self
            .store
            .processor_account(&link.account_id, link.livemode)
            .await?
        else {
            return Ok(if link.livemode {
                CheckoutProcessor::Unavailable
            } else {
                CheckoutProcessor::TestCard
            });
        };
        match configured.processor.as_str() {
            "stripe" => {
                let config =
                    self.connectors
                        .stripe_config(&configured, &link.account_id, link.livemode)?;
                Ok(CheckoutProcessor::Stripe {
                    publishable_key: config.publishable_key,
                    js_url: self.connectors.settings().stripe_js_url.clone(),
                })
            }
            _ => Ok(CheckoutProcessor::Unavailable),
        }
    }

    /// The Stripe configuration of an account (by name) in a mode, for
    /// verifying its webhooks; the account id with it.
    pub async fn stripe_account(
        &self,
        account_name: &str,
    ) -> ServiceResult<Vec<(String, bool, crate::payments::stripe::StripeConfig)>> {
        let account = self
            .store
            .account_by_name(account_name)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let mut configs = Vec::new();
        for livemode in [false, true] {
            if let Some(configured) = self.store.processor_account(&account.id, livemode).await?
                && configured.processor == "stripe"
            {
                configs.push((
                    account.id.clone(),
                    livemode,
                    self.connectors
                        .stripe_config(&configured, &account.id, livemode)?,
                ));
            }
        }
        Ok(configs)
    }

    // ---- links ----

    pub async fn create_link(&self, caller: &Caller, new_link: NewLink) -> ServiceResult<Link> {
        let idempotency = current_idempotency();
        if let Some(link) = self.recalled(idempotency.as_ref()).await? {
            return Ok(link);
        }
        if caller.scope.livemode
            && self
                .store
                .processor_account(&caller.scope.account_id, true)
                .await?
                .is_none()
        {
            return Err(FieldError::new(
                "livemode",
                "This account has no processor for live payments, so a live link could not be paid. \
                 An operator connects one with `paylink accounts set-processor ACCOUNT --mode live --processor stripe \
                 --secret-key sk_live_... --publishable-key pk_live_... --webhook-secret whsec_...`.",
            )
            .into());
        }
        let (link, event) = new_link.create(Creation {
            account_id: &caller.scope.account_id,
            livemode: caller.scope.livemode,
            actor: caller.actor(),
            now: self.now(),
            default_lifetime: self.settings.default_link_lifetime,
        })?;
        self.store
            .insert_link(link.clone(), event, idempotency.map(|c| c.mark))
            .await?;
        self.deliveries_waiting.notify_one();
        Ok(link)
    }

    /// The link as the change an earlier run of this request committed
    /// left it (that run died before its answer was stored), if any.
    async fn recalled(
        &self,
        idempotency: Option<&IdempotencyContext>,
    ) -> ServiceResult<Option<Link>> {
        let Some(event_id) = idempotency.and_then(|c| c.recall.as_deref()) else {
            return Ok(None);
        };
        let event =
            self.store.event_by_id(event_id).await?.ok_or_else(|| {
                StoreError::Internal(format!("recalled event {event_id} is missing"))
            })?;
        Ok(Some(event.link))
    }

    pub async fn get_link(&self, caller: &Caller, id: &str) -> ServiceResult<Link> {
        let link = self
            .load(&LinkKey::Id(caller.scope.clone(), id.to_owned()))
            .await?;
        Ok(link.as_seen_at(self.now()))
    }

    pub async fn get_link_by_slug(&self, slug: &str) -> ServiceResult<Link> {
        let link = self.load(&LinkKey::Slug(slug.to_owned())).await?;
        Ok(link.as_seen_at(self.now()))
    }

    pub async fn list_links(
        &self,
        caller: &Caller,
        filter: &LinkFilter,
        limit: usize,
        starting_after: Option<&str>,
    ) -> ServiceResult<ListPage> {
        let cursor = match starting_after {
            Some(id) => {
                let link = self
                    .store
                    .get_link(&caller.scope, id)
                    .await?
                    .ok_or_else(|| {
                        FieldError::new(
                            "starting_after",
                            format!("No payment link `{id}` to start after."),
                        )
                    })?;
                Some((link.created_at, link.id))
            }
            None => None,
        };
        let now = self.now();
        let page = Page {
            limit: limit + 1,
            starting_after: cursor,
        };
        let mut links = self
            .store
            .list_links(&caller.scope, filter, &page, now)
            .await?;
        let has_more = links.len() > limit;
        links.truncate(limit);
        Ok(ListPage {
            links: links.into_iter().map(|link| link.as_seen_at(now)).collect(),
            has_more,
        })
    }

    pub async fn update_link(
        &self,
        caller: &Caller,
        id: &str,
        update: LinkUpdate,
    ) -> ServiceResult<Link> {
        let actor = caller.actor();
        self.change(
            &LinkKey::Id(caller.scope.clone(), id.to_owned()),
            current_idempotency(),
            |link, now| {
                link.update(&update, actor.clone(), now)
                    .map_err(|error| match error {
                        UpdateError::Field(field) => ServiceError::Invalid(field),
                        UpdateError::State(conflict) => conflict.into(),
                    })
            },
        )
        .await
    }

    pub async fn cancel_link(
        &self,
        caller: &Caller,
        id: &str,
        reason: Option<String>,
        policy: &CancelPolicy,
    ) -> ServiceResult<Link> {
        self.cancel_one(caller, id, reason, policy, current_idempotency())
            .await
    }

    async fn cancel_one(
        &self,
        caller: &Caller,
        id: &str,
        reason: Option<String>,
        policy: &CancelPolicy,
        idempotency: Option<IdempotencyContext>,
    ) -> ServiceResult<Link> {
        if let Some(reason) = &reason {
            validate_reason(reason)?;
        }
        let key = LinkKey::Id(caller.scope.clone(), id.to_owned());
        let actor = caller.actor();
        let cancel =
            |link: &Link, now| Ok(link.cancel(policy, reason.clone(), actor.clone(), now)?);
        match self.change(&key, idempotency.clone(), cancel).await {
            // Refused only because a payment is in flight: if the processor
            // holds it unconfirmed, void it and decide again.
            Err(ServiceError::InvalidState {
                status: LinkStatus::Processing,
                message,
            }) => {
                let link = self.load(&key).await?;
                if !self.void_pending_payment(&link).await? {
                    return Err(ServiceError::InvalidState {
                        status: LinkStatus::Processing,
                        message,
                    });
                }
                self.change(&key, idempotency, cancel).await
            }
            decided => decided,
        }
    }

    /// A cancel of a `processing` link whose payment the processor holds
    /// unconfirmed (a PaymentIntent waiting for 3-D Secure) first cancels
    /// that payment at the processor and settles the attempt, so the link
    /// is active again and the cancel can proceed; if the payment went
    /// through first, the link is paid and the cancel is refused. An
    /// attempt the processor has not made yet (no reference) is left to
    /// finish: the cancel answers 409 as before.
    /// Returns whether a payment was voided (and settled).
    async fn void_pending_payment(&self, link: &Link) -> ServiceResult<bool> {
        let Some((attempt, processor)) = self.payment_held_by_processor(link).await? else {
            return Ok(false);
        };
        match tokio::time::timeout(PROCESSOR_TIMEOUT, processor.void(&attempt)).await {
            Ok(Ok(outcome)) => {
                tracing::info!(attempt_id = %attempt.id, ?outcome, "voided a pending payment before a cancel");
                self.settle_attempt(&attempt, &outcome).await?;
                Ok(true)
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, attempt_id = %attempt.id, "could not void a pending payment; the cancel waits for it");
                Ok(false)
            }
            Err(_) => {
                tracing::warn!(attempt_id = %attempt.id, "the processor did not answer a void in time");
                Ok(false)
            }
        }
    }

    /// The pending attempt of a `processing` link whose payment the
    /// processor has made (it has a reference), with that processor.
    async fn payment_held_by_processor(
        &self,
        link: &Link,
    ) -> ServiceResult<Option<(PaymentAttempt, Arc<dyn PaymentProcessor>)>> {
        if link.status != LinkStatus::Processing {
            return Ok(None);
        }
        let Some(attempt) = self
            .store
            .link_attempts(&link.id)
            .await?
            .into_iter()
            .find(|a| a.state == AttemptState::Pending && a.processor_reference.is_some())
        else {
            return Ok(None);
        };
        Ok(self
            .processor_named(&attempt.account_id, attempt.livemode, &attempt.processor)
            .await?
            .map(|processor| (attempt, processor)))
    }

    /// Cancels (or with `dry_run`, reports what would be cancelled) up to
    /// `limit` links matching `filter`, newest first after `starting_after`.
    pub async fn bulk_cancel(
        &self,
        caller: &Caller,
        filter: &LinkFilter,
        limit: usize,
        starting_after: Option<&str>,
        reason: Option<String>,
        dry_run: bool,
    ) -> ServiceResult<(Vec<BulkCancelItem>, bool)> {
        if let Some(reason) = &reason {
            validate_reason(reason)?;
        }
        let page = self
            .list_links(caller, filter, limit.min(MAX_BULK_CANCEL), starting_after)
            .await?;
        let policy = CancelPolicy::NATIVE;
        let items = futures::stream::iter(page.links)
            .map(|link| {
                let reason = reason.clone();
                async move {
                    if dry_run {
                        let outcome = match policy.decide(link.status) {
                            CancelDecision::Cancel => BulkOutcome::WouldCancel,
                            CancelDecision::Unchanged => BulkOutcome::AlreadyCancelled,
                            CancelDecision::Refuse(refusal) => BulkOutcome::Refused(refusal),
                        };
                        return BulkCancelItem { link, outcome };
                    }
                    let was_cancelled = link.status == LinkStatus::Cancelled;
                    // Not under the request's idempotency key: a bulk
                    // cancel makes many changes, and a rerun after a crash
                    // finds the cancelled ones already cancelled.
                    match self
                        .cancel_one(caller, &link.id, reason, &policy, None)
                        .await
                    {
                        Ok(after) if was_cancelled || after.version == link.version => {
                            BulkCancelItem {
                                link: after,
                                outcome: BulkOutcome::AlreadyCancelled,
                            }
                        }
                        Ok(after) => BulkCancelItem {
                            link: after,
                            outcome: BulkOutcome::Cancelled,
                        },
                        Err(ServiceError::InvalidState { status, .. }) => BulkCancelItem {
                            link: Link { status, ..link },
                            outcome: BulkOutcome::Refused(CancelRefusal { status }),
                        },
                        Err(error) => BulkCancelItem {
                            link,
                            outcome: BulkOutcome::Failed(error.to_string()),
                        },
                    }
                }
            })
            .buffered(BULK_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        Ok((items, page.has_more))
    }

    pub async fn stats(
        &self,
        caller: &Caller,
        filter: &LinkFilter,
    ) -> ServiceResult<Vec<StatsRow>> {
        Ok(self.store.stats(&caller.scope, filter, self.now()).await?)
    }

    pub async fn link_events(&self, caller: &Caller, id: &str) -> ServiceResult<Vec<LinkEvent>> {
        let link = self
            .load(&LinkKey::Id(caller.scope.clone(), id.to_owned()))
            .await?;
        Ok(self.store.link_events(&link.id).await?)
    }

    // ---- payments (the hosted checkout's side of the state machine) ----

    /// The hosted page's payment. Claims the link (active -> processing,
    /// with the pending attempt, in one transaction, so concurrent submits
    /// and cancels cannot also win), calls the processor with no
    /// transaction open and the attempt id as idempotency key, then settles
    /// the attempt. The HTTP layer runs this where a disconnect cannot cut
    /// it; a crash is finished by [`Service::reconcile_payments`].
    pub async fn pay_link(&self, slug: &str, card: &Card) -> ServiceResult<PaymentResult> {
        self.pay_link_with(
            slug,
            PaymentSource::Card(card),
            Some(card.brand()),
            Some(card.last4()),
        )
        .await
    }

    /// [`Service::pay_link`] with any source the link's processor takes.
    pub async fn pay_link_with(
        &self,
        slug: &str,
        source: PaymentSource<'_>,
        card_brand: Option<&str>,
        card_last4: Option<&str>,
    ) -> ServiceResult<PaymentResult> {
        let link = self.get_link_by_slug(slug).await?;
        if self.account(&link.account_id).await?.suspended {
            return Err(ServiceError::AccountSuspended);
        }
        let processor = self
            .processor_for(&link.account_id, link.livemode)
            .await?
            .ok_or(ServiceError::PaymentsUnavailable)?;
        let (processing, attempt) = self
            .start_attempt(slug, processor.name(), card_brand, card_last4)
            .await?;
        match tokio::time::timeout(PROCESSOR_TIMEOUT, processor.charge(&attempt, source)).await {
            Ok(Ok(ChargeOutcome::RequiresAction { client_secret })) => {
                Ok(PaymentResult::ActionRequired {
                    link: processing,
                    attempt_id: attempt.id,
                    client_secret,
                })
            }
            Ok(Ok(outcome)) => self.settle_attempt(&attempt, &outcome).await,
            Ok(Err(error)) => {
                tracing::warn!(%error, attempt_id = %attempt.id, "processor call failed; the reconciler will ask again");
                Ok(PaymentResult::Processing(processing))
            }
            Err(_) => {
                tracing::warn!(attempt_id = %attempt.id, "processor did not answer in time; the reconciler will ask again");
                Ok(PaymentResult::Processing(processing))
            }
        }
    }

    /// The processor an account takes payments with in a mode: the one
    /// configured for it, else the built-in test processor in test mode,
    /// else none (a live link of such an account cannot be paid).
    pub async fn processor_for(
        &self,
        account_id: &str,
        livemode: bool,
    ) -> ServiceResult<Option<Arc<dyn PaymentProcessor>>> {
        match self.configured_processor(account_id, livemode).await? {
            Some(processor) => Ok(Some(processor)),
            None if !livemode => Ok(Some(Arc::clone(&self.test_processor))),
            None => Ok(None),
        }
    }

    /// The processor named `name` for an account and mode: what reconciles
    /// an attempt or refund made through it.
    async fn processor_named(
        &self,
        account_id: &str,
        livemode: bool,
        name: &str,
    ) -> ServiceResult<Option<Arc<dyn PaymentProcessor>>> {
        if name == self.test_processor.name() {
            return Ok(Some(Arc::clone(&self.test_processor)));
        }
        Ok(self
            .configured_processor(account_id, livemode)
            .await?
            .filter(|processor| processor.name() == name))
    }

    async fn configured_processor(
        &self,
        account_id: &str,
        livemode: bool,
    ) -> ServiceResult<Option<Arc<dyn PaymentProcessor>>> {
        let Some(configured) = self.store.processor_account(account_id, livemode).await? else {
            return Ok(None);
        };
        if configured.processor == self.test_processor.name() {
            return Ok(Some(Arc::clone(&self.test_processor)));
        }
        Ok(self.connectors.open(&configured, account_id, livemode)?)
    }

    pub async fn account(&self, account_id: &str) -> ServiceResult<Account> {
        self.store
            .get_account(account_id)
            .await?
            .ok_or(ServiceError::NotFound)
    }

    pub async fn account_name(&self, account_id: &str) -> ServiceResult<String> {
        Ok(self.account(account_id).await?.name)
    }

    /// active -> processing with a new pending attempt at `processor`.
    async fn start_attempt(
        &self,
        slug: &str,
        processor: &str,
        card_brand: Option<&str>,
        card_last4: Option<&str>,
    ) -> ServiceResult<(Link, PaymentAttempt)> {
        let attempt_id = ids::new_attempt_id();
        let mut started = None;
        let link = self
            .change(&LinkKey::Slug(slug.to_owned()), None, |link, now| {
                let transition = link.begin_payment(
                    AttemptStart {
                        attempt_id: &attempt_id,
                        processor,
                        card_brand,
                        card_last4,
                    },
                    now,
                )?;
                started = transition.attempt.clone();
                Ok(Some(transition))
            })
            .await?;
        let attempt = started
            .ok_or_else(|| StoreError::Internal("a started payment has no attempt".into()))?;
        Ok((link, attempt))
    }

    /// Records the processor's `outcome` for the pending `attempt` (once:
    /// whoever settles first, the request or the reconciler, wins, and the
    /// other answers from what was recorded).
    pub async fn settle_attempt(
        &self,
        attempt: &PaymentAttempt,
        outcome: &ChargeOutcome,
    ) -> ServiceResult<PaymentResult> {
        let key = LinkKey::of(&attempt.account_id, attempt.livemode, &attempt.link_id);
        let refund_id = ids::new_refund_id();
        let settled = self
            .change(&key, None, |link, now| match outcome {
                // The processor took money for a link that no longer
                // takes it: record it and refund it, in one transaction.
                ChargeOutcome::Succeeded { payment_id }
                    if link.status != LinkStatus::Processing
                        || attempt.state == AttemptState::Failed =>
                {
                    Ok(Some(link.refund_late_payment(
                        attempt, payment_id, &refund_id, now,
                    )?))
                }
                _ => Ok(Some(link.settle_payment(attempt, outcome, now)?)),
            })
            .await;
        match (settled, outcome) {
            (Ok(link), ChargeOutcome::Succeeded { .. }) if link.status != LinkStatus::Paid => {
                tracing::warn!(attempt_id = %attempt.id, link_id = %link.id, status = link.status.as_str(), "a payment succeeded for a link that is no longer payable; refunding it");
                if let Some(refund) = self
                    .store
                    .link_refunds(&link.id)
                    .await?
                    .into_iter()
                    .find(|r| r.id == refund_id)
                {
                    self.run_refund(refund).await?;
                }
                Ok(PaymentResult::Declined {
                    message: format!(
                        "This payment link was {} before your payment completed; your payment is being refunded.",
                        link.status.as_str()
                    ),
                    link,
                })
            }
            (Ok(link), ChargeOutcome::Succeeded { .. }) => Ok(PaymentResult::Paid(link)),
            (Ok(_), ChargeOutcome::Declined { message }) => {
                // Back to active: reloading through `change` stores an
                // expiry that fell due while the payment was in progress.
                let link = self.change(&key, None, |_, _| Ok(None)).await?;
                Ok(PaymentResult::Declined {
                    link,
                    message: message.clone(),
                })
            }
            (Err(ServiceError::InvalidState { .. }), _) => {
                // Settled first by someone else (the reconciler, or the
                // request it raced): answer what was recorded.
                tracing::info!(attempt_id = %attempt.id, "payment attempt was settled by someone else");
                let link = self.change(&key, None, |_, _| Ok(None)).await?;
                let recorded = self.store.get_attempt(&attempt.id).await?;
                if let (Some(failed), ChargeOutcome::Succeeded { .. }) = (&recorded, outcome)
                    && failed.state == AttemptState::Failed
                {
                    // Closed as failed here, yet the processor took the
                    // money (a late 3-D Secure, say): give it back.
                    return Box::pin(self.settle_attempt(failed, outcome)).await;
                }
                Ok(match recorded {
                    Some(a) if a.state == AttemptState::Succeeded => PaymentResult::Paid(link),
                    Some(a) if a.state == AttemptState::Failed => PaymentResult::Declined {
                        link,
                        message: a.failure_message.unwrap_or_default(),
                    },
                    _ => PaymentResult::Processing(link),
                })
            }
            (Ok(link), ChargeOutcome::RequiresAction { .. }) => Ok(PaymentResult::Processing(link)),
            (Err(error), _) => Err(error),
        }
    }

    /// For a `processing` link whose payment waits for the customer to
    /// authenticate: the secret the page needs to show the challenge again.
    pub async fn pending_action(&self, link: &Link) -> ServiceResult<Option<String>> {
        let Some((attempt, processor)) = self.payment_held_by_processor(link).await? else {
            return Ok(None);
        };
        Ok(
            tokio::time::timeout(PROCESSOR_TIMEOUT, processor.pending_action(&attempt))
                .await
                .ok()
                .flatten(),
        )
    }

    /// The customer is back from authenticating (3-D Secure) on the page:
    /// asks the processor what became of the link's pending attempt and
    /// settles it if it has an outcome.
    pub async fn complete_pending_payment(&self, slug: &str) -> ServiceResult<PaymentResult> {
        let link = self.get_link_by_slug(slug).await?;
        let Some(attempt) = self
            .store
            .link_attempts(&link.id)
            .await?
            .into_iter()
            .find(|a| a.state == AttemptState::Pending)
        else {
            return Err(ServiceError::InvalidState {
                status: link.status,
                message: "No payment is in progress on this link.".into(),
            });
        };
        let Some(processor) = self
            .processor_named(&attempt.account_id, attempt.livemode, &attempt.processor)
            .await?
        else {
            return Ok(PaymentResult::Processing(link));
        };
        match tokio::time::timeout(PROCESSOR_TIMEOUT, processor.outcome(&attempt, self.now())).await
        {
            Ok(Ok(outcome)) => self.settle_attempt(&attempt, &outcome).await,
            Ok(Err(error)) => {
                tracing::info!(%error, attempt_id = %attempt.id, "payment has no outcome yet");
                Ok(PaymentResult::Processing(link))
            }
            Err(_) => Ok(PaymentResult::Processing(link)),
        }
    }

    /// A processor's webhook says what became of attempt `attempt_id`;
    /// settles it unless it is settled already (whichever of the
    /// synchronous answer and the webhook comes first wins).
    pub async fn apply_processor_outcome(
        &self,
        scope: &Scope,
        attempt_id: &str,
        outcome: &ChargeOutcome,
    ) -> ServiceResult<()> {
        let Some(attempt) = self
            .store
            .get_attempt(attempt_id)
            .await?
            .filter(|a| a.account_id == scope.account_id && a.livemode == scope.livemode)
        else {
            tracing::info!(
                attempt_id,
                "a processor event names no attempt of its account; ignored"
            );
            return Ok(());
        };
        let late_success = attempt.state == AttemptState::Failed
            && matches!(outcome, ChargeOutcome::Succeeded { .. });
        if attempt.state == AttemptState::Pending || late_success {
            self.settle_attempt(&attempt, outcome).await?;
        }
        Ok(())
    }

    /// A processor's webhook says payment `payment_id` was refunded: runs
    /// the pending refunds of the link it paid (each asks the processor).
    pub async fn refresh_refunds(&self, scope: &Scope, payment_id: &str) -> ServiceResult<()> {
        let filter = LinkFilter {
            payment_id: Some(payment_id.to_owned()),
            ..LinkFilter::default()
        };
        let page = Page {
            limit: 1,
            starting_after: None,
        };
        for link in self
            .store
            .list_links(scope, &filter, &page, self.now())
            .await?
        {
            for refund in self.store.link_refunds(&link.id).await? {
                if refund.state == RefundState::Pending {
                    self.run_refund(refund).await?;
                }
            }
        }
        Ok(())
    }

    /// Whether a processor event was handled already.
    pub async fn processor_event_seen(
        &self,
        processor: &str,
        event_id: &str,
    ) -> ServiceResult<bool> {
        Ok(self.store.processor_event_seen(processor, event_id).await?)
    }

    /// Notes a processor event as handled; false if it was handled before.
    pub async fn record_processor_event(
        &self,
        processor: &str,
        event_id: &str,
    ) -> ServiceResult<bool> {
        Ok(self
            .store
            .record_processor_event(processor, event_id, self.now())
            .await?)
    }

    /// Settles every attempt still pending `older_than` after it started,
    /// by asking its processor what became of it (an attempt the processor
    /// never saw is closed as failed). Returns how many it settled.
    pub async fn reconcile_payments(&self, older_than: SignedDuration) -> ServiceResult<usize> {
        let mut settled = 0;
        loop {
            let stale = self
                .store
                .pending_attempts(self.now() - older_than, RECONCILE_BATCH)
                .await?;
            let batch = stale.len();
            let mut progressed = 0;
            for attempt in stale {
                let Some(processor) = self
                    .processor_named(&attempt.account_id, attempt.livemode, &attempt.processor)
                    .await?
                else {
                    tracing::warn!(attempt_id = %attempt.id, processor = %attempt.processor, "no processor to reconcile this attempt with");
                    continue;
                };
                // A link whose time ran out while its payment waited for the
                // customer (3-D Secure) stops waiting: the payment is voided
                // at the processor (or found succeeded) and the expiry follows.
                let link_expired = self
                    .load(&LinkKey::of(
                        &attempt.account_id,
                        attempt.livemode,
                        &attempt.link_id,
                    ))
                    .await
                    .is_ok_and(|link| link.expires_at <= self.now());
                let asked = if link_expired && attempt.processor_reference.is_some() {
                    processor.void(&attempt).await
                } else {
                    processor.outcome(&attempt, self.now()).await
                };
                let outcome = match asked {
                    Ok(outcome) => outcome,
                    Err(crate::payments::ProcessorError::Pending(why)) => {
                        tracing::debug!(attempt_id = %attempt.id, %why, "payment has no outcome yet");
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(%error, attempt_id = %attempt.id, "could not ask the processor; retrying next round");
                        continue;
                    }
                };
                self.settle_attempt(&attempt, &outcome).await?;
                tracing::info!(attempt_id = %attempt.id, "reconciled a stale payment attempt");
                progressed += 1;
            }
            settled += progressed;
            if batch < RECONCILE_BATCH || progressed == 0 {
                return Ok(settled);
            }
        }
    }

    /// What a restart must finish before serving: on a store this process
    /// owns alone, every idempotency claim left without an answer was cut
    /// by the previous run's death.
    pub async fn recover_after_start(&self) -> anyhow::Result<()> {
        let sealed = self.seal_endpoint_secrets().await?;
        if sealed > 0 {
            tracing::info!(
                sealed,
                "webhook endpoint secrets stored in clear are now sealed under PAYLINK_SECRETS_KEY"
            );
        }
        if self.settings.processors.secrets_key.is_none() {
            tracing::warn!(
                "PAYLINK_SECRETS_KEY is not set: webhook endpoint secrets are stored in clear and no processor can be configured ({})",
                crate::secrets::HOW_TO_MAKE_A_KEY
            );
        }
        if self.store.single_process() {
            let abandoned = self.store.abandon_idempotency_claims().await?;
            if abandoned > 0 {
                tracing::warn!(
                    abandoned,
                    "idempotency claims cut by the previous run are free for retries"
                );
            }
        }
        Ok(())
    }

    /// The key of the checkout's CSRF tokens, shared by every node (made
    /// on first use).
    pub async fn checkout_csrf_key(&self) -> ServiceResult<String> {
        Ok(self
            .store
            .server_secret("checkout_csrf", &ids::random_base62(43))
            .await?)
    }

    /// The link's payment attempts, oldest first.
    pub async fn link_attempts(&self, link_id: &str) -> ServiceResult<Vec<PaymentAttempt>> {
        Ok(self.store.link_attempts(link_id).await?)
    }

    /// Starts a test-processor attempt without a card (tests and tools
    /// drive the state machine this way); returns the processing link.
    pub async fn begin_payment(&self, slug: &str) -> ServiceResult<Link> {
        let processor = self.test_processor.name();
        Ok(self.start_attempt(slug, processor, None, None).await?.0)
    }

    /// Settles the link's pending attempt as paid, through the test
    /// processor's ledger.
    pub async fn complete_payment(&self, slug: &str) -> ServiceResult<Link> {
        let outcome = ChargeOutcome::Succeeded {
            payment_id: ids::new_payment_id(),
        };
        self.settle_pending(slug, outcome).await
    }

    /// Settles the link's pending attempt as declined with `message`.
    pub async fn fail_payment(&self, slug: &str, message: &str) -> ServiceResult<Link> {
        let outcome = ChargeOutcome::Declined {
            message: message.to_owned(),
        };
        self.settle_pending(slug, outcome).await
    }

    async fn settle_pending(&self, slug: &str, outcome: ChargeOutcome) -> ServiceResult<Link> {
        // Through `change`, so a due expiry is stored first, as any write does.
        let link = self
            .change(&LinkKey::Slug(slug.to_owned()), None, |_, _| Ok(None))
            .await?;
        let attempt = self
            .store
            .link_attempts(&link.id)
            .await?
            .into_iter()
            .find(|a| a.state == AttemptState::Pending)
            .ok_or_else(|| ServiceError::InvalidState {
                status: link.status,
                message: "No payment is in progress on this link.".into(),
            })?;
        let outcome = serde_json::to_value(&outcome)
            .map_err(|error| StoreError::Internal(error.to_string()))?;
        let recorded = self
            .store
            .record_test_outcome(&attempt.id, outcome, self.now())
            .await?;
        let outcome: ChargeOutcome = serde_json::from_value(recorded)
            .map_err(|error| StoreError::Internal(error.to_string()))?;
        Ok(match self.settle_attempt(&attempt, &outcome).await? {
            PaymentResult::Paid(link)
            | PaymentResult::Declined { link, .. }
            | PaymentResult::Processing(link)
            | PaymentResult::ActionRequired { link, .. } => link,
        })
    }

    // ---- refunds ----

    /// Refunds `amount` (default: what is left) of a paid link. The refund
    /// is reserved on the link first (so concurrent refunds never add up to
    /// more than the amount), then sent to the processor that took the
    /// payment with the refund id as idempotency key, then settled. A
    /// processor that does not answer leaves it pending for the reconciler.
    pub async fn refund_link(
        &self,
        caller: &Caller,
        id: &str,
        amount: Option<i64>,
        reason: Option<String>,
    ) -> ServiceResult<RefundResult> {
        let idempotency = current_idempotency();
        if let Some(event_id) = idempotency.as_ref().and_then(|c| c.recall.as_deref()) {
            // An earlier run committed the reservation and died: finish
            // that refund, do not make another.
            let event = self.store.event_by_id(event_id).await?.ok_or_else(|| {
                StoreError::Internal(format!("recalled event {event_id} is missing"))
            })?;
            if let Some(refund) = event.refund {
                return self.finish_refund(refund).await;
            }
        }
        let key = LinkKey::Id(caller.scope.clone(), id.to_owned());
        let link = self.load(&key).await?;
        let processor = self
            .store
            .link_attempts(&link.id)
            .await?
            .into_iter()
            .find(|a| a.state == AttemptState::Succeeded && a.payment_id == link.payment_id)
            .map_or_else(|| self.test_processor.name().to_owned(), |a| a.processor);
        let refund_id = ids::new_refund_id();
        let actor = caller.actor();
        let mut reserved = None;
        self.change(&key, idempotency, |link, now| {
            let transition = link
                .begin_refund(
                    RefundStart {
                        refund_id: &refund_id,
                        amount,
                        reason: reason.clone(),
                        processor: &processor,
                        actor: actor.clone(),
                    },
                    now,
                )
                .map_err(|error| match error {
                    UpdateError::Field(field) => ServiceError::Invalid(field),
                    UpdateError::State(conflict) => conflict.into(),
                })?;
            reserved = transition.refund.clone();
            Ok(Some(transition))
        })
        .await?;
        let refund =
            reserved.ok_or_else(|| StoreError::Internal("a reserved refund is missing".into()))?;
        self.finish_refund(refund).await
    }

    /// Runs a reserved refund to its outcome, or leaves it pending if the
    /// processor cannot answer now; answers the link and refund after.
    async fn finish_refund(&self, refund: Refund) -> ServiceResult<RefundResult> {
        let refund = if refund.state == RefundState::Pending {
            self.run_refund(refund).await?
        } else {
            refund
        };
        let link = self
            .load(&LinkKey::of(
                &refund.account_id,
                refund.livemode,
                &refund.link_id,
            ))
            .await?;
        let refund = self
            .store
            .link_refunds(&link.id)
            .await?
            .into_iter()
            .find(|r| r.id == refund.id)
            .unwrap_or(refund);
        Ok(RefundResult { link, refund })
    }

    /// Asks the refund's processor to make (or tell the outcome of) it and
    /// settles it; answers the refund as it now stands.
    async fn run_refund(&self, refund: Refund) -> ServiceResult<Refund> {
        let Some(processor) = self
            .processor_named(&refund.account_id, refund.livemode, &refund.processor)
            .await?
        else {
            tracing::warn!(refund_id = %refund.id, processor = %refund.processor, "no processor to run this refund with; it stays pending");
            return Ok(refund);
        };
        let outcome = match tokio::time::timeout(PROCESSOR_TIMEOUT, processor.refund(&refund)).await
        {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(error)) => {
                tracing::warn!(%error, refund_id = %refund.id, "refund call failed; the reconciler will ask again");
                return Ok(refund);
            }
            Err(_) => {
                tracing::warn!(refund_id = %refund.id, "processor did not answer a refund in time; the reconciler will ask again");
                return Ok(refund);
            }
        };
        if refund.kind == RefundKind::LatePayment && matches!(outcome, RefundOutcome::Failed { .. })
        {
            // Money taken for a link that did not sell is never kept: the
            // reconciler keeps asking until the processor gives it back.
            tracing::error!(refund_id = %refund.id, ?outcome, "the automatic refund of a late payment failed; retrying later");
            return Ok(refund);
        }
        self.settle_refund(&refund, &outcome).await
    }

    /// Records the processor's `outcome` for a pending refund (once).
    pub async fn settle_refund(
        &self,
        refund: &Refund,
        outcome: &RefundOutcome,
    ) -> ServiceResult<Refund> {
        let key = LinkKey::of(&refund.account_id, refund.livemode, &refund.link_id);
        let now_settled = refund.settled(outcome, self.now());
        match self
            .change(&key, None, |link, now| {
                Ok(Some(link.settle_refund(refund, outcome, now)?))
            })
            .await
        {
            Ok(_) => Ok(now_settled),
            Err(ServiceError::InvalidState { .. }) => Ok(self
                .store
                .link_refunds(&refund.link_id)
                .await?
                .into_iter()
                .find(|r| r.id == refund.id)
                .unwrap_or(now_settled)),
            Err(error) => Err(error),
        }
    }

    pub async fn link_refunds(&self, caller: &Caller, id: &str) -> ServiceResult<Vec<Refund>> {
        let link = self
            .load(&LinkKey::Id(caller.scope.clone(), id.to_owned()))
            .await?;
        Ok(self.store.link_refunds(&link.id).await?)
    }

    /// Runs every refund still pending `older_than` after it was made.
    pub async fn reconcile_refunds(&self, older_than: SignedDuration) -> ServiceResult<usize> {
        let stale = self
            .store
            .pending_refunds(self.now() - older_than, RECONCILE_BATCH)
            .await?;
        let mut settled = 0;
        for refund in stale {
            if self.run_refund(refund).await?.state != RefundState::Pending {
                settled += 1;
            }
        }
        Ok(settled)
    }

    // ---- idempotency ----

    pub async fn claim_idempotency_key(
        &self,
        caller: &Caller,
        key: &str,
        fingerprint: &str,
    ) -> ServiceResult<IdempotencyClaim> {
        let now = self.now();
        let window = IdempotencyWindow {
            now,
            expired_before: now - IDEMPOTENCY_KEY_LIFETIME,
            abandoned_before: now - IDEMPOTENCY_LEASE,
        };
        Ok(self
            .store
            .claim_idempotency_key(&caller.scope, key, fingerprint, window)
            .await?)
    }

    pub async fn complete_idempotency_key(
        &self,
        caller: &Caller,
        key: &str,
        response: StoredResponse,
    ) -> ServiceResult<()> {
        Ok(self
            .store
            .complete_idempotency_key(&caller.scope, key, response)
            .await?)
    }

    pub async fn release_idempotency_key(&self, caller: &Caller, key: &str) -> ServiceResult<()> {
        Ok(self
            .store
            .release_idempotency_key(&caller.scope, key)
            .await?)
    }

    /// Forgets idempotency keys older than their lifetime.
    pub async fn purge_expired_idempotency_keys(&self) -> ServiceResult<u64> {
        Ok(self
            .store
            .purge_idempotency_keys(self.now() - IDEMPOTENCY_KEY_LIFETIME)
            .await?)
    }

    // ---- background ----

    /// Stores the expiry of up to `limit` due links; returns how many this
    /// call expired (links another writer got to first are not counted).
    pub async fn expire_due_links(&self, limit: usize) -> ServiceResult<usize> {
        let expired = self.store.expire_due(self.now(), limit).await?;
        if expired > 0 {
            self.deliveries_waiting.notify_one();
        }
        Ok(expired)
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
        'attempt: for _ in 0..MAX_ATTEMPTS {
            let now = self.now();
            let mut link = self.load(key).await?;
            if let Some(expiry) = link.expire_if_due(now) {
                let expired = expiry.link.clone();
                match self.store.apply_transition(expiry, None).await? {
                    Applied::Yes => {
                        self.deliveries_waiting.notify_one();
                        link = expired;
                    }
                    Applied::StaleVersion => continue 'attempt,
                }
            }
            let Some(transition) = decide(&link, now)? else {
                return Ok(link);
            };
            let changed = transition.link.clone();
            match self
                .store
                .apply_transition(transition, mark.clone())
                .await?
            {
                Applied::Yes => {
                    self.deliveries_waiting.notify_one();
                    return Ok(changed);
                }
                Applied::StaleVersion => continue 'attempt,
            }
        }
        Err(ServiceError::Contention)
    }
}
