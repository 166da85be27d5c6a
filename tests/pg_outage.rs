//! Connection loss: PostgreSQL is stopped and restarted under a running
//! node. Meanwhile every request gets a clean 503 (no panic, no partial
//! write); afterwards the node recovers by itself.
//!
//! Its own test binary, because stopping the server would break tests
//! running beside it; cargo runs test binaries one after another. It needs
//! `PAYLINK_TEST_POSTGRES_URL` and control of the local cluster
//! (`pg_ctlcluster`, as root); CI provides both.

#[path = "api/helpers.rs"]
#[allow(dead_code, reason = "shared helpers; this binary uses a few")]
mod helpers;

use std::process::Command;
use std::time::Duration;

use helpers::{TestApp, on_postgres};
use reqwest::StatusCode;
use serde_json::json;

fn cluster_version() -> Option<String> {
    std::fs::read_dir("/etc/postgresql")
        .ok()?
        .flatten()
        .next()
        .map(|e| e.file_name().to_string_lossy().into_owned())
}

fn pg_ctl(action: &str) -> bool {
    let Some(version) = cluster_version() else {
        return false;
    };
    Command::new("pg_ctlcluster")
        .args([
            "--skip-systemctl-redirect",
            &version,
            "main",
            action,
            "-m",
            "fast",
        ])
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts the cluster again even if the test fails half-way.
struct RestartOnDrop;

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        pg_ctl("start");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_answers_503_while_postgres_is_down_and_recovers_by_itself() {
    let controllable =
        cluster_version().is_some() && Command::new("pg_ctlcluster").arg("--help").output().is_ok();
    if !controllable {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true requires control of the local PostgreSQL cluster (pg_ctlcluster)"
        );
        eprintln!("SKIPPED: no local PostgreSQL cluster to stop and start (pg_ctlcluster)");
        return;
    }
    on_postgres(async {
        let app = TestApp::spawn().await;
        let id = app.create_link().await;

        let _restart = RestartOnDrop;
        assert!(pg_ctl("stop"), "stopped PostgreSQL");

        let path = format!("/v1/payment-links/{id}");
        let (read, create, cancel, ready) = tokio::join!(
            app.get(&path),
            app.create_link_with(json!({"order_reference": "DURING-OUTAGE"})),
            app.cancel(&id, json!({"reason": "during outage"})),
            app.get("/readyz"),
        );
        for response in [&read, &create, &cancel, &ready] {
            assert_eq!(
                response.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{}",
                response.body
            );
            assert_eq!(response.code(), "unavailable");
        }
        assert_eq!(
            app.get("/healthz").await.status,
            StatusCode::OK,
            "the node itself stays up"
        );

        assert!(pg_ctl("start"), "started PostgreSQL");
        let mut recovered = false;
        for _ in 0..60 {
            if app.get("/readyz").await.status == StatusCode::OK {
                recovered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(recovered, "the node reconnects without a restart");

        let link = app.link(&id).await;
        assert_eq!(link["status"], "active", "the failed cancel wrote nothing");
        assert_eq!(app.event_types(&id).await, ["payment_link.created"]);
        let during = app
            .get("/v1/payment-links?order_reference=DURING-OUTAGE")
            .await;
        assert_eq!(
            during.body["data"],
            json!([]),
            "the failed create wrote nothing"
        );
        let cancel = app.cancel(&id, json!({"reason": "after outage"})).await;
        assert_eq!(cancel.status, StatusCode::OK);
    })
    .await;
}
