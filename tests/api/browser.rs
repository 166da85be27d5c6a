//! The hosted page in a real headless Chromium (Debian's `chromium`):
//! pay with the success card and land on `success_url`; a cancelled link
//! shows the cancelled page. Screenshots of the four page states are taken
//! on the way (copied to `PAYLINK_SCREENSHOTS_DIR` when set; `docs/` keeps
//! the committed ones). Skipped when Chromium is absent, except under CI.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::page::ScreenshotParams;
use futures::StreamExt;
use jiff::SignedDuration;
use serde_json::json;

use crate::helpers::TestApp;

const CHROMIUM: &str = "/usr/bin/chromium";

async fn launch(profile: &Path) -> (Browser, tokio::task::JoinHandle<()>) {
    let config = BrowserConfig::builder()
        .chrome_executable(CHROMIUM)
        .no_sandbox()
        .user_data_dir(profile)
        .window_size(900, 1000)
        .args([
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .build()
        .expect("browser config");
    let (browser, mut handler) = Browser::launch(config).await.expect("launch chromium");
    let events = tokio::spawn(async move { while handler.next().await.is_some() {} });
    (browser, events)
}

/// A merchant's site to land on after paying.
async fn merchant_site() -> String {
    let app = axum::Router::new().route(
        "/thanks",
        axum::routing::get(|| async { "Thanks for your order!" }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn screenshot(page: &chromiumoxide::Page, dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("checkout-{name}.png"));
    page.save_screenshot(ScreenshotParams::builder().full_page(true).build(), &path)
        .await
        .expect("screenshot");
    assert!(
        std::fs::metadata(&path).unwrap().len() > 1000,
        "{name} screenshot has content"
    );
    path
}

/// WCAG's contrast ratio of two CSS `rgb(...)`/`rgba(...)` colours.
fn contrast(a: &str, b: &str) -> f64 {
    let luminance = |css: &str| {
        let channels: Vec<f64> = css
            .trim_start_matches("rgba(")
            .trim_start_matches("rgb(")
            .trim_end_matches(')')
            .split(',')
            .take(3)
            .map(|c| c.trim().parse::<f64>().expect("a colour channel") / 255.0)
            .collect();
        let linear = |c: f64| {
            if c <= 0.03928 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * linear(channels[0]) + 0.7152 * linear(channels[1]) + 0.0722 * linear(channels[2])
    };
    let (x, y) = (luminance(a), luminance(b));
    (x.max(y) + 0.05) / (x.min(y) + 0.05)
}

async fn text_of(page: &chromiumoxide::Page) -> String {
    page.content().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_pays_in_a_real_browser_and_sees_a_cancelled_link_refused() {
    if !Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true requires Chromium at {CHROMIUM} (apt-get install chromium)"
        );
        eprintln!("SKIPPED browser test: no Chromium at {CHROMIUM}");
        return;
    }
    let app = TestApp::spawn().await;
    let shop = merchant_site().await;
    let success_url = format!("{shop}/thanks");
    let shots = tempfile::tempdir().unwrap();
    let profile = tempfile::tempdir().unwrap();
    let (mut browser, events) = launch(profile.path()).await;

    // Payable -> pay with the success card -> the merchant's success page.
    let link = app
        .create_link_with(json!({
            "success_url": success_url,
            "cancel_url": format!("{shop}/cart"),
            "line_items": [{"product_id": "bpm-1", "name": "Blood Pressure Monitor", "quantity": 1, "unit_amount": 4995}]
        }))
        .await;
    let url = link.body["url"].as_str().unwrap().to_owned();
    let page = browser.new_page(url.as_str()).await.unwrap();
    page.wait_for_navigation().await.unwrap();
    assert!(text_of(&page).await.contains("$49.95"));
    let mut taken = vec![screenshot(&page, shots.path(), "payable").await];
    // Each field's border as the browser paints it, against the card it
    // sits on: at least 3:1 (WCAG 1.4.11, non-text contrast).
    let colors: Vec<String> = page
        .evaluate(
            "['#card_number', '#expiry', '#cvc'].flatMap(id => { \
               const field = document.querySelector(id); \
               return [getComputedStyle(field).borderTopColor, \
                       getComputedStyle(field.closest('.card') || document.body).backgroundColor]; })",
        )
        .await
        .unwrap()
        .into_value()
        .unwrap();
    for pair in colors.chunks(2) {
        let ratio = contrast(&pair[0], &pair[1]);
        assert!(
            ratio >= 3.0,
            "input border {} on {}: {ratio:.2}:1",
            pair[0],
            pair[1]
        );
    }
    page.find_element("#card_number")
        .await
        .unwrap()
        .click()
        .await
        .unwrap()
        .type_str("4242 4242 4242 4242")
        .await
        .unwrap();
    page.find_element("#expiry")
        .await
        .unwrap()
        .click()
        .await
        .unwrap()
        .type_str("12/34")
        .await
        .unwrap();
    page.find_element("#cvc")
        .await
        .unwrap()
        .click()
        .await
        .unwrap()
        .type_str("123")
        .await
        .unwrap();
    page.find_element("button[type=submit]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The URL changes before the merchant's page has loaded: wait for both.
    let mut landed = None;
    for _ in 0..100 {
        let current = page.url().await.unwrap().unwrap_or_default();
        if current.starts_with(&success_url)
            && text_of(&page).await.contains("Thanks for your order!")
        {
            landed = Some(current);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        landed.as_deref(),
        Some(success_url.as_str()),
        "the browser lands on success_url and shows the merchant's page"
    );
    assert_eq!(app.link(&link.id()).await["status"], "paid");

    // The paid link now shows its receipt.
    page.goto(url.as_str()).await.unwrap();
    let receipt = text_of(&page).await;
    assert!(receipt.contains("Payment received"));
    assert!(!receipt.contains("<form"));
    taken.push(screenshot(&page, shots.path(), "paid").await);

    // A cancelled link shows the cancelled page, with the merchant's
    // message for the customer (the internal reason stays internal).
    let cancelled = app.create_link().await;
    app.cancel(
        &cancelled,
        json!({"reason": "Supplier 4471 failed QA", "customer_message": "The item is out of stock."}),
    )
    .await;
    let cancelled_url = app.link(&cancelled).await["url"]
        .as_str()
        .unwrap()
        .to_owned();
    page.goto(cancelled_url.as_str()).await.unwrap();
    let shown = text_of(&page).await;
    assert!(shown.contains("This payment link was cancelled"));
    assert!(shown.contains("The item is out of stock."));
    assert!(!shown.contains("Supplier 4471"));
    assert!(
        page.find_element("form").await.is_err(),
        "no form on a cancelled link"
    );
    taken.push(screenshot(&page, shots.path(), "cancelled").await);

    // An expired link.
    let expiring = app.create_link().await;
    let expiring_url = app.link(&expiring).await["url"]
        .as_str()
        .unwrap()
        .to_owned();
    app.advance(SignedDuration::from_hours(15 * 24));
    page.goto(expiring_url.as_str()).await.unwrap();
    assert!(
        text_of(&page)
            .await
            .contains("This payment link has expired")
    );
    taken.push(screenshot(&page, shots.path(), "expired").await);

    if let Ok(dir) = std::env::var("PAYLINK_SCREENSHOTS_DIR") {
        for shot in &taken {
            std::fs::copy(shot, Path::new(&dir).join(shot.file_name().unwrap())).unwrap();
        }
    }
    browser.close().await.unwrap();
    let _ = browser.wait().await;
    events.abort();
}

/// The Stripe page in Chromium, against localstripe's stand-in for
/// Stripe.js: the page loads Stripe.js under its CSP and Elements mounts the
/// card field; 3-D Secure is completed by clicking the stand-in's own
/// challenge, after which the page posts back and lands on `success_url`.
/// One step is made by the test as the browser would make it: the stand-in's
/// `createPaymentMethod` does nothing, so the test creates the PaymentMethod
/// at localstripe (as Stripe.js would) and submits the page's own form with
/// its id (as the page's script would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_pays_through_stripe_with_3d_secure_in_a_real_browser() {
    if !Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true requires Chromium at {CHROMIUM} (apt-get install chromium)"
        );
        eprintln!("SKIPPED Stripe browser test: no Chromium at {CHROMIUM}");
        return;
    }
    let Some(shop) = crate::stripe::StripeShop::open("Stripe browser test").await else {
        return;
    };
    let merchant = merchant_site().await;
    let success_url = format!("{merchant}/thanks");
    let created = shop
        .app
        .create_link_with(
            json!({"amount": 2500, "currency": "EUR", "description": "Blue mug",
                                 "success_url": success_url}),
        )
        .await;
    let id = created.id();
    let url = created.body["url"].as_str().unwrap().to_owned();
    let profile = tempfile::tempdir().unwrap();
    let (mut browser, events) = launch(profile.path()).await;
    let page = browser.new_page(url.as_str()).await.unwrap();
    page.wait_for_navigation().await.unwrap();

    // Stripe.js ran under the page's CSP and mounted its card field.
    let mut mounted = false;
    for _ in 0..100 {
        if page.find_element("#card-element input").await.is_ok() {
            mounted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        mounted,
        "Elements mounted the card field: {}",
        text_of(&page).await
    );
    assert!(
        page.find_element("#card_number").await.is_err(),
        "no card field of paylink's own"
    );

    let payment_method = shop.stripe.payment_method("4000002500003155").await;
    page.evaluate(format!(
        "(() => {{ const form = document.getElementById('stripe-pay'); \
           form.elements.payment_method.value = '{payment_method}'; \
           HTMLFormElement.prototype.submit.call(form); }})()"
    ))
    .await
    .unwrap();

    // The 3-D Secure page: the stand-in's challenge appears; complete it.
    let mut clicked = false;
    for _ in 0..100 {
        if let Ok(button) = page.find_element("body > div:last-of-type > button").await
            && button.inner_text().await.ok().flatten().as_deref()
                == Some("Complete authentication")
        {
            button.click().await.unwrap();
            clicked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        clicked,
        "the 3-D Secure challenge was shown: {}",
        text_of(&page).await
    );

    let mut landed = false;
    for _ in 0..100 {
        let current = page.url().await.unwrap().unwrap_or_default();
        if current.starts_with(&success_url)
            && text_of(&page).await.contains("Thanks for your order!")
        {
            landed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        landed,
        "the browser lands on success_url: {}",
        text_of(&page).await
    );
    assert_eq!(shop.app.link(&id).await["status"], "paid");

    browser.close().await.unwrap();
    let _ = browser.wait().await;
    events.abort();
}
