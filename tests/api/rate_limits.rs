//! Rate limits per API key, and a separate budget for failed authentication.

use paylink::server::ServerOptions;
use paylink::web::rate_limit::RateLimitSettings;
use reqwest::{Method, StatusCode};

use crate::helpers::TestApp;

async fn limited_app() -> TestApp {
    TestApp::spawn_with(ServerOptions {
        rate_limits: RateLimitSettings {
            per_second: 1,
            burst: 3,
            failed_auth_per_second: 1,
            failed_auth_burst: 5,
        },
        ..ServerOptions::default()
    })
    .await
}

backend_tests! {
    async fn a_key_past_its_burst_gets_429_with_retry_after_and_others_do_not() {
        let app = limited_app().await;
        let other = app.create_key("acme", false).await;
        let mut statuses = Vec::new();
        for _ in 0..5 {
            let response = app.get("/v1/payment-links").await;
            // draft-ietf-httpapi-ratelimit-headers: the policy (a quota of
            // 3 per 3-second window: the burst, refilled at 1 a second),
            // and what is left of it.
            assert_eq!(response.headers["ratelimit-policy"], r#""default";q=3;w=3"#);
            for old in ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"] {
                assert!(!response.headers.contains_key(old), "{old} is the old draft's");
            }
            statuses.push(response);
        }
        assert_eq!(statuses[0].headers["ratelimit"], r#""default";r=2;t=1"#);
        assert_eq!(statuses[1].headers["ratelimit"], r#""default";r=1;t=2"#);
        let limited = statuses.last().unwrap();
        assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.code(), "rate_limited");
        let retry_after: u64 = limited.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(retry_after >= 1);
        let remaining = limited.headers["ratelimit"].to_str().unwrap();
        assert!(remaining.starts_with(r#""default";r=0;t="#), "{remaining}");

        let unaffected = app.request(Method::GET, "/v1/payment-links", Some(&other), None).await;
        assert_eq!(unaffected.status, StatusCode::OK);
    }

    async fn a_flood_of_bad_keys_does_not_throttle_a_good_key() {
        let app = limited_app().await;
        let mut last = None;
        for i in 0..20 {
            let bad = format!("pl_test_bad{i:0>30}");
            last = Some(app.request(Method::GET, "/v1/payment-links", Some(&bad), None).await);
        }
        let last = last.unwrap();
        assert_eq!(last.status, StatusCode::TOO_MANY_REQUESTS, "the flood hits its own limit");
        assert!(last.headers.contains_key("retry-after"));
        assert_eq!(last.headers["ratelimit-policy"], r#""failed_auth";q=5;w=5"#);

        let good = app.get("/v1/payment-links").await;
        assert_eq!(good.status, StatusCode::OK);
        assert_eq!(good.headers["ratelimit"], r#""default";r=2;t=1"#, "the good key's budget is untouched");
    }
}
