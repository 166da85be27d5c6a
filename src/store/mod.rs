//! Persistence: one `Store` trait, one implementation per backend.
//!
//! Methods are whole operations (create a link with its event, apply a
//! transition with its event), never open transactions handed out, so a
//! backend is free to batch many operations into one durable commit.

pub mod postgres;
pub mod sql;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;

pub use crate::domain::account::{Account, ApiKeyRecord, ProcessorAccount, Scope};
pub use crate::domain::idempotency::{
    IdempotencyClaim, IdempotencyMark, IdempotencyWindow, StoredResponse,
};
pub use crate::domain::query::{EventFilter, LinkFilter, Page, StatsRow};
use crate::domain::webhook::delivery::{AttemptRecord, ClaimedDelivery, Delivery};
use crate::domain::webhook::endpoint::WebhookEndpoint;
use crate::domain::{Link, LinkEvent, PaymentAttempt, Refund, Transition};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is shutting down; retrying later may work.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Internal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// How many webhook deliveries a committed change's event owes (to the
/// account's enabled endpoints that want its type). None: the change
/// gives this node's dispatcher nothing new to do, so it is not woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveriesOwed(pub u64);

impl DeliveriesOwed {
    pub fn any(self) -> bool {
        self.0 > 0
    }
}

/// What became of a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Written, with its event and the deliveries the event owes.
    Yes(DeliveriesOwed),
    /// The link moved on since it was read (another writer won); nothing written.
    StaleVersion,
}

/// Accounts, their API keys, processors and server secrets.
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    async fn count_accounts(&self) -> StoreResult<i64>;
    /// The account named `name`, created if it does not exist.
    async fn ensure_account(&self, account: Account) -> StoreResult<Account>;
    /// Returns false if no such account.
    async fn set_account_suspended(&self, name: &str, suspended: bool) -> StoreResult<bool>;
    /// Returns false if no such account.
    async fn set_account_branding(
        &self,
        name: &str,
        branding: &crate::domain::Branding,
    ) -> StoreResult<bool>;
    async fn insert_api_key(&self, key: ApiKeyRecord) -> StoreResult<()>;
    async fn get_account(&self, id: &str) -> StoreResult<Option<Account>>;
    async fn find_api_key(&self, key_hash: &str) -> StoreResult<Option<(ApiKeyRecord, Account)>>;
    /// An account's keys, oldest first (hashes included, never secrets).
    async fn list_api_keys(&self, account_id: &str) -> StoreResult<Vec<ApiKeyRecord>>;
    /// The key with its account.
    async fn get_api_key(&self, id: &str) -> StoreResult<Option<(ApiKeyRecord, Account)>>;
    /// Makes the key expire at `at`, unless it expires sooner already;
    /// false if there is no such key.
    async fn expire_api_key(&self, id: &str, at: Timestamp) -> StoreResult<bool>;
    async fn touch_api_key(&self, id: &str, at: Timestamp) -> StoreResult<()>;

    /// The processor an account uses in a mode, with its sealed secrets.
    async fn processor_account(
        &self,
        account_id: &str,
        livemode: bool,
    ) -> StoreResult<Option<ProcessorAccount>>;
    /// Sets (or with `None` for `processor`, removes) an account's processor for a mode.
    async fn set_processor_account(
        &self,
        account_id: &str,
        livemode: bool,
        processor: Option<ProcessorAccount>,
    ) -> StoreResult<()>;
    async fn account_by_name(&self, name: &str) -> StoreResult<Option<Account>>;
    /// The secret named `name`, set to `candidate` if it has none yet.
    async fn server_secret(&self, name: &str, candidate: &str) -> StoreResult<String>;
}

/// Links: creation, reads, lists, transitions with their events, stats, expiry.
#[async_trait]
pub trait LinkStore: Send + Sync + 'static {
    /// Writes the link and its creation event (and the deliveries the
    /// event owes); with `mark`, the idempotency key is marked with the
    /// event in the same transaction.
    async fn insert_link(
        &self,
        link: Link,
        event: LinkEvent,
        mark: Option<IdempotencyMark>,
    ) -> StoreResult<DeliveriesOwed>;
    async fn get_link(&self, scope: &Scope, id: &str) -> StoreResult<Option<Link>>;
    async fn get_link_by_slug(&self, slug: &str) -> StoreResult<Option<Link>>;
    /// Up to `page.limit` links matching `filter`, newest first.
    async fn list_links(
        &self,
        scope: &Scope,
        filter: &LinkFilter,
        page: &Page,
        now: Timestamp,
    ) -> StoreResult<Vec<Link>>;
    /// Writes the new link state and its event in one transaction, only if
    /// the stored version is still `transition.expected_version` (and a
    /// settled attempt it carries is still pending); with `mark`, the
    /// idempotency key is marked with the event in that transaction.
    async fn apply_transition(
        &self,
        transition: Transition,
        mark: Option<IdempotencyMark>,
    ) -> StoreResult<Applied>;
    /// An event by id, in any scope (the caller has already scoped it).
    async fn event_by_id(&self, id: &str) -> StoreResult<Option<LinkEvent>>;
    /// The link's events, oldest first.
    async fn link_events(&self, link_id: &str) -> StoreResult<Vec<LinkEvent>>;
    async fn stats(
        &self,
        scope: &Scope,
        filter: &LinkFilter,
        now: Timestamp,
    ) -> StoreResult<Vec<StatsRow>>;
    /// Stores the expiry (each with its event, built by the domain's
    /// `Link::expire_if_due`) of up to `limit` active links whose
    /// `expires_at` is at or before `now`. Links are claimed so that
    /// concurrent sweepers, on one node or many, never work on the same
    /// link. Returns how many links this call expired.
    async fn expire_due(&self, now: Timestamp, limit: usize) -> StoreResult<usize>;
}

