//! A write wakes this node's webhook dispatcher only when its event owes
//! deliveries. A wake costs a look at the deliveries table (a round trip
//! on PostgreSQL, a read on SQLite) on every write otherwise, which is
//! most writes on an account without endpoints.

use std::sync::Arc;

use futures::FutureExt;

use super::test_shop::{
    add_endpoint_wanting_cancellations, cancel_link, create_link, on_postgres, on_sqlite, shop,
};
use super::*;
use crate::clock::SystemClock;

/// Whether a wake is waiting for the dispatcher (and takes it).
fn woken(service: &Service) -> bool {
    service
        .deliveries_waiting
        .notified()
        .now_or_never()
        .is_some()
}

async fn writes_wake_only_when_deliveries_are_owed(store: Arc<dyn Store>) {
    let (service, caller) = shop(store, Arc::new(SystemClock)).await;

    let link = create_link(&service, &caller).await;
    assert!(!woken(&service), "a create with no endpoint owes nothing");
    cancel_link(&service, &caller, &link).await;
    assert!(!woken(&service), "a cancel with no endpoint owes nothing");

    add_endpoint_wanting_cancellations(&service, &caller).await;
    woken(&service);
    let link = create_link(&service, &caller).await;
    assert!(
        !woken(&service),
        "the endpoint does not want creations: the create owes nothing"
    );
    cancel_link(&service, &caller, &link).await;
    assert!(woken(&service), "the cancel owes the endpoint a delivery");
}

#[tokio::test]
async fn sqlite_writes_wake_the_dispatcher_only_when_deliveries_are_owed() {
    on_sqlite(writes_wake_only_when_deliveries_are_owed).await;
}

#[tokio::test]
async fn postgres_writes_wake_the_dispatcher_only_when_deliveries_are_owed() {
    on_postgres(writes_wake_only_when_deliveries_are_owed).await;
}
