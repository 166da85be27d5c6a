//! Real money through Stripe, against localstripe (a stateful Stripe
//! emulator that also sends Stripe-signed webhooks): the Stripe page, card
//! outcomes, 3-D Secure, refunds, processor webhooks, cancel races and an
//! outage of the processor. Skipped (and said so) where localstripe is not
//! installed; mandatory under CI=true.
//!
//! Two steps of a browser are made by the test with the same requests the
//! browser would make: Stripe.js's `createPaymentMethod` (localstripe's
//! stand-in for it does nothing) and its 3-D Secure modal's answer.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use paylink::payments::ProcessorSettings;
use paylink::payments::stripe::StripeConfig;
use paylink::server::ServerOptions;
use paylink::service::{ProcessorChoice, ServiceSettings};

use crate::common::localstripe::{self, Localstripe};
use crate::helpers::{TestApp, generous_checkout_limits};

pub struct StripeShop {
    pub app: TestApp,
    pub stripe: Localstripe,
}

/// Declined when charged (localstripe declines 4000000000000002 only when
/// attached to a customer, which paylink never does; Stripe documents
/// 4000000000000341 as "attaches, then declines at charge").
const DECLINED_AT_CHARGE: &str = "4000000000000341";
const SUCCEEDS: &str = "4242424242424242";
const NEEDS_3DS: &str = "4000002500003155";

impl StripeShop {
    pub async fn open(test: &str) -> Option<Self> {
        let stripe = Localstripe::start(test).await?;
        let mut settings = crate::refunds::secrets_settings();
        settings.processors = ProcessorSettings {
            stripe_api_base: stripe.base.clone(),
            stripe_js_url: stripe.js_url(),
            ..settings.processors
        };
        let app = TestApp::spawn_with_settings(
            ServerOptions {
                checkout_limits: generous_checkout_limits(),
                // Rounds often, so a test that moves the clock sees one soon.
                reconcile_interval: Duration::from_millis(200),
                ..ServerOptions::default()
            },
            ServiceSettings { ..settings },
        )
        .await;
        app.service
            .set_processor(
                "default",
                false,
                ProcessorChoice::Stripe(StripeConfig {
                    secret_key: localstripe::SECRET_KEY.into(),
                    publishable_key: localstripe::PUBLISHABLE_KEY.into(),
                    webhook_secret: localstripe::WEBHOOK_SECRET.into(),
                }),
            )
            .await
            .unwrap();
        stripe
            .send_webhooks_to(&format!("{}/processors/stripe/default/webhook", app.base))
            .await;
        Some(Self { app, stripe })
    }

    pub async fn link(&self, amount: i64) -> (String, String) {
        let response = self
            .app
            .create_link_with(
                json!({"amount": amount, "currency": "EUR", "description": "Blue mug",
                                    "success_url": "https://shop.example/thanks"}),
            )
            .await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
        (
            response.id(),
            response.body["slug"].as_str().unwrap().to_owned(),
        )
    }

