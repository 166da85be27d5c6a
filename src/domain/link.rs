//! The payment link, its status machine and every transition of it.
//!
//! Each transition is a pure function from the current link to a
//! [`Transition`]: the new state plus the event that records it, tagged with
//! the version it was computed from. A store applies it only if the stored
//! version still matches, which is what makes racing writers safe.

use crate::clock::truncate_to_micros;
use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::cancel::{CancelDecision, CancelPolicy, CancelRefusal};
use super::event::{Actor, EventType, LinkEvent};
use super::ids;
use super::money::{Currency, MAX_AMOUNT};
use super::payment::{AttemptState, ChargeOutcome, PaymentAttempt};
use super::reason::Reason;
use super::refund::{Refund, RefundKind, RefundOutcome, RefundState};
use super::validation::{
    FieldError, check_email, check_max_chars, check_not_blank, normalize_http_url,
};

pub const MAX_DESCRIPTION_CHARS: usize = 1000;
pub const MAX_ORDER_REFERENCE_CHARS: usize = 255;
pub const MAX_NAME_CHARS: usize = 255;
pub const MAX_METADATA_KEYS: usize = 50;
pub const MAX_METADATA_KEY_CHARS: usize = 40;
pub const MAX_METADATA_VALUE_CHARS: usize = 500;
pub const MAX_LINE_ITEMS: usize = 100;
pub const MAX_QUANTITY: i64 = 1_000_000;
/// `expires_at` may be at most this far ahead of now.
pub const MAX_LIFETIME: SignedDuration = SignedDuration::from_hours(366 * 24);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkStatus {
    Active,
    Processing,
    Paid,
    Expired,
    Cancelled,
}

