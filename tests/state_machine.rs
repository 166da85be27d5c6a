//! Property test: random sequences of operations on a few links, run
//! against the real service on each backend (SQLite, and PostgreSQL when
//! `PAYLINK_TEST_POSTGRES_URL` is set; CI sets it), compared step by step
//! with a model of DESIGN.md §2. Cancels go through every cancel policy
//! (the native API's and each dialect's). Terminal states never change
//! (save an expired link cancelled under a policy that allows it, as
//! Zelta's and the payments API's do),
//! amounts never change, each link has at most one terminal event, the
//! stored events are exactly the link's status history, each event's
//! snapshot carries the status it moved to (and a cancel's reason), and
//! refunds never add up to more than the amount.

use std::sync::Arc;

use jiff::SignedDuration;
use paylink::clock::ShiftedClock;
use paylink::dialects::{Dialect, connect, gale, payments, plexy, zelta};
use paylink::domain::cancel::AlreadyCancelled;
use paylink::domain::{CancelPolicy, LinkStatus, NewLink};
use paylink::service::{Caller, Service, ServiceError, ServiceSettings};
use proptest::prelude::*;

const LINKS: usize = 3;

/// Every cancel policy a caller can reach.
const POLICIES: [CancelPolicy; 6] = [
    CancelPolicy::NATIVE,
    gale::Gale::POLICY,
    zelta::Zelta::POLICY,
    payments::Payments::POLICY,
    connect::Connect::POLICY,
    plexy::Plexy::POLICY,
];

/// What a cancel under `policy` does to a link whose stored status (after
/// a due expiry is stored) is `status`, written from the policy's two
/// settings rather than asked of it.
#[derive(Debug, PartialEq)]
enum Verdict {
    Cancels,
    Unchanged,
    Refused,
}

fn verdict(policy: &CancelPolicy, status: LinkStatus) -> Verdict {
    match status {
        LinkStatus::Active => Verdict::Cancels,
        LinkStatus::Expired if policy.cancel_expired => Verdict::Cancels,
        LinkStatus::Cancelled if policy.already_cancelled == AlreadyCancelled::ReturnUnchanged => {
            Verdict::Unchanged
        }
        _ => Verdict::Refused,
    }
}

/// The status an event's snapshot must carry.
fn status_after(event_type: &str) -> LinkStatus {
    match event_type {
        "payment_link.created" | "payment_link.updated" | "payment_link.payment_failed" => {
            LinkStatus::Active
        }
        "payment_link.processing" => LinkStatus::Processing,
        "payment_link.paid" | "payment_link.refund_created" | "payment_link.refunded" => {
            LinkStatus::Paid
        }
        "payment_link.expired" => LinkStatus::Expired,
        "payment_link.cancelled" => LinkStatus::Cancelled,
        other => panic!("an event the model does not know: {other}"),
    }
}
const LIFETIME_HOURS: i64 = 14 * 24;

#[derive(Debug, Clone)]
enum Op {
    Advance(i64),
    Read(usize),
    /// Cancel link `.0` under policy `.1` of [`POLICIES`].
    Cancel(usize, usize),
    BeginPayment(usize),
    CompletePayment(usize),
    FailPayment(usize),
    Update(usize),
    Refund(usize, i64),
    Sweep,
}

fn op() -> impl Strategy<Value = Op> {
    let link = 0..LINKS;
    prop_oneof![
        (1i64..200).prop_map(Op::Advance),
        link.clone().prop_map(Op::Read),
        (link.clone(), 0..POLICIES.len()).prop_map(|(i, p)| Op::Cancel(i, p)),
        link.clone().prop_map(Op::BeginPayment),
        link.clone().prop_map(Op::CompletePayment),
        link.clone().prop_map(Op::FailPayment),
        link.clone().prop_map(Op::Update),
        (link, 1i64..700).prop_map(|(i, amount)| Op::Refund(i, amount)),
        Just(Op::Sweep),
    ]
}