    /// Opens the page and posts a PaymentMethod as its form would.
    pub async fn pay(&self, slug: &str, card: &str) -> Posted {
        let page = self.get(&format!("/pay/{slug}")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.html);
        let token = page.csrf();
        let payment_method = self.stripe.payment_method(card).await;
        self.post(
            &format!("/pay/{slug}"),
            &token,
            &[("payment_method", payment_method.as_str())],
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Posted {
        let response = client()
            .get(format!("{}{path}", self.app.base))
            .send()
            .await
            .unwrap();
        Posted::read(response).await
    }

    pub async fn post(&self, path: &str, token: &str, fields: &[(&str, &str)]) -> Posted {
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("csrf_token", token));
        let response = client()
            .post(format!("{}{path}", self.app.base))
            .header("cookie", format!("pl_csrf={token}"))
            .form(&form)
            .send()
            .await
            .unwrap();
        Posted::read(response).await
    }

    /// Waits (at most 10 s) until the link reads `status`.
    pub async fn wait_for(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let link = self.app.link(id).await;
            if link["status"] == status {
                return link;
            }
            assert!(
                Instant::now() < deadline,
                "link never became {status}: {link}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn intent(&self, id: &str) -> Value {
        self.stripe.get(&format!("/v1/payment_intents/{id}")).await
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub struct Posted {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub html: String,
}

impl Posted {
    async fn read(response: reqwest::Response) -> Self {
        Self {
            status: response.status(),
            headers: response.headers().clone(),
            html: response.text().await.unwrap(),
        }
    }

    pub fn csrf(&self) -> String {
        let cookie = self.headers["set-cookie"].to_str().unwrap();
        cookie
            .split(';')
            .next()
            .unwrap()
            .strip_prefix("pl_csrf=")
            .unwrap()
            .to_owned()
    }

    /// A `data-NAME="..."` attribute of the page.
    pub fn data(&self, name: &str) -> String {
        let marker = format!("data-{name}=\"");
        let start = self
            .html
            .find(&marker)
            .unwrap_or_else(|| panic!("no data-{name} in {}", self.html))
            + marker.len();
        self.html[start..].split('"').next().unwrap().to_owned()
    }
}

backend_tests! {
    async fn the_stripe_page_loads_stripe_js_and_takes_no_card_numbers() {
        let Some(shop) = StripeShop::open("stripe page").await else { return };
        let (_, slug) = shop.link(2500).await;
        let page = shop.get(&format!("/pay/{slug}")).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.html.contains(&format!("<script src=\"{}\">", shop.stripe.js_url())), "{}", page.html);
        assert!(page.html.contains("<script src=\"/pay/assets/stripe-checkout.js\">"));
        assert!(page.html.contains("id=\"card-element\""));
        assert!(page.html.contains(&format!("data-publishable-key=\"{}\"", localstripe::PUBLISHABLE_KEY)));
        assert!(!page.html.contains("card_number"), "no card field of paylink's own");
        let csp = page.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains(&format!("script-src 'self' {}", shop.stripe.base)), "{csp}");
        assert!(csp.contains(&format!("connect-src {}", shop.stripe.base)), "{csp}");
        assert!(csp.contains("frame-src"), "{csp}");
        assert!(csp.contains("form-action 'self' https://shop.example"), "{csp}");
        // A card number posted to a Stripe page is not taken.
        let token = page.csrf();
        let posted = shop.post(&format!("/pay/{slug}"), &token, &[("card_number", SUCCEEDS), ("expiry", "12/34"), ("cvc", "123")]).await;
        assert_eq!(posted.status, StatusCode::UNPROCESSABLE_ENTITY);
    }

    async fn a_good_card_pays_through_stripe() {
        let Some(shop) = StripeShop::open("stripe success").await else { return };
        let (id, slug) = shop.link(4995).await;
        let posted = shop.pay(&slug, SUCCEEDS).await;
        assert_eq!(posted.status, StatusCode::SEE_OTHER, "{}", posted.html);
        assert_eq!(posted.headers["location"], "https://shop.example/thanks");
        let link = shop.app.link(&id).await;
        assert_eq!(link["status"], "paid");
        let intent_id = link["payment_id"].as_str().unwrap();
        assert!(intent_id.starts_with("pi_"), "{intent_id}");
        let intent = shop.intent(intent_id).await;
        assert_eq!(intent["status"], "succeeded");
        assert_eq!(intent["amount"], 4995);
        assert_eq!(intent["currency"], "eur");
        assert_eq!(intent["metadata"]["paylink_link_id"], id.as_str());
        assert!(intent["metadata"]["paylink_attempt_id"].as_str().unwrap().starts_with("pa_"));
        // localstripe's payment_intent.succeeded arrives about a second
        // later and changes nothing (the synchronous answer won).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            shop.app.event_types(&id).await,
            ["payment_link.created", "payment_link.processing", "payment_link.paid"]
        );
    }

    async fn a_declined_card_leaves_the_link_payable_with_stripe_s_message() {
        let Some(shop) = StripeShop::open("stripe decline").await else { return };
        let (id, slug) = shop.link(1500).await;
        let posted = shop.pay(&slug, DECLINED_AT_CHARGE).await;
        assert_eq!(posted.status, StatusCode::PAYMENT_REQUIRED, "{}", posted.html);
        assert!(posted.html.to_lowercase().contains("declined"), "{}", posted.html);
        assert!(posted.html.contains("id=\"card-element\""), "the form is shown again");
        assert_eq!(shop.app.link(&id).await["status"], "active");
        // The customer tries another card.
        let again = shop.pay(&slug, SUCCEEDS).await;
        assert_eq!(again.status, StatusCode::SEE_OTHER);
        assert_eq!(shop.app.link(&id).await["status"], "paid");
    }

    async fn three_d_secure_completed_pays_and_failed_leaves_the_link_payable() {
        let Some(shop) = StripeShop::open("stripe 3ds").await else { return };
        // Completed: the page runs confirmCardPayment, then posts back.
        let (id, slug) = shop.link(3000).await;
        let posted = shop.pay(&slug, NEEDS_3DS).await;
        assert_eq!(posted.status, StatusCode::OK, "{}", posted.html);
        assert!(posted.html.contains("id=\"stripe-action\""));
        let client_secret = posted.data("client-secret");
        assert_eq!(shop.app.link(&id).await["status"], "processing");
        // A reload shows the challenge again.
        let reloaded = shop.get(&format!("/pay/{slug}")).await;
        assert_eq!(reloaded.data("client-secret"), client_secret);
        shop.stripe.authenticate(&client_secret, true).await;
        let token = posted.csrf();
        let back = shop.post(&format!("/pay/{slug}/complete"), &token, &[]).await;
        assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.html);
        let link = shop.app.link(&id).await;
        assert_eq!(link["status"], "paid");
        assert_eq!(link["payment_id"].as_str().unwrap(), client_secret.split("_secret_").next().unwrap());

        // Failed: the link is payable again, with the reason.
        let (id, slug) = shop.link(3000).await;
        let posted = shop.pay(&slug, NEEDS_3DS).await;
        let client_secret = posted.data("client-secret");
        shop.stripe.authenticate(&client_secret, false).await;
        let back = shop.post(&format!("/pay/{slug}/complete"), &posted.csrf(), &[]).await;
        assert_eq!(back.status, StatusCode::PAYMENT_REQUIRED, "{}", back.html);
        assert!(back.html.contains("failed authentication"), "{}", back.html);
        assert_eq!(shop.app.link(&id).await["status"], "active");
    }

