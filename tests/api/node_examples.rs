//! The seeds' JavaScript examples, run unchanged (but for the base URL)
//! under Node against a live server: Gale's `cancelPaymentLink`, Zelta's
//! `cancelPaymentLink` and `safeCancelPaymentLink` (tests/node/).

use std::path::Path;

use serde_json::{Value, json};

use crate::helpers::TestApp;

/// Runs a script with `env`; `None` when Node is not installed (a skip,
/// which CI does not allow).
async fn node(script: &str, env: &[(&str, String)]) -> Option<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/node")
        .join(script);
    let mut command = tokio::process::Command::new("node");
    command.arg(&path);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = match command.output().await {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true requires Node.js for the seeds' JavaScript examples"
            );
            eprintln!(
                "SKIPPED: Node.js is not installed; the seeds' JavaScript examples did not run"
            );
            return None;
        }
        Err(error) => panic!("running node: {error}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().expect("the script prints its result");
    Some(serde_json::from_str(last).expect("a JSON result line"))
}

async fn slug(app: &TestApp, id: &str) -> String {
    app.link(id).await["slug"].as_str().unwrap().to_owned()
}

backend_tests! {
    async fn gale_cancel_payment_link_runs_under_node() {
        let app = TestApp::spawn().await;
        let id = app.create_link().await;
        let Some(result) = node(
            "gale_cancel.mjs",
            &[("PAYLINK_BASE", app.base.clone()), ("GALE_API_KEY", app.key.clone()), ("LINK_ID", id.clone())],
        )
        .await
        else {
            return;
        };
        assert_eq!(result["link"]["id"], id.as_str());
        assert_eq!(result["link"]["status"], "cancelled");
        assert_eq!(result["link"]["cancellation_reason"], "Customer changed mind");
        assert_eq!(result["refused"], "Failed to cancel payment link", "a second cancel is refused");
        assert_eq!(app.link(&id).await["status"], "cancelled");
    }

    async fn zelta_cancel_and_safe_cancel_run_under_node() {
        let app = TestApp::spawn().await;
        let (first, second, paid) = (app.create_link().await, app.create_link().await, app.create_link().await);
        app.pay(&paid).await;
        let hash_urls = [slug(&app, &first).await, slug(&app, &second).await, slug(&app, &paid).await].join(",");
        let Some(result) = node(
            "zelta_cancel.mjs",
            &[("PAYLINK_BASE", app.base.clone()), ("ZELTA_API_KEY", app.key.clone()), ("HASH_URLS", hash_urls)],
        )
        .await
        else {
            return;
        };
        assert_eq!(result["cancelledLink"]["id"], first.as_str());
        assert_eq!(result["cancelledLink"]["status"], "cancelled");
        assert_eq!(result["result"]["id"], second.as_str());
        assert_eq!(result["result"]["status"], "cancelled");
        assert_eq!(result["again"]["status"], "cancelled", "safe cancel of a cancelled link returns it");
        assert_eq!(result["refusedCompleted"], "Cannot cancel completed payment link");
        assert_eq!(result["refusedTwice"], "Payment link cannot be cancelled");
        assert_eq!(result["notFound"], "Payment link not found");
        for id in [&first, &second] {
            assert_eq!(app.link(id).await["status"], "cancelled");
        }
        assert_eq!(app.link(&paid).await["status"], json!("paid"));
    }
}