impl LinkStatus {
    pub const ALL: [LinkStatus; 5] = [
        LinkStatus::Active,
        LinkStatus::Processing,
        LinkStatus::Paid,
        LinkStatus::Expired,
        LinkStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LinkStatus::Active => "active",
            LinkStatus::Processing => "processing",
            LinkStatus::Paid => "paid",
            LinkStatus::Expired => "expired",
            LinkStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Terminal statuses never change again (Zelta's expired -> cancelled
    /// is the one documented exception, granted by its cancel policy).
    pub fn is_terminal(self) -> bool {
        match self {
            LinkStatus::Paid | LinkStatus::Expired | LinkStatus::Cancelled => true,
            LinkStatus::Active | LinkStatus::Processing => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentType {
    OneTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Customer {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    pub product_id: String,
    pub name: String,
    pub quantity: i64,
    pub unit_amount: i64,
}

/// A stored payment link. `amount` and `currency` never change after creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub id: String,
    pub account_id: String,
    pub livemode: bool,
    pub slug: String,
    pub amount: i64,
    pub currency: Currency,
    pub description: Option<String>,
    pub payment_type: PaymentType,
    pub customer: Option<Customer>,
    pub line_items: Option<Vec<LineItem>>,
    pub order_reference: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
    pub status: LinkStatus,
    pub expires_at: Timestamp,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub cancelled_at: Option<Timestamp>,
    pub cancellation_reason: Option<String>,
    pub paid_at: Option<Timestamp>,
    pub payment_id: Option<String>,
    /// Minor units given back or being given back (pending refunds count,
    /// as in a Stripe charge's `amount_refunded`); never above `amount`.
    #[serde(default)]
    pub amount_refunded: i64,
    /// Bumped by every transition; the optimistic-concurrency token.
    pub version: i64,
}

/// A new state of a link with its event, valid only if the stored link is
/// still at `expected_version`.
#[derive(Debug, Clone)]
pub struct Transition {
    pub expected_version: i64,
    pub link: Link,
    pub event: LinkEvent,
    /// The payment attempt this transition starts (written new) or settles
    /// (written only if it is still pending), in the same transaction.
    pub attempt: Option<PaymentAttempt>,
    /// The refund this transition reserves (written new) or settles
    /// (written only if it is still pending), in the same transaction.
    pub refund: Option<Refund>,
}

/// What a new refund needs beyond the link.
#[derive(Debug, Clone)]
pub struct RefundStart<'a> {
    pub refund_id: &'a str,
    /// Default: what is left to refund.
    pub amount: Option<i64>,
    pub reason: Option<String>,
    /// The processor that took the payment.
    pub processor: &'a str,
    pub actor: Actor,
}

/// What a new payment attempt needs beyond the link.
#[derive(Debug, Clone, Copy)]
pub struct AttemptStart<'a> {
    pub attempt_id: &'a str,
    pub processor: &'a str,
    pub card_brand: Option<&'a str>,
    pub card_last4: Option<&'a str>,
}

/// What a merchant asks for when creating a link, before validation.
#[derive(Debug, Clone, Default)]
pub struct NewLink {
    pub amount: Option<i64>,
    pub currency: Option<String>,
    pub description: Option<String>,
    pub payment_type: Option<String>,
    pub customer: Option<Customer>,
    pub line_items: Option<Vec<LineItem>>,
    pub order_reference: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
    pub expires_at: Option<Timestamp>,
}

/// Who creates the link and the defaults that apply.
pub struct Creation<'a> {
    pub account_id: &'a str,
    pub livemode: bool,
    pub actor: Actor,
    pub now: Timestamp,
    pub default_lifetime: SignedDuration,
}

/// A merchant's change to an active link. `metadata` merges: a key mapped
/// to `None` is removed. `description: Some(None)` clears the description.
#[derive(Debug, Clone, Default)]
pub struct LinkUpdate {
    pub expires_at: Option<Timestamp>,
    pub metadata: Option<BTreeMap<String, Option<String>>>,
    pub description: Option<Option<String>>,
}

impl LinkUpdate {
    pub fn is_empty(&self) -> bool {
        self.expires_at.is_none() && self.metadata.is_none() && self.description.is_none()
    }
}

/// Why a state-changing request is refused: the link is not in a status
/// that allows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateConflict {
    pub status: LinkStatus,
    pub message: String,
}

impl NewLink {
    /// Validates every field and builds the link with its `created` event.
    pub fn create(self, ctx: Creation<'_>) -> Result<(Link, LinkEvent), FieldError> {
        let currency_text = self
            .currency
            .ok_or_else(|| FieldError::new("currency", "`currency` is required."))?;
        let currency =
            Currency::parse(&currency_text).map_err(|m| FieldError::new("currency", m))?;

        if let Some(payment_type) = &self.payment_type
            && payment_type != "one_time"
        {
            return Err(FieldError::new(
                "payment_type",
                format!("`payment_type` must be \"one_time\" (got \"{payment_type}\")."),
            ));
        }

        let line_items_total = match &self.line_items {
            Some(items) => Some(validate_line_items(items)?),
            None => None,
        };
        let amount = match (self.amount, line_items_total) {
            (Some(amount), Some(total)) if amount != total => {
                return Err(FieldError::new(
                    "amount",
                    format!("`amount` ({amount}) must equal the sum of the line items ({total})."),
                ));
            }
            (Some(amount), _) => amount,
            (None, Some(total)) => total,
            (None, None) => {
                return Err(FieldError::new(
                    "amount",
                    "`amount` is required (in minor units, e.g. 4995 for $49.95) unless `line_items` are given.",
                ));
            }
        };
        validate_amount("amount", amount)?;

        if let Some(description) = &self.description {
            check_max_chars("description", description, MAX_DESCRIPTION_CHARS)?;
        }
        if let Some(customer) = &self.customer {
            validate_customer(customer)?;
        }
        if let Some(reference) = &self.order_reference {
            check_not_blank("order_reference", reference)?;
            check_max_chars("order_reference", reference, MAX_ORDER_REFERENCE_CHARS)?;
        }
        let metadata = self.metadata.unwrap_or_default();
        validate_metadata(&metadata)?;
        let success_url = self
            .success_url
            .as_deref()
            .map(|url| normalize_http_url("success_url", url))
            .transpose()?;
        let cancel_url = self
            .cancel_url
            .as_deref()
            .map(|url| normalize_http_url("cancel_url", url))
            .transpose()?;
        let expires_at = match self.expires_at {
            Some(at) => {
                validate_expires_at(at, ctx.now)?;
                // Times are kept to the microsecond: answer what a read will.
                truncate_to_micros(at)
            }
            None => ctx.now + ctx.default_lifetime,
        };

        let link = Link {
            id: ids::new_link_id(),
            account_id: ctx.account_id.to_owned(),
            livemode: ctx.livemode,
            slug: ids::new_slug(),
            amount,
            currency,
            description: self.description,
            payment_type: PaymentType::OneTime,
            customer: self.customer,
            line_items: self.line_items,
            order_reference: self.order_reference,
            metadata,
            success_url,
            cancel_url,
            status: LinkStatus::Active,
            expires_at,
            created_at: ctx.now,
            updated_at: ctx.now,
            cancelled_at: None,
            cancellation_reason: None,
            paid_at: None,
            payment_id: None,
            amount_refunded: 0,
            version: 1,
        };
        let event = LinkEvent::new(EventType::Created, &link, ctx.actor, None, ctx.now);
        Ok((link, event))
    }
}

pub fn validate_amount(param: &str, amount: i64) -> Result<(), FieldError> {
    if amount <= 0 {
        return Err(FieldError::new(
            param,
            format!("`{param}` must be a positive integer in minor units (got {amount})."),
        ));
    }
    if amount > MAX_AMOUNT {
        return Err(FieldError::new(
            param,
            format!("`{param}` must be at most {MAX_AMOUNT} minor units."),
        ));
    }
    Ok(())
}

fn validate_line_items(items: &[LineItem]) -> Result<i64, FieldError> {
    if items.is_empty() {
        return Err(FieldError::new(
            "line_items",
            "`line_items` must not be empty when given.",
        ));
    }
    if items.len() > MAX_LINE_ITEMS {
        return Err(FieldError::new(
            "line_items",
            format!("At most {MAX_LINE_ITEMS} line items are allowed."),
        ));
    }
    let mut total: i64 = 0;
    for (index, item) in items.iter().enumerate() {
        let param = |field: &str| format!("line_items[{index}].{field}");
        check_not_blank(&param("product_id"), &item.product_id)?;
        check_max_chars(&param("product_id"), &item.product_id, MAX_NAME_CHARS)?;
        check_not_blank(&param("name"), &item.name)?;
        check_max_chars(&param("name"), &item.name, MAX_NAME_CHARS)?;
        if !(1..=MAX_QUANTITY).contains(&item.quantity) {
            return Err(FieldError::new(
                param("quantity"),
                format!("`quantity` must be between 1 and {MAX_QUANTITY}."),
            ));
        }
        validate_amount(&param("unit_amount"), item.unit_amount)?;
        total = item
            .unit_amount
            .checked_mul(item.quantity)
            .and_then(|line| total.checked_add(line))
            .filter(|sum| *sum <= MAX_AMOUNT)
            .ok_or_else(|| {
                FieldError::new(
                    "line_items",
                    format!("The line items add up to more than {MAX_AMOUNT} minor units."),
                )
            })?;
    }
    Ok(total)
}

fn validate_customer(customer: &Customer) -> Result<(), FieldError> {
    if let Some(email) = &customer.email {
        check_email("customer.email", email)?;
    }
    if let Some(name) = &customer.first_name {
        check_max_chars("customer.first_name", name, MAX_NAME_CHARS)?;
    }
    if let Some(name) = &customer.last_name {
        check_max_chars("customer.last_name", name, MAX_NAME_CHARS)?;
    }
    Ok(())
}

pub fn validate_metadata(metadata: &BTreeMap<String, String>) -> Result<(), FieldError> {
    if metadata.len() > MAX_METADATA_KEYS {
        return Err(FieldError::new(
            "metadata",
            format!(
                "`metadata` may have at most {MAX_METADATA_KEYS} keys (got {}).",
                metadata.len()
            ),
        ));
    }
    for (key, value) in metadata {
        let param = format!("metadata[{key}]");
        if key.is_empty() {
            return Err(FieldError::new(
                "metadata",
                "Metadata keys must not be empty.",
            ));
        }
        if key.chars().count() > MAX_METADATA_KEY_CHARS {
            return Err(FieldError::new(
                param,
                format!("Metadata keys must be at most {MAX_METADATA_KEY_CHARS} characters."),
            ));
        }
        if value.chars().count() > MAX_METADATA_VALUE_CHARS {
            return Err(FieldError::new(
                param,
                format!("Metadata values must be at most {MAX_METADATA_VALUE_CHARS} characters."),
            ));
        }
    }
    Ok(())
}

pub fn validate_expires_at(at: Timestamp, now: Timestamp) -> Result<(), FieldError> {
    if at <= now {
        return Err(FieldError::new(
            "expires_at",
            "`expires_at` must be in the future.",
        ));
    }
    if at > now + MAX_LIFETIME {
        return Err(FieldError::new(
            "expires_at",
            "`expires_at` must be at most one year ahead.",
        ));
    }
    Ok(())
}

impl Link {
    /// The status every reader sees: an active link whose `expires_at` has
    /// passed is expired whether or not the sweeper has stored that yet.
    pub fn effective_status(&self, now: Timestamp) -> LinkStatus {
        match self.status {
            LinkStatus::Active if self.expires_at <= now => LinkStatus::Expired,
            status => status,
        }
    }