    async fn stripe_s_webhook_settles_a_payment_the_customer_never_came_back_from() {
        let Some(shop) = StripeShop::open("stripe webhook settles").await else { return };
        let (id, slug) = shop.link(2000).await;
        let posted = shop.pay(&slug, NEEDS_3DS).await;
        // The customer authenticates and closes the tab: only localstripe's
        // signed payment_intent.succeeded tells paylink.
        shop.stripe.authenticate(&posted.data("client-secret"), true).await;
        let link = shop.wait_for(&id, "paid").await;
        assert!(link["payment_id"].as_str().unwrap().starts_with("pi_"));
        let paid_events = shop.app.event_types(&id).await.iter().filter(|t| *t == "payment_link.paid").count();
        assert_eq!(paid_events, 1);
    }

    async fn webhooks_with_bad_signatures_are_refused_and_replays_change_nothing() {
        let Some(shop) = StripeShop::open("stripe webhook signatures").await else { return };
        let (id, slug) = shop.link(2000).await;
        let posted = shop.pay(&slug, NEEDS_3DS).await;
        let client_secret = posted.data("client-secret");
        let intent_id = client_secret.split("_secret_").next().unwrap().to_owned();
        let attempt_id = shop.intent(&intent_id).await["metadata"]["paylink_attempt_id"].as_str().unwrap().to_owned();
        let event = json!({
            "id": "evt_paylink_test_1", "object": "event", "type": "payment_intent.succeeded",
            "data": {"object": {"id": intent_id, "object": "payment_intent", "status": "succeeded",
                                "metadata": {"paylink_attempt_id": attempt_id}}}
        })
        .to_string();
        let url = format!("{}/processors/stripe/default/webhook", shop.app.base);
        let now = jiff::Timestamp::now().as_second();
        let send = |signature: String| {
            let (url, event) = (url.clone(), event.clone());
            async move {
                client().post(url).header("stripe-signature", signature)
                    .header("content-type", "application/json").body(event).send().await.unwrap().status()
            }
        };
        for bad in [
            localstripe::sign(&event, "whsec_someone_else", now),
            localstripe::sign(&event, localstripe::WEBHOOK_SECRET, now - 301),
            localstripe::sign("{}", localstripe::WEBHOOK_SECRET, now),
            "t=1,v1=zz".to_owned(),
        ] {
            assert_eq!(send(bad).await, StatusCode::BAD_REQUEST);
        }
        assert_eq!(shop.app.link(&id).await["status"], "processing", "nothing changed");
        let unsigned = client().post(&url).body(event.clone()).send().await.unwrap().status();
        assert_eq!(unsigned, StatusCode::BAD_REQUEST);

        // Signed as Stripe signs: applied once; a replay changes nothing.
        assert_eq!(send(localstripe::sign(&event, localstripe::WEBHOOK_SECRET, now)).await, StatusCode::OK);
        assert_eq!(shop.app.link(&id).await["status"], "paid");
        let events = shop.app.event_types(&id).await;
        assert_eq!(send(localstripe::sign(&event, localstripe::WEBHOOK_SECRET, now)).await, StatusCode::OK);
        assert_eq!(shop.app.event_types(&id).await, events);
    }