/// Payment attempts, refunds and processors' events.
#[async_trait]
pub trait PaymentStore: Send + Sync + 'static {
    /// The link's attempts, oldest first.
    async fn link_attempts(&self, link_id: &str) -> StoreResult<Vec<PaymentAttempt>>;
    /// Up to `limit` pending attempts created before `before`, oldest first.
    async fn pending_attempts(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> StoreResult<Vec<PaymentAttempt>>;
    /// The test processor's ledger: records `outcome` for `key` (an
    /// attempt or refund id) unless one is recorded already, and returns
    /// the recorded one.
    async fn record_test_outcome(
        &self,
        key: &str,
        outcome: serde_json::Value,
        now: Timestamp,
    ) -> StoreResult<serde_json::Value>;
    /// Writes the processor's own id of a pending attempt's payment (made,
    /// not yet confirmed); false if the attempt is no longer pending.
    async fn set_attempt_reference(&self, attempt_id: &str, reference: &str) -> StoreResult<bool>;
    /// An attempt by id.
    async fn get_attempt(&self, attempt_id: &str) -> StoreResult<Option<PaymentAttempt>>;

    /// The link's refunds, oldest first.
    async fn link_refunds(&self, link_id: &str) -> StoreResult<Vec<Refund>>;
    /// Up to `limit` pending refunds created before `before`, oldest first.
    async fn pending_refunds(&self, before: Timestamp, limit: usize) -> StoreResult<Vec<Refund>>;
    /// Notes a processor's webhook event as handled; false if it was already.
    async fn record_processor_event(
        &self,
        processor: &str,
        event_id: &str,
        now: Timestamp,
    ) -> StoreResult<bool>;
    async fn processor_event_seen(&self, processor: &str, event_id: &str) -> StoreResult<bool>;
}

/// Idempotency keys (see `crate::domain::idempotency`).
#[async_trait]
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Claims `key` for a request with `fingerprint`, atomically.
    async fn claim_idempotency_key(
        &self,
        scope: &Scope,
        key: &str,
        fingerprint: &str,
        window: IdempotencyWindow,
    ) -> StoreResult<IdempotencyClaim>;
    /// Stores the response of the request that claimed `key`.
    async fn complete_idempotency_key(
        &self,
        scope: &Scope,
        key: &str,
        response: StoredResponse,
    ) -> StoreResult<()>;
    /// Gives a claimed key up (the request stored nothing worth replaying).
    /// A key marked with a committed change is never released.
    async fn release_idempotency_key(&self, scope: &Scope, key: &str) -> StoreResult<()>;
    /// Treats every claim still without a response as abandoned; only for
    /// a store one process owns alone, at its start.
    async fn abandon_idempotency_claims(&self) -> StoreResult<u64>;
    /// Deletes keys created before `before`; returns how many.
    async fn purge_idempotency_keys(&self, before: Timestamp) -> StoreResult<u64>;
}

