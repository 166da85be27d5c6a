//! Cancel, and a merchant's update of an active link.

use crate::clock::truncate_to_micros;
use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::domain::cancel::{CancelDecision, CancelPolicy, CancelRefusal};
use crate::domain::event::{Actor, EventType};
use crate::domain::reason::Reason;
use crate::domain::validation::{FieldError, check_max_chars};

use super::*;

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

impl Link {
    /// Cancels under `policy`. Precondition: [`Link::expire_if_due`] has been
    /// applied, so `self.status` is the effective status.
    /// `reason` is the merchant's own (kept on the link and its event);
    /// `customer_message` is what the hosted page shows the customer.
    pub fn cancel(
        &self,
        policy: &CancelPolicy,
        reason: Option<Reason>,
        customer_message: Option<Reason>,
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
                next.customer_message = customer_message.map(Reason::into_string);
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