/// The model of one link: stored status, hours until expiry, event history.
#[derive(Debug, Clone)]
struct ModelLink {
    status: LinkStatus,
    expires_in_hours: i64,
    events: Vec<&'static str>,
    refunded: i64,
    /// The reason the link was cancelled with.
    cancel_reason: Option<String>,
}

impl ModelLink {
    fn due(&self, elapsed: i64) -> bool {
        self.status == LinkStatus::Active && elapsed >= self.expires_in_hours
    }
    fn effective(&self, elapsed: i64) -> LinkStatus {
        if self.due(elapsed) {
            LinkStatus::Expired
        } else {
            self.status
        }
    }
    fn set(&mut self, status: LinkStatus, event: &'static str) {
        self.status = status;
        self.events.push(event);
    }
    /// What every write does first: store a due expiry.
    fn expire_if_due(&mut self, elapsed: i64) {
        if self.due(elapsed) {
            self.set(LinkStatus::Expired, "payment_link.expired");
        }
    }
}

/// Runs `ops` on the database at `database_url` (each case in an account
/// of its own, so cases sharing a database never meet).
fn run(database_url: &str, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = paylink::store::open(database_url, &Default::default())
            .await
            .unwrap();
        let clock = Arc::new(ShiftedClock::default());
        let service = Service::new(store.clone(), clock.clone(), ServiceSettings::default());
        let account = format!("prop-{}", paylink::domain::ids::random_base62(12));
        let issued = service.create_api_key(&account, false).await.unwrap();
        let caller = Caller {
            scope: paylink::store::Scope { account_id: issued.account.id.clone(), livemode: false },
            key_id: issued.record.id.clone(),
            account_name: account.clone(),
        };
        let mut ids = Vec::new();
        let mut slugs = Vec::new();
        let mut model = Vec::new();
        for i in 0..LINKS {
            let link = service
                .create_link(&caller, NewLink { amount: Some(1000 + i as i64), currency: Some("EUR".into()), ..Default::default() })
                .await
                .unwrap();
            ids.push(link.id);
            slugs.push(link.slug);
            model.push(ModelLink { status: LinkStatus::Active, expires_in_hours: LIFETIME_HOURS, events: vec!["payment_link.created"], refunded: 0, cancel_reason: None });
        }
        let mut elapsed = 0i64;
        let mut update_counter = 0;
        let mut cancel_counter = 0;

        for op in ops {
            match op {
                Op::Advance(hours) => {
                    clock.advance(SignedDuration::from_hours(hours));
                    elapsed += hours;
                }
                Op::Read(i) => {
                    let link = service.get_link(&caller, &ids[i]).await.unwrap();
                    prop_assert_eq!(link.status, model[i].effective(elapsed));
                }
                Op::Sweep => {
                    service.expire_due_links(100).await.unwrap();
                    for m in &mut model {
                        m.expire_if_due(elapsed);
                    }
                }
                Op::Cancel(i, p) => {
                    cancel_counter += 1;
                    let reason = format!("why {cancel_counter}");
                    let policy = &POLICIES[p];
                    let result = service.cancel_link(&caller, &ids[i], Some(reason.clone()), None, policy).await;
                    let m = &mut model[i];
                    m.expire_if_due(elapsed);
                    match verdict(policy, m.status) {
                        Verdict::Cancels => {
                            let link = result.unwrap();
                            prop_assert_eq!(link.status, LinkStatus::Cancelled);
                            prop_assert_eq!(link.cancellation_reason.as_deref(), Some(reason.as_str()));
                            m.set(LinkStatus::Cancelled, "payment_link.cancelled");
                            m.cancel_reason = Some(reason);
                        }
                        Verdict::Unchanged => {
                            let link = result.unwrap();
                            prop_assert_eq!(link.status, LinkStatus::Cancelled);
                            prop_assert_eq!(link.cancellation_reason, m.cancel_reason.clone(), "the first reason stays");
                        }
                        Verdict::Refused => {
                            let status = m.status;
                            let refused_with_the_right_status = matches!(result, Err(ServiceError::InvalidState { status: s, .. }) if s == status);
                            prop_assert!(refused_with_the_right_status, "{:?} under {:?}", status, policy);
                        }
                    }
                }
                Op::BeginPayment(i) => {
                    let result = service.begin_payment(&slugs[i]).await;
                    let m = &mut model[i];
                    m.expire_if_due(elapsed);
                    if m.status == LinkStatus::Active {
                        prop_assert_eq!(result.unwrap().status, LinkStatus::Processing);
                        m.set(LinkStatus::Processing, "payment_link.processing");
                    } else {
                        prop_assert!(matches!(result, Err(ServiceError::InvalidState { .. })), "refused as invalid_state");
                    }
                }
                Op::CompletePayment(i) => {
                    let result = service.complete_payment(&slugs[i]).await;
                    let m = &mut model[i];
                    m.expire_if_due(elapsed);
                    if m.status == LinkStatus::Processing {
                        let link = result.unwrap();
                        prop_assert_eq!(link.status, LinkStatus::Paid);
                        prop_assert!(link.payment_id.is_some_and(|p| p.starts_with("pay_")));
                        m.set(LinkStatus::Paid, "payment_link.paid");
                    } else {
                        prop_assert!(matches!(result, Err(ServiceError::InvalidState { .. })), "refused as invalid_state");
                    }
                }
                Op::FailPayment(i) => {
                    let result = service.fail_payment(&slugs[i], "declined").await;
                    let m = &mut model[i];
                    m.expire_if_due(elapsed);
                    if m.status == LinkStatus::Processing {
                        m.set(LinkStatus::Active, "payment_link.payment_failed");
                        m.expire_if_due(elapsed);
                        prop_assert_eq!(result.unwrap().status, m.status);
                    } else {
                        prop_assert!(matches!(result, Err(ServiceError::InvalidState { .. })), "refused as invalid_state");
                    }
                }
                Op::Update(i) => {
                    update_counter += 1;
                    let update = paylink::domain::link::LinkUpdate {
                        description: Some(Some(format!("v{update_counter}"))),
                        ..Default::default()
                    };
                    let result = service.update_link(&caller, &ids[i], update).await;
                    let m = &mut model[i];
                    m.expire_if_due(elapsed);
                    if m.status == LinkStatus::Active {
                        prop_assert_eq!(result.unwrap().description, Some(format!("v{update_counter}")));
                        m.events.push("payment_link.updated");
                    } else {
                        prop_assert!(matches!(result, Err(ServiceError::InvalidState { .. })), "refused as invalid_state");
                    }
                }
                Op::Refund(i, amount) => {
                    let result = service.refund_link(&caller, &ids[i], Some(amount), None).await;
                    let m = &mut model[i];
                    m.expire_if_due(elapsed);
                    let left = 1000 + i as i64 - m.refunded;
                    match m.status {
                        LinkStatus::Paid if left > 0 && amount <= left => {
                            let refunded = result.unwrap();
                            prop_assert_eq!(refunded.refund.amount, amount);
                            prop_assert_eq!(refunded.refund.state, paylink::domain::RefundState::Succeeded);
                            m.refunded += amount;
                            m.events.push("payment_link.refund_created");
                            m.events.push("payment_link.refunded");
                        }
                        LinkStatus::Paid if left > 0 => {
                            prop_assert!(matches!(result, Err(ServiceError::Invalid(_))), "an over-refund is a field error");
                        }
                        _ => {
                            prop_assert!(matches!(result, Err(ServiceError::InvalidState { .. })), "refused as invalid_state");
                        }
                    }
                }
            }

            // After every step, the store agrees with the model.
            for i in 0..LINKS {
                let events = store.link_events(&ids[i]).await.unwrap();
                let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
                prop_assert_eq!(&types, &model[i].events, "link {} after {:?}", i, op);
                // One terminal event, save the one move out of a terminal
                // status a policy may allow: expired, then cancelled.
                let terminal: Vec<&str> = types.iter().copied().filter(|t| {
                    paylink::domain::EventType::parse(t).is_some_and(|t| t.is_terminal())
                }).collect();
                prop_assert!(
                    terminal.len() <= 1 || terminal == ["payment_link.expired", "payment_link.cancelled"],
                    "at most one terminal event (or expired then cancelled): {:?}", terminal
                );
                // Each event's snapshot carries the status the event moved to
                // (a cancel's, its reason too), and the amount of every
                // snapshot is the amount at creation.
                for event in &events {
                    let kind = event.event_type.as_str();
                    prop_assert_eq!(event.link.status, status_after(kind), "snapshot of {}", kind);
                    prop_assert_eq!(event.link.amount, 1000 + i as i64);
                    if kind == "payment_link.cancelled" {
                        prop_assert_eq!(&event.reason, &model[i].cancel_reason);
                        prop_assert_eq!(&event.link.cancellation_reason, &model[i].cancel_reason);
                    }
                }
                if let Some(last) = events.last() {
                    let stored = store.get_link(&caller.scope, &ids[i]).await.unwrap().unwrap();
                    prop_assert_eq!(stored.status, last.link.status, "the last event is the current state");
                    prop_assert_eq!(stored.status, model[i].status);
                    prop_assert_eq!(stored.amount, 1000 + i as i64);
                    prop_assert_eq!(stored.amount_refunded, model[i].refunded);
                    prop_assert_eq!(&stored.cancellation_reason, &model[i].cancel_reason);
                    prop_assert!(stored.amount_refunded <= stored.amount);
                }
            }
        }
        Ok(())
    })
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 48,
        source_file: Some(file!()),
        ..ProptestConfig::default()
    }
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 1..40)
}