    /// The link as a reader at `now` must see it.
    pub fn as_seen_at(mut self, now: Timestamp) -> Self {
        if self.effective_status(now) != self.status {
            self.updated_at = self.expires_at;
            self.status = LinkStatus::Expired;
        }
        self
    }

    fn next(&self, now: Timestamp) -> Link {
        let mut next = self.clone();
        next.version = self.version + 1;
        next.updated_at = now.max(self.updated_at);
        next
    }

    fn transition(
        &self,
        next: Link,
        event_type: EventType,
        actor: Actor,
        reason: Option<String>,
        now: Timestamp,
    ) -> Transition {
        let event = LinkEvent::new(event_type, &next, actor, reason, now);
        Transition {
            expected_version: self.version,
            link: next,
            event,
            attempt: None,
            refund: None,
        }
    }

    /// Stores the expiry of an active link whose time has come; `None` when
    /// there is nothing to expire. Run before any write so that writes see
    /// the same status as reads.
    pub fn expire_if_due(&self, now: Timestamp) -> Option<Transition> {
        if self.effective_status(now) != LinkStatus::Expired || self.status == LinkStatus::Expired {
            return None;
        }
        let mut next = self.next(now);
        next.status = LinkStatus::Expired;
        Some(self.transition(next, EventType::Expired, Actor::System, None, now))
    }

