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

/// SQLite only: it reads the database file and the server's own log.
#[tokio::test]
async fn api_keys_never_appear_in_the_database_or_the_log_in_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keys.db").display());
    let key = last_line(&paylink(
        &["keys", "create", "--account", "shop", "--mode", "test"],
        &url,
    ));
    let log_path = dir.path().join("server.log");
    let mut server = Command::new(env!("CARGO_BIN_EXE_paylink"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("PAYLINK_DATABASE_URL", &url)
        .env("PAYLINK_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut base = None;
    for _ in 0..100 {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(addr) = log
            .split("addr=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
        {
            base = Some(format!("http://{addr}"));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let base = base.expect("the server logs its address");
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{base}/v1/payment-links"))
        .bearer_auth(&key)
        .json(&json!({"amount": 100, "currency": "USD"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let listed = client
        .get(format!("{base}/v1/payment-links"))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    let wrong = format!("{key}x");
    let refused = client
        .get(format!("{base}/v1/payment-links"))
        .bearer_auth(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(
        Command::new("kill")
            .arg(server.id().to_string())
            .status()
            .unwrap()
            .success()
    );
    assert!(
        server.wait().unwrap().success(),
        "SIGTERM is a clean shutdown"
    );

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("/v1/payment-links"),
        "the log did record the requests"
    );
    let secret = &key["pl_test_".len()..];
    for name in ["keys.db", "keys.db-wal", "server.log"] {
        let bytes = std::fs::read(dir.path().join(name)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(secret), "{name} holds the key in plain text");
    }
}
