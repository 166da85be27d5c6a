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
use crate::domain::link::{Creation, LinkUpdate, StateConflict, UpdateError, validate_reason};
use crate::domain::{
    Actor, CancelDecision, CancelPolicy, FieldError, Link, LinkEvent, LinkStatus, NewLink,
    Transition, ids,
};
use crate::payments::{ChargeOutcome, PaymentProcessor, TestProcessor};
use crate::store::{
    Account, ApiKeyRecord, Applied, IdempotencyClaim, IdempotencyWindow, LinkFilter, Page, Scope,
    StatsRow, Store, StoreError, StoredResponse,
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
    #[error(transparent)]
    Store(#[from] StoreError),
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
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            default_link_lifetime: SignedDuration::from_hours(14 * 24),
            webhook_allow_private: false,
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

pub struct Service {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: ServiceSettings,
    test_processor: Arc<dyn PaymentProcessor>,
    /// No live connector exists yet: live links refuse payment.
    live_processor: Option<Arc<dyn PaymentProcessor>>,
    /// Wakes this node's webhook dispatcher after a write that stored
    /// events (other nodes' writes are found by its polling).
    deliveries_waiting: tokio::sync::Notify,
}

/// What became of a customer's payment attempt.
#[derive(Debug, Clone)]
pub enum PaymentResult {
    Paid(Link),
    Declined { link: Link, message: String },
}

/// The stored form of an API key secret. Keys carry ~190 random bits, so a
/// plain SHA-256 cannot be reversed or brute-forced (no salt or KDF needed).
pub fn hash_api_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl Service {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, settings: ServiceSettings) -> Self {
        Self {
            store,
            clock,
            settings,
            test_processor: Arc::new(TestProcessor),
            live_processor: None,
            deliveries_waiting: tokio::sync::Notify::new(),
        }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
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

    // ---- links ----

    pub async fn create_link(&self, caller: &Caller, new_link: NewLink) -> ServiceResult<Link> {
        let (link, event) = new_link.create(Creation {
            account_id: &caller.scope.account_id,
            livemode: caller.scope.livemode,
            actor: caller.actor(),
            now: self.now(),
            default_lifetime: self.settings.default_link_lifetime,
        })?;
        self.store.insert_link(link.clone(), event).await?;
        self.deliveries_waiting.notify_one();
        Ok(link)
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
        if let Some(reason) = &reason {
            validate_reason(reason)?;
        }
        let actor = caller.actor();
        self.change(
            &LinkKey::Id(caller.scope.clone(), id.to_owned()),
            |link, now| Ok(link.cancel(policy, reason.clone(), actor.clone(), now)?),
        )
        .await
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
                    match self.cancel_link(caller, &link.id, reason, &policy).await {
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

    /// The hosted page's payment: claims the link (active -> processing,
    /// so concurrent submits and cancels cannot also win), charges with no
    /// transaction open, then records paid or failed.
    pub async fn pay_link(&self, slug: &str, card: &Card) -> ServiceResult<PaymentResult> {
        let link = self.get_link_by_slug(slug).await?;
        let processor = if link.livemode {
            self.live_processor
                .clone()
                .ok_or(ServiceError::PaymentsUnavailable)?
        } else {
            Arc::clone(&self.test_processor)
        };
        let processing = self.begin_payment(slug).await?;
        match processor
            .charge(processing.amount, processing.currency, card)
            .await
        {
            ChargeOutcome::Succeeded => Ok(PaymentResult::Paid(self.complete_payment(slug).await?)),
            ChargeOutcome::Declined { message } => {
                // Only brand and last four digits are ever recorded.
                let detail = format!("{message} ({} ending {})", card.brand(), card.last4());
                let link = self.fail_payment(slug, &detail).await?;
                Ok(PaymentResult::Declined { link, message })
            }
        }
    }

    pub async fn account_name(&self, account_id: &str) -> ServiceResult<String> {
        Ok(self
            .store
            .get_account(account_id)
            .await?
            .map(|account| account.name)
            .unwrap_or_default())
    }

    pub async fn begin_payment(&self, slug: &str) -> ServiceResult<Link> {
        self.change(&LinkKey::Slug(slug.to_owned()), |link, now| {
            Ok(Some(link.begin_payment(now)?))
        })
        .await
    }

    pub async fn complete_payment(&self, slug: &str) -> ServiceResult<Link> {
        let payment_id = ids::new_payment_id();
        self.change(&LinkKey::Slug(slug.to_owned()), |link, now| {
            Ok(Some(link.complete_payment(payment_id.clone(), now)?))
        })
        .await
    }

    pub async fn fail_payment(&self, slug: &str, message: &str) -> ServiceResult<Link> {
        let key = LinkKey::Slug(slug.to_owned());
        self.change(&key, |link, now| {
            Ok(Some(link.fail_payment(message.to_owned(), now)?))
        })
        .await?;
        // Reloading through `change` stores an expiry that fell due meanwhile.
        self.change(&key, |_, _| Ok(None)).await
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
    async fn change(
        &self,
        key: &LinkKey,
        mut decide: impl FnMut(&Link, Timestamp) -> ServiceResult<Option<Transition>>,
    ) -> ServiceResult<Link> {
        'attempt: for _ in 0..MAX_ATTEMPTS {
            let now = self.now();
            let mut link = self.load(key).await?;
            if let Some(expiry) = link.expire_if_due(now) {
                let expired = expiry.link.clone();
                match self.store.apply_transition(expiry).await? {
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
            match self.store.apply_transition(transition).await? {
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