    /// Stripe's webhook delivery times out and hangs up on slow receivers:
    /// an event whose sender hung up right after sending is applied in
    /// full all the same, once, and its retry changes nothing.
    async fn a_processor_webhook_whose_sender_hangs_up_is_applied_once() {
        let Some(shop) = StripeShop::open("stripe webhook hang-up").await else { return };
        let addr = shop.app.base.trim_start_matches("http://").to_owned();
        let now = jiff::Timestamp::now().as_second();
        let mut sent = Vec::new();
        for i in 0..8 {
            let (id, slug) = shop.link(1000 + i).await;
            let posted = shop.pay(&slug, NEEDS_3DS).await;
            let intent_id = posted.data("client-secret").split("_secret_").next().unwrap().to_owned();
            let attempt_id = shop.intent(&intent_id).await["metadata"]["paylink_attempt_id"].as_str().unwrap().to_owned();
            let event = json!({
                "id": format!("evt_hangup_{i}"), "object": "event", "type": "payment_intent.succeeded",
                "data": {"object": {"id": intent_id, "object": "payment_intent", "status": "succeeded",
                                    "metadata": {"paylink_attempt_id": attempt_id}}}
            })
            .to_string();
            let signature = localstripe::sign(&event, localstripe::WEBHOOK_SECRET, now);
            let request = crate::common::post_request(
                "/processors/stripe/default/webhook",
                &[("Stripe-Signature", signature.as_str())],
                "application/json",
                &event,
            );
            // Written, then the connection reset before any answer is read.
            crate::common::send_and_hang_up(&addr, &request, Duration::ZERO).await;
            sent.push((id, event, signature));
        }
        for (id, event, signature) in sent {
            let deadline = Instant::now() + Duration::from_secs(10);
            while shop.app.link(&id).await["status"] != "paid" {
                assert!(Instant::now() < deadline, "{id}: the event was lost with its sender");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let events = shop.app.event_types(&id).await;
            assert_eq!(events.iter().filter(|t| *t == "payment_link.paid").count(), 1, "{events:?}");
            // Stripe retries what it never saw answered: nothing changes.
            let retried = client()
                .post(format!("{}/processors/stripe/default/webhook", shop.app.base))
                .header("stripe-signature", signature)
                .header("content-type", "application/json")
                .body(event)
                .send()
                .await
                .unwrap();
            assert_eq!(retried.status(), StatusCode::OK);
            assert_eq!(shop.app.event_types(&id).await, events);
        }
    }

    async fn refunds_go_back_through_stripe_in_full_and_in_part() {
        let Some(shop) = StripeShop::open("stripe refunds").await else { return };
        let (id, slug) = shop.link(1000).await;
        assert_eq!(shop.pay(&slug, SUCCEEDS).await.status, StatusCode::SEE_OTHER);
        let intent = shop.app.link(&id).await["payment_id"].as_str().unwrap().to_owned();
        let path = format!("/v1/payment-links/{id}/refunds");
        let refund = |body: Value| shop.app.post(&path, body);

        let part = refund(json!({"amount": 250, "reason": "One mug chipped"})).await;
        assert_eq!(part.status, StatusCode::CREATED, "{}", part.body);
        assert_eq!(part.body["status"], "succeeded");
        assert!(part.body["processor_refund_id"].as_str().unwrap().starts_with("re_"));
        let over = refund(json!({"amount": 751})).await;
        assert_eq!(over.status, StatusCode::BAD_REQUEST);
        let rest = refund(json!({})).await;
        assert_eq!(rest.status, StatusCode::CREATED, "{}", rest.body);
        assert_eq!(rest.body["amount"], 750);
        assert_eq!(shop.app.link(&id).await["amount_refunded"], 1000);

        let at_stripe = shop.stripe.get(&format!("/v1/refunds?payment_intent={intent}")).await;
        let mut amounts: Vec<i64> = at_stripe["data"].as_array().unwrap().iter().map(|r| r["amount"].as_i64().unwrap()).collect();
        amounts.sort();
        assert_eq!(amounts, [250, 750]);
        for made in at_stripe["data"].as_array().unwrap() {
            assert!(made["metadata"]["paylink_refund_id"].as_str().unwrap().starts_with("re_"));
        }
    }

    async fn ten_concurrent_stripe_refunds_never_exceed_the_amount() {
        let Some(shop) = StripeShop::open("stripe concurrent refunds").await else { return };
        let (id, slug) = shop.link(100).await;
        assert_eq!(shop.pay(&slug, SUCCEEDS).await.status, StatusCode::SEE_OTHER);
        let intent = shop.app.link(&id).await["payment_id"].as_str().unwrap().to_owned();
        let path = format!("/v1/payment-links/{id}/refunds");
        let answers = futures::future::join_all((0..10).map(|_| {
            shop.app.post(&path, json!({"amount": 40}))
        }))
        .await;
        assert_eq!(answers.iter().filter(|a| a.status == StatusCode::CREATED).count(), 2);
        assert_eq!(shop.app.link(&id).await["amount_refunded"], 80);
        let at_stripe = shop.stripe.get(&format!("/v1/refunds?payment_intent={intent}")).await;
        let total: i64 = at_stripe["data"].as_array().unwrap().iter().map(|r| r["amount"].as_i64().unwrap()).sum();
        assert_eq!(total, 80);
    }

    async fn cancelling_a_link_cancels_its_unconfirmed_payment_intent() {
        let Some(shop) = StripeShop::open("stripe cancel voids").await else { return };
        let (id, slug) = shop.link(2000).await;
        let posted = shop.pay(&slug, NEEDS_3DS).await;
        let intent_id = posted.data("client-secret").split("_secret_").next().unwrap().to_owned();
        assert_eq!(shop.intent(&intent_id).await["status"], "requires_action");

        let cancelled = shop.app.cancel(&id, json!({"reason": "Out of stock"})).await;
        assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
        assert_eq!(cancelled.body["status"], "cancelled");
        assert_eq!(shop.intent(&intent_id).await["status"], "canceled");
        // The customer's 3-D Secure can no longer take money.
        let late = shop.post(&format!("/pay/{slug}/complete"), &posted.csrf(), &[]).await;
        assert!(late.status.is_client_error());
        assert_eq!(shop.app.link(&id).await["status"], "cancelled");
    }

    async fn a_cancel_racing_a_completed_payment_finds_it_paid() {
        let Some(shop) = StripeShop::open("stripe cancel race").await else { return };
        let (id, slug) = shop.link(2000).await;
        let posted = shop.pay(&slug, NEEDS_3DS).await;
        // The customer completes 3-D Secure; before any word reaches
        // paylink, the merchant cancels: the money is not refused twice.
        shop.stripe.authenticate(&posted.data("client-secret"), true).await;
        let cancelled = shop.app.cancel(&id, json!({})).await;
        assert_eq!(cancelled.status, StatusCode::CONFLICT, "{}", cancelled.body);
        assert_eq!(shop.app.link(&id).await["status"], "paid");
        let types = shop.app.event_types(&id).await;
        assert!(!types.contains(&"payment_link.cancelled".to_owned()), "{types:?}");
    }

    async fn a_payment_that_succeeds_after_its_attempt_failed_is_refunded() {
        let Some(shop) = StripeShop::open("stripe late success").await else { return };
        let (id, slug) = shop.link(1200).await;
        // 3-D Secure fails: the attempt is closed failed, the link
        // cancelled by the merchant.
        let posted = shop.pay(&slug, NEEDS_3DS).await;
        let client_secret = posted.data("client-secret");
        let intent_id = client_secret.split("_secret_").next().unwrap().to_owned();
        let attempt_id = shop.intent(&intent_id).await["metadata"]["paylink_attempt_id"].as_str().unwrap().to_owned();
        shop.stripe.authenticate(&client_secret, false).await;
        shop.post(&format!("/pay/{slug}/complete"), &posted.csrf(), &[]).await;
        assert_eq!(shop.app.cancel(&id, json!({})).await.status, StatusCode::OK);

        // Yet money arrives for that attempt (a client holding its secret
        // paid it with another card, which localstripe cannot replay: the
        // test makes that PaymentIntent and sends Stripe's signed event).
        let pm = shop.stripe.payment_method(SUCCEEDS).await;
        let (status, late) = shop.stripe.post("/v1/payment_intents", &[
            ("amount", "1200"), ("currency", "eur"), ("payment_method", &pm),
            ("payment_method_types[]", "card"), ("confirm", "true"),
            ("metadata[paylink_attempt_id]", &attempt_id),
        ]).await;
        assert_eq!(status, 200, "{late}");
        let event = json!({"id": "evt_late_1", "type": "payment_intent.succeeded",
            "data": {"object": late}}).to_string();
        let answer = client()
            .post(format!("{}/processors/stripe/default/webhook", shop.app.base))
            .header("stripe-signature", localstripe::sign(&event, localstripe::WEBHOOK_SECRET, jiff::Timestamp::now().as_second()))
            .body(event)
            .send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);

        let link = shop.app.link(&id).await;
        assert_eq!(link["status"], "cancelled", "money never makes a cancelled link paid");
        let types = shop.app.event_types(&id).await;
        assert!(types.ends_with(&["payment_link.refund_created".to_owned(), "payment_link.refunded".to_owned()]), "{types:?}");
        let refunds = shop.app.get(&format!("/v1/payment-links/{id}/refunds")).await;
        assert_eq!(refunds.body["data"][0]["kind"], "late_payment");
        assert_eq!(refunds.body["data"][0]["status"], "succeeded");
        let late_id = late["id"].as_str().unwrap();
        let at_stripe = shop.stripe.get(&format!("/v1/refunds?payment_intent={late_id}")).await;
        assert_eq!(at_stripe["data"][0]["amount"], 1200, "the money went back at Stripe");
    }