/// The event log, webhook endpoints and their deliveries.
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    //
    // Writing an event (in `insert_link`, `apply_transition`, `expire_due`)
    // also writes, in the same transaction, a pending delivery for every
    // enabled endpoint of the event's account and mode that wants its type.

    async fn insert_webhook_endpoint(&self, endpoint: WebhookEndpoint) -> StoreResult<()>;
    /// Deletes up to `limit` finished (succeeded or failed) deliveries last
    /// changed before `finished_before`, with their attempts; the events
    /// stay. Returns how many deliveries went.
    async fn purge_finished_deliveries(
        &self,
        finished_before: Timestamp,
        limit: usize,
    ) -> StoreResult<usize>;
    /// A live (not deleted) endpoint of the scope.
    async fn get_webhook_endpoint(
        &self,
        scope: &Scope,
        id: &str,
    ) -> StoreResult<Option<WebhookEndpoint>>;
    /// The scope's live endpoints, oldest first.
    async fn list_webhook_endpoints(&self, scope: &Scope) -> StoreResult<Vec<WebhookEndpoint>>;
    /// Every live endpoint of every account (start-up's sealing of secrets).
    async fn all_webhook_endpoints(&self) -> StoreResult<Vec<WebhookEndpoint>>;
    /// Writes an endpoint's changeable fields; false if it is gone.
    async fn update_webhook_endpoint(&self, endpoint: WebhookEndpoint) -> StoreResult<bool>;
    /// Deletes the endpoint; its pending deliveries fail. False if no such endpoint.
    async fn delete_webhook_endpoint(
        &self,
        scope: &Scope,
        id: &str,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Up to `limit` events of the scope, newest first, older than the
    /// event `starting_after` (an id of this scope) if given.
    async fn list_events(
        &self,
        scope: &Scope,
        filter: &EventFilter,
        limit: usize,
        starting_after: Option<&str>,
    ) -> StoreResult<Vec<LinkEvent>>;
    async fn get_event(&self, scope: &Scope, id: &str) -> StoreResult<Option<LinkEvent>>;
    /// The event's deliveries, each with its attempts, oldest endpoint first.
    async fn event_deliveries(&self, event_id: &str) -> StoreResult<Vec<Delivery>>;
    /// Makes the event's delivery to each endpoint pending again, due at
    /// `now`, with a fresh schedule (creating deliveries that did not exist).
    async fn schedule_redelivery(
        &self,
        event_id: &str,
        endpoint_ids: &[String],
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Leases up to `limit` pending deliveries due at `now` to enabled
    /// endpoints until `now + LEASE`. A leased delivery is claimed by no one
    /// else (on any node) until it is recorded or its lease runs out.
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> StoreResult<Vec<ClaimedDelivery>>;
    /// Records attempts and moves each delivery on, all in one
    /// transaction (the dispatcher's group commit: one sync for every
    /// attempt that finished together); `EndpointGone` also disables the
    /// endpoint. Releases the leases. If it fails, none is recorded and
    /// each lease runs out: the deliveries are attempted again.
    async fn record_attempts(&self, records: Vec<AttemptRecord>) -> StoreResult<()>;
    /// When the earliest pending delivery to an enabled endpoint that no
    /// node holds at `now` falls due, if any. Deliveries leased past `now`
    /// are left out: their node records them, or their lease runs out and
    /// a later look counts them. Found from the front of the due order, so
    /// it costs the deliveries in flight, not the backlog behind them.
    async fn next_delivery_due(&self, now: Timestamp) -> StoreResult<Option<Timestamp>>;
}

/// Everything paylink keeps, one trait per entity, and what the
/// backend as a whole answers.
#[async_trait]
pub trait Store:
    AccountStore + LinkStore + PaymentStore + IdempotencyStore + WebhookStore + Send + Sync + 'static
{
    /// Whether this store is one process's alone (SQLite), so that what a
    /// previous run left unfinished is known abandoned at start-up.
    fn single_process(&self) -> bool;

    /// Is the database answering?
    async fn ping(&self) -> StoreResult<()>;
}

/// How to open a store; only PostgreSQL pools connections.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub max_connections: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
        }
    }
}

/// Copies the SQLite database `database_url` names to `destination`, a
/// new file, consistently while servers keep writing to it (SQLite's
/// online backup). PostgreSQL has `pg_dump` for this.
pub fn backup(database_url: &str, destination: &std::path::Path) -> anyhow::Result<()> {
    if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        anyhow::bail!(
            "`paylink backup` copies SQLite databases; back PostgreSQL up with `pg_dump` (see the README)"
        );
    }
    let path = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .ok_or_else(|| {
            anyhow::anyhow!("unsupported database URL `{}`", redact_url(database_url))
        })?;
    sqlite::backup(path, destination)
}

/// Opens (creating and migrating as needed) the store a URL names:
/// `sqlite://PATH` or `postgres://...` / `postgresql://...`.
pub async fn open(database_url: &str, options: &StoreOptions) -> anyhow::Result<Arc<dyn Store>> {
    if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        return Ok(Arc::new(
            postgres::PostgresStore::open(database_url, options.max_connections).await?,
        ));
    }
    if let Some(path) = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
    {
        return Ok(Arc::new(sqlite::SqliteStore::open(path).await?));
    }
    anyhow::bail!(
        "unsupported database URL `{}`: use sqlite://PATH or postgres://...",
        redact_url(database_url)
    )
}

/// A database URL fit for logs: any password replaced by `***`.
pub fn redact_url(database_url: &str) -> String {
    match url::Url::parse(database_url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => database_url.to_owned(),
    }
}
