//! The edges of a dispatcher's ownership of a delivery, on both stores.
//!
//! A claim leases deliveries while writes commit new ones: every delivery
//! it leases must come back from it, or it goes unsent until the lease
//! runs out.
//!
//! A dispatcher records attempts in batches; a batch may carry one for a
//! delivery that another node finished after this node's lease ran out, or
//! that was purged meanwhile. The first is kept in the delivery's history
//! without moving the delivery again; the second has nowhere to go and is
//! dropped. Neither may fail the rest of the batch, whose deliveries would
//! otherwise all be sent again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;

use super::test_shop::{
    add_endpoint_wanting_cancellations, cancel_link, create_link, on_postgres, on_sqlite, shop,
};
use super::*;
use crate::clock::SystemClock;
use crate::domain::webhook::delivery::{Attempt, AttemptRecord, DeliveryStatus, NextStep};

fn succeeded(event_id: &str, endpoint_id: &str) -> AttemptRecord {
    AttemptRecord {
        event_id: event_id.into(),
        endpoint_id: endpoint_id.into(),
        attempt: Attempt {
            attempted_at: Timestamp::now(),
            status_code: Some(200),
            latency_ms: 3,
            error: None,
        },
        next: NextStep::Succeeded,
    }
}

/// A shop whose endpoint wants cancellations, with `links` links not yet
/// cancelled.
async fn shop_with_links(store: Arc<dyn Store>, links: usize) -> (Service, Caller, Vec<String>) {
    let (service, caller) = shop(store, Arc::new(SystemClock)).await;
    add_endpoint_wanting_cancellations(&service, &caller).await;
    let mut ids = Vec::with_capacity(links);
    for _ in 0..links {
        ids.push(create_link(&service, &caller).await);
    }
    (service, caller, ids)
}

/// Claims run back to back while cancellations commit, each owing one
/// delivery: all of them come back from some claim.
async fn claims_racing_writes_return_every_delivery_they_lease(store: Arc<dyn Store>) {
    const LINKS: usize = 400;
    let (service, caller, ids) = shop_with_links(store, LINKS).await;
    let cancelled_all = AtomicBool::new(false);
    let cancelling = async {
        futures::stream::iter(&ids)
            .for_each_concurrent(4, |id| cancel_link(&service, &caller, id))
            .await;
        cancelled_all.store(true, Ordering::SeqCst);
    };
    let claiming = async {
        let mut claimed = 0;
        loop {
            // Read before the claim: once every cancel has committed, a
            // claim that finds nothing has found everything there was.
            let after_the_last_write = cancelled_all.load(Ordering::SeqCst);
            let found = service.claim_deliveries(8).await.unwrap().len();
            claimed += found;
            if found == 0 && after_the_last_write {
                return claimed;
            }
            tokio::task::yield_now().await;
        }
    };
    let ((), claimed) = tokio::join!(cancelling, claiming);
    assert_eq!(
        claimed, LINKS,
        "every cancellation's delivery comes back from a claim"
    );
}

async fn late_and_orphaned_records_leave_the_batch_whole(store: Arc<dyn Store>) {
    let (service, caller, ids) = shop_with_links(store, 2).await;
    for id in &ids {
        cancel_link(&service, &caller, id).await;
    }
    let claimed = service.claim_deliveries(10).await.unwrap();
    assert_eq!(claimed.len(), 2, "both cancellations owe a delivery");
    let (first, second) = (&claimed[0], &claimed[1]);
    let endpoint_id = first.endpoint.id.clone();

    // The first delivery succeeds and is recorded.
    service
        .record_attempts(vec![succeeded(&first.event.id, &endpoint_id)])
        .await
        .unwrap();
    // One batch: a second, late attempt of the finished delivery, one for
    // a delivery that no longer exists, and the second delivery's own.
    service
        .record_attempts(vec![
            succeeded(&first.event.id, &endpoint_id),
            succeeded("evt_purged_long_ago", &endpoint_id),
            succeeded(&second.event.id, &endpoint_id),
        ])
        .await
        .expect("a record for a delivery that is gone does not fail its batch");

    let first_deliveries = service
        .store
        .event_deliveries(&first.event.id)
        .await
        .unwrap();
    assert_eq!(first_deliveries.len(), 1);
    assert_eq!(first_deliveries[0].status, DeliveryStatus::Succeeded);
    assert_eq!(
        first_deliveries[0].attempts.len(),
        2,
        "the late attempt is kept in the finished delivery's history"
    );
    let second_deliveries = service
        .store
        .event_deliveries(&second.event.id)
        .await
        .unwrap();
    assert_eq!(second_deliveries[0].status, DeliveryStatus::Succeeded);
    assert_eq!(second_deliveries[0].attempts.len(), 1);
    assert!(
        service
            .store
            .event_deliveries("evt_purged_long_ago")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        service.claim_deliveries(10).await.unwrap().is_empty(),
        "nothing is left to send again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_claims_racing_writes_return_every_delivery_they_lease() {
    on_sqlite(claims_racing_writes_return_every_delivery_they_lease).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_claims_racing_writes_return_every_delivery_they_lease() {
    on_postgres(claims_racing_writes_return_every_delivery_they_lease).await;
}

#[tokio::test]
async fn sqlite_late_and_orphaned_records_leave_the_batch_whole() {
    on_sqlite(late_and_orphaned_records_leave_the_batch_whole).await;
}

#[tokio::test]
async fn postgres_late_and_orphaned_records_leave_the_batch_whole() {
    on_postgres(late_and_orphaned_records_leave_the_batch_whole).await;
}
