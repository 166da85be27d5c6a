//! The payment-link domain: types and rules with no I/O.
//!
//! Everything here is pure so that the state machine, validation and cancel
//! policies can be tested (and property-tested) without a database or HTTP.
//! The service layer loads state, asks these functions what should happen,
//! and hands the result to a store as one atomic operation.

pub mod account;
pub mod cancel;
pub mod card;
pub mod event;
pub mod idempotency;
pub mod ids;
pub mod link;
pub mod money;
pub mod payment;
pub mod query;
pub mod reason;
pub mod refund;
pub mod validation;
pub mod webhook;

pub use account::{Account, ApiKeyRecord, Branding, ProcessorAccount, Scope};
pub use cancel::{AlreadyCancelled, CancelDecision, CancelPolicy, CancelRefusal};
pub use event::{Actor, EventType, LinkEvent};
pub use link::{Customer, LineItem, Link, LinkStatus, NewLink, PaymentType, Transition};
pub use money::{Currency, MAX_AMOUNT};
pub use payment::{AttemptState, ChargeOutcome, PaymentAttempt};
pub use query::{EventFilter, LinkFilter, Page, StatsRow};
pub use reason::Reason;
pub use refund::{Refund, RefundKind, RefundOutcome, RefundState};
pub use validation::FieldError;
