//! A shop for unit tests of the service and the dispatcher, on either
//! store: a service that may send to loopback, an account with an API key,
//! and an endpoint that wants cancellations at an address nothing listens
//! on (the tests claim and record by hand, or send through a transport of
//! their own). Each test says what it does with it, not how it is set up.

use std::sync::Arc;

use crate::clock::Clock;
use crate::domain::{CancelPolicy, NewLink};
use crate::service::{Caller, NewEndpoint, Service, ServiceSettings};
use crate::store::Store;
use crate::store::sqlite::SqliteStore;

/// Runs `test` on a fresh SQLite store in a temporary directory.
pub(crate) async fn on_sqlite(test: impl AsyncFnOnce(Arc<dyn Store>)) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paylink.db");
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    test(Arc::new(store)).await;
}

/// Runs `test` on a scratch PostgreSQL database, or says it skipped (see
/// `store::postgres::scratch::admin_url`).
pub(crate) async fn on_postgres(test: impl AsyncFnOnce(Arc<dyn Store>)) {
    use crate::store::postgres::scratch::{admin_url, scratch_store};
    let Some(admin_url) = admin_url() else { return };
    let (store, drop_database) = scratch_store(&admin_url).await;
    test(Arc::new(store)).await;
    drop_database().await;
}

/// A service on `store` and the caller of its one account, which has no
/// endpoint yet.
pub(crate) async fn shop(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> (Service, Caller) {
    let service = Service::new(
        store,
        clock,
        ServiceSettings {
            webhook_allow_private: true,
            ..ServiceSettings::default()
        },
    );
    let key = service.create_api_key("shop", false).await.unwrap();
    let caller = service.authenticate(&key.secret).await.unwrap();
    (service, caller)
}

/// Gives the caller's account an endpoint that wants cancellations only,
/// at an address nothing listens on.
pub(crate) async fn add_endpoint_wanting_cancellations(service: &Service, caller: &Caller) {
    service
        .create_webhook_endpoint(
            caller,
            NewEndpoint {
                url: "http://127.0.0.1:9/never-contacted".into(),
                events: Some(vec!["payment_link.cancelled".into()]),
                ..NewEndpoint::default()
            },
        )
        .await
        .unwrap();
}

/// A new link of 12.00 EUR; its id.
pub(crate) async fn create_link(service: &Service, caller: &Caller) -> String {
    service
        .create_link(
            caller,
            NewLink {
                amount: Some(1200),
                currency: Some("EUR".into()),
                ..NewLink::default()
            },
        )
        .await
        .unwrap()
        .id
}

pub(crate) async fn cancel_link(service: &Service, caller: &Caller, id: &str) {
    service
        .cancel_link(caller, id, None, None, &CancelPolicy::NATIVE)
        .await
        .unwrap();
}