    /// Cancels under `policy`. Precondition: [`Link::expire_if_due`] has been
    /// applied, so `self.status` is the effective status.
    pub fn cancel(
        &self,
        policy: &CancelPolicy,
        reason: Option<Reason>,
        actor: Actor,
        now: Timestamp,
    ) -> Result<Option<Transition>, CancelRefusal> {
        let reason = reason.map(Reason::into_string);
        match policy.decide(self.status) {
            CancelDecision::Cancel => {
                let mut next = self.next(now);
                next.status = LinkStatus::Cancelled;
                next.cancelled_at = Some(now);
                next.cancellation_reason = reason.clone();
                Ok(Some(self.transition(
                    next,
                    EventType::Cancelled,
                    actor,
                    reason,
                    now,
                )))
            }
            CancelDecision::Unchanged => Ok(None),
            CancelDecision::Refuse(refusal) => Err(refusal),
        }
    }

    /// Applies a merchant's change; only an active link can change.
    /// Returns `Ok(None)` for an update that changes nothing.
    pub fn update(
        &self,
        update: &LinkUpdate,
        actor: Actor,
        now: Timestamp,
    ) -> Result<Option<Transition>, UpdateError> {
        if self.status != LinkStatus::Active {
            return Err(UpdateError::State(StateConflict {
                status: self.status,
                message: format!(
                    "This payment link is {}; only active links can be updated.",
                    self.status.as_str()
                ),
            }));
        }
        let mut next = self.next(now);
        if let Some(at) = update.expires_at {
            validate_expires_at(at, now).map_err(UpdateError::Field)?;
            next.expires_at = truncate_to_micros(at);
        }
        if let Some(description) = &update.description {
            if let Some(text) = description {
                check_max_chars("description", text, MAX_DESCRIPTION_CHARS)
                    .map_err(UpdateError::Field)?;
            }
            next.description = description.clone();
        }
        if let Some(changes) = &update.metadata {
            for (key, value) in changes {
                match value {
                    Some(value) => next.metadata.insert(key.clone(), value.clone()),
                    None => next.metadata.remove(key),
                };
            }
            validate_metadata(&next.metadata).map_err(UpdateError::Field)?;
        }
        let unchanged = next.expires_at == self.expires_at
            && next.description == self.description
            && next.metadata == self.metadata;
        if unchanged {
            return Ok(None);
        }
        let mut transition = self.transition(next, EventType::Updated, actor, None, now);
        transition.event.previous_attributes = Some(previous_attributes(self, &transition.link));
        Ok(Some(transition))
    }