#[test]
fn the_service_follows_the_state_machine_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    proptest::test_runner::TestRunner::new(config())
        .run(&ops(), |ops| run(&url, ops))
        .unwrap();
}

#[test]
fn the_service_follows_the_state_machine_on_postgres() {
    let Some(admin_url) = std::env::var("PAYLINK_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert!(
            std::env::var("CI").is_err(),
            "CI runs the PostgreSQL half: set PAYLINK_TEST_POSTGRES_URL"
        );
        eprintln!(
            "SKIPPED: the PostgreSQL half of the property test (PAYLINK_TEST_POSTGRES_URL is unset)"
        );
        return;
    };
    let database = postgres::Database::create(&admin_url);
    proptest::test_runner::TestRunner::new(config())
        .run(&ops(), |ops| run(&database.url, ops))
        .unwrap();
}

/// A PostgreSQL database of this test's own, dropped at the end.
mod postgres {
    use sqlx::{Connection, Executor};

    pub struct Database {
        pub url: String,
        admin_url: String,
        name: String,
    }

    fn block_on<T>(work: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(work)
    }

    impl Database {
        pub fn create(admin_url: &str) -> Self {
            let name = format!(
                "paylink_prop_{}",
                paylink::domain::ids::random_base62(12).to_lowercase()
            );
            block_on(async {
                let mut admin = sqlx::PgConnection::connect(admin_url)
                    .await
                    .expect("connect to PostgreSQL");
                admin
                    .execute(sqlx::AssertSqlSafe(format!("create database {name}")))
                    .await
                    .expect("create database");
            });
            let mut url = url::Url::parse(admin_url).expect("PostgreSQL URL");
            url.set_path(&name);
            Self {
                url: url.to_string(),
                admin_url: admin_url.to_owned(),
                name,
            }
        }
    }

    impl Drop for Database {
        fn drop(&mut self) {
            let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
            let dropped = block_on(async move {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                admin
                    .execute(sqlx::AssertSqlSafe(format!(
                        "drop database if exists {name} with (force)"
                    )))
                    .await
                    .map(|_| ())
            });
            if dropped.is_err() {
                eprintln!("could not drop test database {}", self.name);
            }
        }
    }
}

#[test]
fn terminal_statuses_are_terminal() {
    for status in LinkStatus::ALL {
        let terminal = matches!(
            status,
            LinkStatus::Paid | LinkStatus::Expired | LinkStatus::Cancelled
        );
        assert_eq!(status.is_terminal(), terminal);
    }
}
