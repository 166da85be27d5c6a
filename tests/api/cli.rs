//! The `paylink` binary itself: keys, suspension, migrate.

use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::TestApp;

fn paylink(args: &[&str], database_url: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_paylink"))
        .args(args)
        .env("PAYLINK_DATABASE_URL", database_url)
        .env("PAYLINK_LOG", "warn")
        .output()
        .expect("run paylink")
}

fn last_line(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

backend_tests! {
    async fn keys_create_prints_a_working_key_and_suspend_blocks_it() {
        let app = TestApp::spawn().await;

        let test_key = last_line(&paylink(
            &["keys", "create", "--account", "shop", "--mode", "test"],
            &app.database_url,
        ));
        let live_key = last_line(&paylink(
            &["keys", "create", "--account", "shop", "--mode", "live"],
            &app.database_url,
        ));

        assert!(
            test_key.starts_with("pl_test_") && test_key.len() >= 8 + 22,
            "{test_key}"
        );
        assert!(live_key.starts_with("pl_live_"), "{live_key}");
        let created = app
            .request(
                Method::POST,
                "/v1/payment-links",
                Some(&test_key),
                Some(json!({"amount": 100, "currency": "USD"})),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED);
        assert_eq!(created.body["livemode"], false);
        let live_list = app
            .request(Method::GET, "/v1/payment-links", Some(&live_key), None)
            .await;
        assert_eq!(
            live_list.body["data"],
            json!([]),
            "live mode does not see test links"
        );

        let suspended = paylink(&["accounts", "suspend", "shop"], &app.database_url);
        assert!(suspended.status.success());
        let refused = app
            .request(Method::GET, "/v1/payment-links", Some(&test_key), None)
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert_eq!(refused.code(), "account_suspended");
        let other_account = app.get("/v1/payment-links").await;
        assert_eq!(
            other_account.status,
            StatusCode::OK,
            "other accounts are unaffected"
        );

        let unknown = paylink(&["accounts", "suspend", "nobody"], &app.database_url);
        assert!(!unknown.status.success());
    }
}

/// SQLite only: it reads the database file itself.
#[tokio::test]
async fn keys_create_and_migrate_work_on_a_new_database() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("new.db").display());
    assert!(paylink(&["migrate"], &url).status.success());
    let key = last_line(&paylink(
        &["keys", "create", "--account", "fresh", "--mode", "test"],
        &url,
    ));
    assert!(key.starts_with("pl_test_"));
    let stored = std::fs::read(dir.path().join("new.db")).unwrap();
    let wal = std::fs::read(dir.path().join("new.db-wal")).unwrap_or_default();
    for bytes in [stored, wal] {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&key),
            "only a hash of the key is stored"
        );
    }
}
