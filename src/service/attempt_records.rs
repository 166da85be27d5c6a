//! What becomes of an attempt whose delivery the dispatcher no longer owns
//! when it is recorded. A dispatcher records attempts in batches; a batch
//! may carry one for a delivery that another node finished after this
//! node's lease ran out, or that was purged meanwhile. The first is kept
//! in the delivery's history without moving the delivery again; the second
//! has nowhere to go and is dropped. Neither may fail the rest of the
//! batch, whose deliveries would otherwise all be sent again.

use std::sync::Arc;

use super::*;
use crate::clock::SystemClock;
use crate::domain::webhook::delivery::{Attempt, AttemptRecord, DeliveryStatus, NextStep};
use crate::domain::{CancelPolicy, NewLink};
use crate::store::sqlite::SqliteStore;

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

async fn late_and_orphaned_records_leave_the_batch_whole(store: Arc<dyn Store>) {
    let service = Service::new(
        store,
        Arc::new(SystemClock),
        ServiceSettings {
            webhook_allow_private: true,
            ..ServiceSettings::default()
        },
    );
    let key = service.create_api_key("shop", false).await.unwrap();
    let caller = service.authenticate(&key.secret).await.unwrap();
    service
        .create_webhook_endpoint(
            &caller,
            NewEndpoint {
                url: "http://127.0.0.1:9/never-contacted".into(),
                events: Some(vec!["payment_link.cancelled".into()]),
                ..NewEndpoint::default()
            },
        )
        .await
        .unwrap();
    let mut cancelled = Vec::new();
    for _ in 0..2 {
        let link = service
            .create_link(
                &caller,
                NewLink {
                    amount: Some(1200),
                    currency: Some("EUR".into()),
                    ..NewLink::default()
                },
            )
            .await
            .unwrap();
        service
            .cancel_link(&caller, &link.id, None, None, &CancelPolicy::NATIVE)
            .await
            .unwrap();
        cancelled.push(link.id);
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

    let first_deliveries = service.store.event_deliveries(&first.event.id).await.unwrap();
    assert_eq!(first_deliveries.len(), 1);
    assert_eq!(first_deliveries[0].status, DeliveryStatus::Succeeded);
    assert_eq!(
        first_deliveries[0].attempts.len(),
        2,
        "the late attempt is kept in the finished delivery's history"
    );
    let second_deliveries = service.store.event_deliveries(&second.event.id).await.unwrap();
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

#[tokio::test]
async fn sqlite_late_and_orphaned_records_leave_the_batch_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paylink.db");
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    late_and_orphaned_records_leave_the_batch_whole(Arc::new(store)).await;
}

#[tokio::test]
async fn postgres_late_and_orphaned_records_leave_the_batch_whole() {
    use crate::store::postgres::scratch::{admin_url, scratch_store};
    let Some(admin_url) = admin_url() else { return };
    let (store, drop_database) = scratch_store(&admin_url).await;
    late_and_orphaned_records_leave_the_batch_whole(Arc::new(store)).await;
    drop_database().await;
}
