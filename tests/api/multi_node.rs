//! Several paylink nodes on one PostgreSQL database: racing cancels, cancel
//! against expiry, and concurrent sweepers never produce two outcomes.

use std::collections::HashSet;

use jiff::{SignedDuration, Timestamp};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, on_postgres};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_cancels_on_two_nodes_have_exactly_one_winner() {
    on_postgres(async {
        let a = TestApp::spawn().await;
        let b = a.second_node().await;
        let mut ids = Vec::new();
        for _ in 0..20 {
            ids.push(a.create_link().await);
        }

        let (a_ref, b_ref) = (&a, &b);
        let attempts = ids.iter().flat_map(|id| {
            (0..3).flat_map(move |i| {
                [
                    a_ref.cancel(id, json!({"reason": format!("a{i}")})),
                    b_ref.cancel(id, json!({"reason": format!("b{i}")})),
                ]
            })
        });
        let responses = futures::future::join_all(attempts).await;

        for response in &responses {
            assert_eq!(
                response.status,
                StatusCode::OK,
                "every loser gets the winner's link: {}",
                response.body
            );
            assert_eq!(response.body["status"], "cancelled");
        }
        for id in &ids {
            let answers: HashSet<String> = responses
                .iter()
                .filter(|r| r.body["id"] == id.as_str())
                .map(|r| {
                    format!(
                        "{}|{}",
                        r.body["cancellation_reason"], r.body["cancelled_at"]
                    )
                })
                .collect();
            assert_eq!(answers.len(), 1, "one winner for {id}: {answers:?}");
            assert_eq!(
                a.event_types(id).await,
                ["payment_link.created", "payment_link.cancelled"]
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_racing_expiry_on_two_nodes_records_one_terminal_event() {
    on_postgres(async {
        let a = TestApp::spawn().await;
        let b = a.second_node().await;
        let expires = (Timestamp::now() + SignedDuration::from_hours(1)).to_string();
        let mut ids = Vec::new();
        for _ in 0..20 {
            ids.push(
                a.create_link_with(json!({"expires_at": expires}))
                    .await
                    .id(),
            );
        }
        a.advance(SignedDuration::from_hours(2));

        let cancels = futures::future::join_all(
            ids.iter()
                .flat_map(|id| [a.cancel(id, json!({})), b.cancel(id, json!({}))]),
        );
        let sweeps = async {
            tokio::join!(
                a.service.expire_due_links(7),
                b.service.expire_due_links(7),
                a.service.expire_due_links(7)
            )
        };
        let (responses, _) = tokio::join!(cancels, sweeps);

        for response in &responses {
            assert_eq!(response.status, StatusCode::CONFLICT, "{}", response.body);
            assert_eq!(response.code(), "invalid_state");
        }
        for id in &ids {
            assert_eq!(a.link(id).await["status"], "expired");
            assert_eq!(
                a.event_types(id).await,
                ["payment_link.created", "payment_link.expired"]
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_sweepers_expire_each_link_exactly_once() {
    on_postgres(async {
        let a = TestApp::spawn().await;
        let b = a.second_node().await;
        let caller = a.service.authenticate(&a.key).await.unwrap();
        let links = futures::future::join_all((0..300).map(|i| {
            a.service.create_link(
                &caller,
                paylink::domain::NewLink {
                    amount: Some(100 + i),
                    currency: Some("USD".into()),
                    expires_at: Some(Timestamp::now() + SignedDuration::from_hours(1)),
                    ..Default::default()
                },
            )
        }))
        .await;
        let ids: Vec<String> = links.into_iter().map(|l| l.unwrap().id).collect();
        a.advance(SignedDuration::from_hours(2));

        let sweep = |node: &TestApp| {
            let service = node.service.clone();
            async move {
                let mut total = 0;
                loop {
                    let expired = service.expire_due_links(25).await.unwrap();
                    if expired == 0 {
                        return total;
                    }
                    total += expired;
                }
            }
        };
        let (by_a, by_b) = tokio::join!(sweep(&a), sweep(&b));

        assert_eq!(by_a + by_b, 300, "each link expired by exactly one sweeper");
        for id in &ids {
            let events = a.store.link_events(id).await.unwrap();
            let expired = events
                .iter()
                .filter(|e| e.event_type.as_str() == "payment_link.expired")
                .count();
            assert_eq!(expired, 1, "{id}");
        }
    })
    .await;
}