    /// A customer starts paying: active -> processing.
    /// A customer starts paying: active -> processing, with the pending
    /// attempt `attempt_id` at `processor` written in the same transaction.
    pub fn begin_payment(
        &self,
        start: AttemptStart<'_>,
        now: Timestamp,
    ) -> Result<Transition, StateConflict> {
        if self.status != LinkStatus::Active {
            return Err(StateConflict {
                status: self.status,
                message: format!("This payment link is {}.", self.status.as_str()),
            });
        }
        let mut next = self.next(now);
        next.status = LinkStatus::Processing;
        let mut transition =
            self.transition(next, EventType::PaymentStarted, Actor::Customer, None, now);
        transition.attempt = Some(PaymentAttempt {
            id: start.attempt_id.to_owned(),
            link_id: self.id.clone(),
            account_id: self.account_id.clone(),
            livemode: self.livemode,
            amount: self.amount,
            currency: self.currency,
            processor: start.processor.to_owned(),
            state: AttemptState::Pending,
            payment_id: None,
            processor_reference: None,
            failure_message: None,
            card_brand: start.card_brand.map(str::to_owned),
            card_last4: start.card_last4.map(str::to_owned),
            created_at: now,
            updated_at: now,
        });
        Ok(transition)
    }

    /// The processor's answer for the pending `attempt`: processing -> paid
    /// or back to active, with the attempt settled in the same transaction.
    /// If the link's time ran out meanwhile, the caller's next
    /// [`Link::expire_if_due`] stores the expiry as its own transition, so
    /// each fact keeps its own event.
    pub fn settle_payment(
        &self,
        attempt: &PaymentAttempt,
        outcome: &ChargeOutcome,
        now: Timestamp,
    ) -> Result<Transition, StateConflict> {
        self.require_processing()?;
        if attempt.state != AttemptState::Pending || attempt.link_id != self.id {
            return Err(StateConflict {
                status: self.status,
                message: format!("The payment attempt {} is already settled.", attempt.id),
            });
        }
        let mut next = self.next(now);
        let mut transition = match outcome {
            ChargeOutcome::Succeeded { payment_id } => {
                next.status = LinkStatus::Paid;
                next.paid_at = Some(now);
                next.payment_id = Some(payment_id.clone());
                self.transition(next, EventType::Paid, Actor::Customer, None, now)
            }
            ChargeOutcome::Declined { message } => {
                next.status = LinkStatus::Active;
                // Only brand and last four digits are ever recorded.
                let detail = match (&attempt.card_brand, &attempt.card_last4) {
                    (Some(brand), Some(last4)) => format!("{message} ({brand} ending {last4})"),
                    _ => message.clone(),
                };
                self.transition(
                    next,
                    EventType::PaymentFailed,
                    Actor::Customer,
                    Some(detail),
                    now,
                )
            }
            ChargeOutcome::RequiresAction { .. } => {
                return Err(StateConflict {
                    status: self.status,
                    message: "A payment waiting for authentication is not settled yet.".into(),
                });
            }
        };
        transition.attempt = Some(attempt.settled(outcome, now));
        Ok(transition)
    }