    async fn with_stripe_down_the_page_says_try_again_and_nothing_is_lost() {
        let Some(mut shop) = StripeShop::open("stripe outage").await else { return };
        let (id, slug) = shop.link(900).await;
        let page = shop.get(&format!("/pay/{slug}")).await;
        let token = page.csrf();
        let payment_method = shop.stripe.payment_method(SUCCEEDS).await;
        shop.stripe.stop().await;
        let posted = shop.post(&format!("/pay/{slug}"), &token, &[("payment_method", &payment_method)]).await;
        assert_eq!(posted.status, StatusCode::PAYMENT_REQUIRED, "{}", posted.html);
        assert!(posted.html.contains("please try again"), "{}", posted.html);
        assert!(posted.html.contains("You have not been charged"));
        assert_eq!(shop.app.link(&id).await["status"], "active");

        // Back up (an emulator restarts empty): the customer pays.
        shop.stripe.restart().await;
        shop.stripe.send_webhooks_to(&format!("{}/processors/stripe/default/webhook", shop.app.base)).await;
        let again = shop.pay(&slug, SUCCEEDS).await;
        assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.html);
        assert_eq!(shop.app.link(&id).await["status"], "paid");
    }

    async fn an_abandoned_3d_secure_is_cancelled_after_its_window_and_the_link_is_payable_again() {
        let Some(shop) = StripeShop::open("stripe abandoned 3ds").await else { return };
        let (id, slug) = shop.link(2000).await;
        let posted = shop.pay(&slug, NEEDS_3DS).await;
        let intent_id = posted.data("client-secret").split("_secret_").next().unwrap().to_owned();

        // Within the 15-minute window the customer may still finish.
        shop.app.advance(jiff::SignedDuration::from_mins(14));
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(shop.app.link(&id).await["status"], "processing");
        assert_eq!(shop.intent(&intent_id).await["status"], "requires_action");

        // Past it, the reconciler cancels the PaymentIntent at Stripe and
        // the link takes payments again.
        shop.app.advance(jiff::SignedDuration::from_mins(2));
        shop.wait_for(&id, "active").await;
        assert_eq!(shop.intent(&intent_id).await["status"], "canceled");
        assert_eq!(shop.pay(&slug, SUCCEEDS).await.status, StatusCode::SEE_OTHER);
    }

    async fn a_link_expiring_during_3d_secure_cancels_its_payment_intent() {
        let Some(shop) = StripeShop::open("stripe expiry voids").await else { return };
        let expires_at = jiff::Timestamp::now() + jiff::SignedDuration::from_mins(5);
        let created = shop
            .app
            .create_link_with(json!({"amount": 700, "currency": "EUR", "expires_at": expires_at}))
            .await;
        let (id, slug) = (created.id(), created.body["slug"].as_str().unwrap().to_owned());
        let posted = shop.pay(&slug, NEEDS_3DS).await;
        let intent_id = posted.data("client-secret").split("_secret_").next().unwrap().to_owned();

        // Past its expiry, though well inside 3-D Secure's 15 minutes.
        shop.app.advance(jiff::SignedDuration::from_mins(6));
        shop.wait_for(&id, "expired").await;
        assert_eq!(shop.intent(&intent_id).await["status"], "canceled");
        let types = shop.app.event_types(&id).await;
        assert!(types.ends_with(&["payment_link.payment_failed".to_owned(), "payment_link.expired".to_owned()]), "{types:?}");
    }
}
