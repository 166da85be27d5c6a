//! A write wakes this node's webhook dispatcher only when its event owes
//! deliveries. A wake costs a look at the deliveries table (a round trip
//! on PostgreSQL, a read on SQLite) on every write otherwise, which is
//! most writes on an account without endpoints.

use std::sync::Arc;

use futures::FutureExt;

use super::*;
use crate::clock::SystemClock;
use crate::domain::{CancelPolicy, NewLink};
use crate::store::sqlite::SqliteStore;

/// Whether a wake is waiting for the dispatcher (and takes it).
fn woken(service: &Service) -> bool {
    service
        .deliveries_waiting
        .notified()
        .now_or_never()
        .is_some()
}

async fn writes_wake_only_when_deliveries_are_owed(store: Arc<dyn Store>) {
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
    let new_link = || NewLink {
        amount: Some(1200),
        currency: Some("EUR".into()),
        ..NewLink::default()
    };
    let cancel = async |id: &str| {
        service
            .cancel_link(&caller, id, None, None, &CancelPolicy::NATIVE)
            .await
            .unwrap()
    };

    let link = service.create_link(&caller, new_link()).await.unwrap();
    assert!(!woken(&service), "a create with no endpoint owes nothing");
    cancel(&link.id).await;
    assert!(!woken(&service), "a cancel with no endpoint owes nothing");

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
    woken(&service);
    let link = service.create_link(&caller, new_link()).await.unwrap();
    assert!(
        !woken(&service),
        "the endpoint does not want creations: the create owes nothing"
    );
    cancel(&link.id).await;
    assert!(woken(&service), "the cancel owes the endpoint a delivery");
}

#[tokio::test]
async fn sqlite_writes_wake_the_dispatcher_only_when_deliveries_are_owed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paylink.db");
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    writes_wake_only_when_deliveries_are_owed(Arc::new(store)).await;
}

#[tokio::test]
async fn postgres_writes_wake_the_dispatcher_only_when_deliveries_are_owed() {
    use crate::store::postgres::scratch::{admin_url, scratch_store};
    let Some(admin_url) = admin_url() else { return };
    let (store, drop_database) = scratch_store(&admin_url).await;
    writes_wake_only_when_deliveries_are_owed(Arc::new(store)).await;
    drop_database().await;
}