    /// A payment the processor took for `attempt` after this link stopped
    /// being payable by it (cancelled or expired meanwhile, or paid by
    /// another attempt): the attempt is recorded as succeeded and, in the
    /// same transaction, an automatic refund of it is reserved, so money is
    /// never kept for a link that did not sell.
    pub fn refund_late_payment(
        &self,
        attempt: &PaymentAttempt,
        payment_id: &str,
        refund_id: &str,
        now: Timestamp,
    ) -> Result<Transition, StateConflict> {
        // A failed attempt may still turn out to have taken money (its
        // customer finished 3-D Secure after paylink gave up on it).
        let open = matches!(attempt.state, AttemptState::Pending | AttemptState::Failed);
        if !open || attempt.link_id != self.id {
            return Err(StateConflict {
                status: self.status,
                message: format!("The payment attempt {} is already settled.", attempt.id),
            });
        }
        let reason = match self.status {
            LinkStatus::Active | LinkStatus::Processing => format!(
                "The payment attempt {} succeeded after it had been closed as failed; it is refunded automatically.",
                attempt.id
            ),
            status => format!(
                "A payment of this link succeeded after it was {}; it is refunded automatically.",
                status.as_str()
            ),
        };
        let refund = Refund {
            id: refund_id.to_owned(),
            link_id: self.id.clone(),
            account_id: self.account_id.clone(),
            livemode: self.livemode,
            amount: attempt.amount,
            currency: attempt.currency,
            kind: RefundKind::LatePayment,
            reason: Some(reason.clone()),
            processor: attempt.processor.clone(),
            payment_id: payment_id.to_owned(),
            processor_refund_id: None,
            state: RefundState::Pending,
            failure_message: None,
            created_at: now,
            updated_at: now,
        };
        let next = self.next(now);
        let mut transition = self.transition(
            next,
            EventType::RefundCreated,
            Actor::System,
            Some(reason),
            now,
        );
        let mut settled = attempt.settled(
            &ChargeOutcome::Succeeded {
                payment_id: payment_id.to_owned(),
            },
            now,
        );
        settled.failure_message = None;
        transition.attempt = Some(settled);
        transition.event.refund = Some(refund.clone());
        transition.refund = Some(refund);
        Ok(transition)
    }

    /// What is left to refund.
    pub fn refundable(&self) -> i64 {
        self.amount - self.amount_refunded
    }

    /// Reserves a refund of a paid link: `amount_refunded` grows by it in
    /// the transition that writes the refund pending.
    pub fn begin_refund(
        &self,
        start: RefundStart<'_>,
        now: Timestamp,
    ) -> Result<Transition, UpdateError> {
        if self.status != LinkStatus::Paid {
            return Err(UpdateError::State(StateConflict {
                status: self.status,
                message: format!(
                    "Only a paid link can be refunded; this one is {}.",
                    self.status.as_str()
                ),
            }));
        }
        let Some(payment_id) = self.payment_id.clone() else {
            return Err(UpdateError::State(StateConflict {
                status: self.status,
                message: "This link has no payment to refund.".into(),
            }));
        };
        let left = self.refundable();
        if left <= 0 {
            return Err(UpdateError::State(StateConflict {
                status: self.status,
                message: "This payment has been refunded in full already.".into(),
            }));
        }
        let amount = start.amount.unwrap_or(left);
        if amount <= 0 {
            return Err(UpdateError::Field(FieldError::new(
                "amount",
                format!("`amount` must be a positive integer in minor units (got {amount})."),
            )));
        }
        if amount > left {
            return Err(UpdateError::Field(FieldError::new(
                "amount",
                format!(
                    "`amount` ({amount}) is more than what is left to refund ({left} of {} {}).",
                    self.amount,
                    self.currency.code()
                ),
            )));
        }
        let reason = Reason::parse_optional(start.reason.clone()).map_err(UpdateError::Field)?;
        let refund = Refund {
            id: start.refund_id.to_owned(),
            link_id: self.id.clone(),
            account_id: self.account_id.clone(),
            livemode: self.livemode,
            amount,
            currency: self.currency,
            kind: RefundKind::Requested,
            reason: reason.map(Reason::into_string),
            processor: start.processor.to_owned(),
            payment_id,
            processor_refund_id: None,
            state: RefundState::Pending,
            failure_message: None,
            created_at: now,
            updated_at: now,
        };
        let mut next = self.next(now);
        next.amount_refunded += amount;
        let mut transition = self.transition(
            next,
            EventType::RefundCreated,
            start.actor,
            start.reason,
            now,
        );
        transition.event.refund = Some(refund.clone());
        transition.refund = Some(refund);
        Ok(transition)
    }

    /// The processor's answer for the pending `refund`: `payment_link.refunded`,
    /// or `payment_link.refund_failed` with the reserved amount given back.
    pub fn settle_refund(
        &self,
        refund: &Refund,
        outcome: &RefundOutcome,
        now: Timestamp,
    ) -> Result<Transition, StateConflict> {
        if refund.state != RefundState::Pending || refund.link_id != self.id {
            return Err(StateConflict {
                status: self.status,
                message: format!("The refund {} is already settled.", refund.id),
            });
        }
        let mut next = self.next(now);
        let settled = refund.settled(outcome, now);
        let (event_type, reason) = match outcome {
            RefundOutcome::Succeeded { .. } => (EventType::Refunded, refund.reason.clone()),
            RefundOutcome::Failed { message } => {
                if refund.kind == RefundKind::Requested {
                    next.amount_refunded = (next.amount_refunded - refund.amount).max(0);
                }
                (EventType::RefundFailed, Some(message.clone()))
            }
        };
        let mut transition = self.transition(next, event_type, Actor::System, reason, now);
        transition.event.refund = Some(settled.clone());
        transition.refund = Some(settled);
        Ok(transition)
    }

    fn require_processing(&self) -> Result<(), StateConflict> {
        if self.status != LinkStatus::Processing {
            return Err(StateConflict {
                status: self.status,
                message: format!(
                    "No payment is in progress on this link (it is {}).",
                    self.status.as_str()
                ),
            });
        }
        Ok(())
    }
}

/// Why an update is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateError {
    Field(FieldError),
    State(StateConflict),
}

fn previous_attributes(before: &Link, after: &Link) -> serde_json::Value {
    let mut previous = serde_json::Map::new();
    if before.expires_at != after.expires_at {
        previous.insert("expires_at".into(), serde_json::json!(before.expires_at));
    }
    if before.description != after.description {
        previous.insert("description".into(), serde_json::json!(before.description));
    }
    if before.metadata != after.metadata {
        previous.insert("metadata".into(), serde_json::json!(before.metadata));
    }
    serde_json::Value::Object(previous)
}
