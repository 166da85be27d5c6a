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

/// A key or an account changed by another process (the CLI, another
/// node) holds on this server once its cached copy has expired: waits
/// that promised bound, after which every request must see the change.
async fn past_the_key_cache() {
    tokio::time::sleep(paylink::service::KEY_CACHE_TTL).await;
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
        past_the_key_cache().await;
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

    /// The hosted pages name the business as it chose, not by the
    /// account's internal name, with its logo and contact links.
    async fn branding_set_from_the_cli_shows_on_every_hosted_page() {
        let app = TestApp::spawn().await;
        let set = paylink(
            &["accounts", "set-branding", "default", "--display-name", "Acme Medical & Co",
              "--support-email", "help@acme.example", "--logo-url", "https://cdn.acme.example/logo.png",
              "--terms-url", "https://acme.example/terms", "--privacy-url", "https://acme.example/privacy"],
            &app.database_url,
        );
        assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
        let client = reqwest::Client::new();
        let page_of = |id: String| {
            let (app, client) = (&app, &client);
            async move {
                let url = app.link(&id).await["url"].as_str().unwrap().to_owned();
                client.get(url).send().await.unwrap().text().await.unwrap()
            }
        };
        let payable = app.create_link().await;
        let cancelled = app.create_link().await;
        app.cancel(&cancelled, json!({})).await;
        let paid = app.create_link().await;
        app.pay(&paid).await;
        for id in [payable, cancelled, paid] {
            let html = page_of(id).await;
            assert!(html.contains("Acme Medical &amp; Co"), "the display name, escaped: {html}");
            assert!(!html.contains(">default<"), "never the internal name");
            assert!(html.contains(r#"src="https://cdn.acme.example/logo.png""#));
            assert!(html.contains(r#"href="mailto:help@acme.example""#));
            assert!(html.contains(r#"href="https://acme.example/terms""#));
            assert!(html.contains(r#"href="https://acme.example/privacy""#));
        }

        // One field changed, the others kept; an empty value clears one.
        let changed = paylink(&["accounts", "set-branding", "default", "--display-name", "Acme", "--terms-url", ""], &app.database_url);
        assert!(changed.status.success());
        let html = page_of(app.create_link().await).await;
        assert!(html.contains(">Acme<") && html.contains("help@acme.example") && !html.contains("/terms"), "{html}");

        // Refused, and nothing changed: a logo that is not https, a bad
        // email, an unknown account.
        for bad in [
            vec!["accounts", "set-branding", "default", "--logo-url", "http://cdn.acme.example/logo.png"],
            vec!["accounts", "set-branding", "default", "--support-email", "not-an-email"],
            vec!["accounts", "set-branding", "nobody", "--display-name", "X"],
        ] {
            assert!(!paylink(&bad, &app.database_url).status.success(), "{bad:?}");
        }
        assert!(page_of(app.create_link().await).await.contains(">Acme<"));
    }

    /// The CLI as a client of a running server: each command does what its
    /// curl call does, prints a table (or `--json`), and an API error is
    /// its code and message with a non-zero exit.
    async fn the_cli_client_drives_links_events_and_endpoints() {
        let app = TestApp::spawn().await;
        // Async: the server runs on this test's runtime, which a blocking
        // wait for the child would stall.
        let run = |args: Vec<String>| {
            let (base, key) = (app.base.clone(), app.key.clone());
            async move {
                let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_paylink"))
                    .args(&args)
                    .env("PAYLINK_API_URL", base)
                    .env("PAYLINK_API_KEY", key)
                    .kill_on_drop(true)
                    .output();
                tokio::time::timeout(std::time::Duration::from_secs(60), child)
                    .await
                    .expect("the CLI answers within a minute")
                    .expect("run paylink")
            }
        };
        let ok = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            let run = &run;
            async move {
                let out = run(args.clone()).await;
                assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
                String::from_utf8(out.stdout).unwrap()
            }
        };
        let json_of = |args: &[&str]| {
            let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            args.push("--json".into());
            let ok = &ok;
            async move {
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                serde_json::from_str::<serde_json::Value>(&ok(&refs).await).unwrap()
            }
        };
        let failed = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            let run = &run;
            async move {
                let out = run(args).await;
                assert!(!out.status.success());
                String::from_utf8_lossy(&out.stderr).into_owned()
            }
        };

        let created = json_of(&["links", "create", "--amount", "4995", "--currency", "USD", "--description", "Monitor", "--metadata", "order=A-1"]).await;
        let id = created["id"].as_str().unwrap().to_owned();
        assert_eq!(created["metadata"], json!({"order": "A-1"}));
        assert_eq!(app.link(&id).await["amount"], 4995, "the same link through the API");
        let shown = ok(&["links", "get", &id]).await;
        assert!(shown.contains("status") && shown.contains("active") && shown.contains("$49.95"), "{shown}");
        let table = ok(&["links", "list", "--limit", "5"]).await;
        let mut lines = table.lines();
        assert!(lines.next().unwrap().starts_with("ID"), "{table}");
        assert!(table.contains(&id) && table.contains("$49.95") && table.contains("Monitor"), "{table}");

        let updated = json_of(&["links", "update", &id, "--description", "Blood pressure monitor"]).await;
        assert_eq!(updated["description"], "Blood pressure monitor");
        let cancelled = json_of(&["links", "cancel", &id, "--reason", "out of stock", "--customer-message", "Sorry!"]).await;
        assert_eq!(cancelled["status"], "cancelled");
        assert_eq!(cancelled["customer_message"], "Sorry!");
        let events = ok(&["links", "events", &id]).await;
        assert!(events.contains("payment_link.created") && events.contains("payment_link.cancelled"), "{events}");
        let listed = json_of(&["events", "list", "--payment-link", &id]).await;
        let event_id = listed["data"][0]["id"].as_str().unwrap().to_owned();
        assert_eq!(json_of(&["events", "get", &event_id]).await["id"], event_id.as_str());

        let endpoint = json_of(&["webhook-endpoints", "create", "--url", "http://127.0.0.1:9/hook", "--events", "payment_link.cancelled,payment_link.paid"]).await;
        let endpoint_id = endpoint["id"].as_str().unwrap().to_owned();
        assert!(endpoint["secret"].as_str().unwrap().starts_with("whsec_"));
        assert!(ok(&["webhook-endpoints", "list"]).await.contains(&endpoint_id));
        assert_eq!(json_of(&["webhook-endpoints", "update", &endpoint_id, "--enabled", "false"]).await["enabled"], false);
        assert!(json_of(&["webhook-endpoints", "rotate-secret", &endpoint_id]).await["secret"].is_string());
        failed(&["events", "resend", &event_id, "--endpoint", &endpoint_id]).await;
        assert_eq!(json_of(&["webhook-endpoints", "delete", &endpoint_id]).await["deleted"], true);

        // API errors: the envelope's code and message, a non-zero exit.
        let said = failed(&["links", "refund", &id]).await;
        assert!(said.contains("invalid_state (409)"), "{said}");
        let said = failed(&["links", "create", "--amount", "0", "--currency", "USD"]).await;
        assert!(said.contains("invalid_request (400)") && said.contains("[param: amount]"), "{said}");
        let keyless = tokio::process::Command::new(env!("CARGO_BIN_EXE_paylink"))
            .args(["links", "list"])
            .env("PAYLINK_API_URL", &app.base)
            .env_remove("PAYLINK_API_KEY")
            .output()
            .await
            .unwrap();
        assert!(!keyless.status.success());
        assert!(String::from_utf8_lossy(&keyless.stderr).contains("PAYLINK_API_KEY"));
    }

    /// A leaked key is stopped without suspending the account: list the
    /// keys, roll the leaked one with a grace period, revoke it at once.
    async fn keys_are_listed_rolled_and_revoked_without_touching_the_account() {
        let app = TestApp::spawn().await;
        let leaked = last_line(&paylink(&["keys", "create", "--account", "shop", "--mode", "test"], &app.database_url));
        let list = || {
            String::from_utf8(paylink(&["keys", "list", "--account", "shop"], &app.database_url).stdout).unwrap()
        };
        let rows = list();
        let lines: Vec<&str> = rows.lines().collect();
        assert_eq!(lines.len(), 2, "{rows}");
        assert!(lines[0].starts_with("ID") && lines[0].contains("LAST USED"), "{rows}");
        let leaked_id = lines[1].split_whitespace().next().unwrap().to_owned();
        assert!(lines[1].contains(&leaked[..12]) && lines[1].contains(" test ") && lines[1].ends_with("active"), "{rows}");
        assert!(!rows.contains(&leaked), "never the secret");

        let status = |key: String| {
            let app = &app;
            async move { app.request(Method::GET, "/v1/payment-links", Some(&key), None).await }
        };
        assert_eq!(status(leaked.clone()).await.status, StatusCode::OK);
        // Its last use shows (written off the request's path).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let row = list();
            let row = row.lines().nth(1).unwrap().to_owned();
            let used = row.split_whitespace().nth(5).unwrap().to_owned();
            if used != "-" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "last use never recorded: {row}");
            // Yields to the runtime, where the server's tasks run.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }

        // Rolled with a grace period: both work until it ends.
        let rolled = paylink(&["keys", "roll", &leaked_id, "--expires-in", "1h"], &app.database_url);
        let replacement = last_line(&rolled);
        assert!(replacement.starts_with("pl_test_") && replacement != leaked);
        assert_eq!(status(leaked.clone()).await.status, StatusCode::OK, "within its grace period");
        assert_eq!(status(replacement.clone()).await.status, StatusCode::OK);
        assert!(list().lines().nth(1).unwrap().contains("expires "), "{}", list());

        // Revoked: refused within a second on every node; the account is not.
        assert!(paylink(&["keys", "revoke", &leaked_id], &app.database_url).status.success());
        past_the_key_cache().await;
        let refused = status(leaked.clone()).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert!(refused.body["error"]["message"].as_str().unwrap().contains("revoked"), "{}", refused.body);
        assert_eq!(status(replacement.clone()).await.status, StatusCode::OK);
        assert_eq!(app.get("/v1/payment-links").await.status, StatusCode::OK, "other keys work");
        assert!(list().lines().nth(1).unwrap().contains("revoked "), "{}", list());

        // Rolled with no grace: the old key stops within a second.
        let replacement_id = list().lines().nth(2).unwrap().split_whitespace().next().unwrap().to_owned();
        let third = last_line(&paylink(&["keys", "roll", &replacement_id], &app.database_url));
        past_the_key_cache().await;
        assert_eq!(status(replacement).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(status(third).await.status, StatusCode::OK);

        for bad in [vec!["keys", "revoke", "key_nosuchkey"], vec!["keys", "roll", &leaked_id], vec!["keys", "roll", &replacement_id, "--expires-in", "soon"]] {
            assert!(!paylink(&bad, &app.database_url).status.success(), "{bad:?}");
        }
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

backend_tests! {
    async fn set_processor_seals_stripe_keys_and_refuses_without_a_secrets_key() {
        let app = TestApp::spawn().await;
        let stripe = [
            "accounts", "set-processor", "default", "--mode", "live", "--processor", "stripe",
            "--secret-key", "sk_live_abc", "--publishable-key", "pk_live_abc",
            "--webhook-secret", "whsec_abc", "--public-url", "https://pay.example.com/",
        ];
        // No PAYLINK_SECRETS_KEY: refused, saying how to make one.
        let refused = paylink(&stripe, &app.database_url);
        assert!(!refused.status.success());
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains("PAYLINK_SECRETS_KEY") && said.contains("openssl rand -base64 32"), "{said}");

        let with_key = Command::new(env!("CARGO_BIN_EXE_paylink"))
            .args(stripe)
            .env("PAYLINK_DATABASE_URL", &app.database_url)
            .env("PAYLINK_SECRETS_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
            .output()
            .unwrap();
        assert_eq!(last_line(&with_key), "https://pay.example.com/processors/stripe/default/webhook");
        let caller = app.service.authenticate(&app.key).await.unwrap();
        let stored = app.store
            .processor_account(&caller.scope.account_id, true)
            .await
            .unwrap()
            .expect("a live processor");
        assert_eq!(stored.processor, "stripe");
        assert!(!stored.sealed_config.contains("sk_live_abc"), "the secret key is sealed");

        // Keys of the wrong mode, and the test processor in live mode, are refused.
        let mut wrong_mode = stripe;
        wrong_mode[8] = "sk_test_abc";
        let output = paylink(&wrong_mode, &app.database_url);
        assert!(!output.status.success());
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(said.contains("must be live keys for live mode"), "{said}");
        let live_test = paylink(&["accounts", "set-processor", "default", "--mode", "live", "--processor", "test"], &app.database_url);
        assert!(!live_test.status.success());
        assert!(String::from_utf8_lossy(&live_test.stderr).contains("test-mode payments only"));
        // Back to the built-in processor in test mode.
        let back = paylink(&["accounts", "set-processor", "default", "--mode", "test", "--processor", "test"], &app.database_url);
        assert!(back.status.success(), "{}", String::from_utf8_lossy(&back.stderr));
        assert!(app.store.processor_account(&caller.scope.account_id, false).await.unwrap().is_none());
    }
}

/// Runs `paylink serve` with `args` and gives it `within` to exit on its
/// own; a server still running then is killed and reported as `None`.
fn serve_expecting_exit(
    args: &[&str],
    within: std::time::Duration,
) -> Option<std::process::Output> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_paylink"))
        .arg("serve")
        .args(args)
        .env("PAYLINK_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run paylink serve");
    let deadline = std::time::Instant::now() + within;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Some(child.wait_with_output().unwrap())
}

/// A typo in the database path is not a new, empty shop: `serve` refuses
/// a SQLite file whose directory does not exist, and creates nothing.
#[tokio::test]
async fn serve_refuses_a_sqlite_path_whose_directory_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir");
    let url = format!("sqlite://{}", missing.join("x.db").display());
    let output = serve_expecting_exit(
        &["--addr", "127.0.0.1:0", "--database-url", &url],
        std::time::Duration::from_secs(20),
    )
    .expect("serve exits instead of serving a new database");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(stderr.contains("no/such/dir"), "{stderr}");
    assert!(
        output.stdout.is_empty(),
        "no key minted: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(!dir.path().join("no").exists(), "nothing created");
}

/// `serve` on a port already taken fails before it mints anything: no
/// account, no key "shown only this once" for a server that never ran.
#[tokio::test]
async fn serve_on_a_busy_port_exits_before_creating_an_account_or_a_key() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("shop.db").display());
    let output = serve_expecting_exit(
        &["--addr", &addr, "--database-url", &url],
        std::time::Duration::from_secs(20),
    )
    .expect("serve exits on a busy port");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("binding {addr}")), "{stderr}");
    assert!(
        output.stdout.is_empty(),
        "no key minted: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(
        !dir.path().join("shop.db").exists(),
        "no database, no account"
    );
    drop(busy);
}

/// SQLite's online backup while a server keeps writing: the copy is one
/// committed state (every link with its creation event), holds at least
/// what was written before it began, and a server restored from it (the
/// README's steps: stop, put the copy in place, start) serves those links.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_copies_a_serving_sqlite_database_and_a_restore_serves_it() {
    use crate::common::Server;
    let dir = tempfile::tempdir().unwrap();
    let live = format!("sqlite://{}", dir.path().join("live.db").display());
    let (mut server, key) = Server::launch(live.clone()).await;
    let base = format!("http://{}", server.addr);
    let client = reqwest::Client::new();
    let create = |amount: i64| {
        let (client, base, key) = (client.clone(), base.clone(), key.clone());
        async move {
            let answer = client
                .post(format!("{base}/v1/payment-links"))
                .bearer_auth(&key)
                .json(&json!({"amount": amount, "currency": "EUR"}))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), StatusCode::CREATED);
            answer.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let mut before = Vec::new();
    for amount in 1..=50 {
        before.push(create(amount).await);
    }
    // Writers keep going while the copy is taken.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn({
        let stop = stop.clone();
        let create = {
            let (client, base, key) = (client.clone(), base.clone(), key.clone());
            move |amount: i64| {
                let (client, base, key) = (client.clone(), base.clone(), key.clone());
                async move {
                    let answer = client
                        .post(format!("{base}/v1/payment-links"))
                        .bearer_auth(&key)
                        .json(&json!({"amount": amount, "currency": "EUR"}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(answer.status(), StatusCode::CREATED);
                }
            }
        };
        async move {
            let mut written = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                create(1000 + written).await;
                written += 1;
            }
            written
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let copy = dir.path().join("copy.db");
    let backup = {
        let (live, copy) = (live.clone(), copy.clone());
        tokio::task::spawn_blocking(move || paylink(&["backup", copy.to_str().unwrap()], &live))
    };
    let backup = tokio::time::timeout(std::time::Duration::from_secs(60), backup)
        .await
        .expect("backup finishes")
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written_during = writer.await.unwrap();
    assert!(
        backup.status.success(),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    assert!(written_during > 0, "the server kept writing");

    // One committed state: every link has its creation event.
    let db = rusqlite::Connection::open(&copy).unwrap();
    let links: i64 = db
        .query_row("select count(*) from payment_links", [], |r| r.get(0))
        .unwrap();
    let created: i64 = db
        .query_row(
            "select count(*) from events where type = 'payment_link.created'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(links, created);
    assert!(links >= 50, "everything written before the backup: {links}");
    let check: String = db
        .query_row("pragma integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(db);

    // A second backup to the same file is refused, not overwritten.
    assert!(
        !paylink(&["backup", copy.to_str().unwrap()], &live)
            .status
            .success()
    );

    // Restore: stop the server, put the copy in the database's place, start.
    server.kill().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("live.db{suffix}")));
    }
    std::fs::copy(&copy, dir.path().join("live.db")).unwrap();
    server.start().await;
    for id in [&before[0], &before[49]] {
        let answer = client
            .get(format!("{base}/v1/payment-links/{id}"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{id} after the restore");
    }
    server.kill().await;

    // PostgreSQL is pg_dump's: the command says so.
    let refused = paylink(
        &["backup", dir.path().join("pg.db").to_str().unwrap()],
        "postgres://postgres@127.0.0.1:5432/postgres",
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("pg_dump"));
}

/// `contrib/paylink.service` is a unit systemd accepts (`systemd-analyze
/// verify`, with this build's binary in place of the installed path),
/// where systemd-analyze is installed.
#[test]
fn the_systemd_unit_verifies() {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIPPED: systemd-analyze is not installed");
        return;
    };
    assert!(probe.status.success());
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/paylink.service"
    ))
    .unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/paylink serve"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paylink.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/paylink", env!("CARGO_BIN_EXE_paylink")),
    )
    .unwrap();
    let verified = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        verified.status.success() && verified.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
}

/// What an operator reads: `PAYLINK_LOG_FORMAT=json` gives one JSON object
/// per line; each request has an access line at `info` with the id the
/// client got in `X-Request-Id`, the method, the matched route, the status,
/// the latency and the account (never the key); a failed webhook attempt is
/// a warning naming its event and endpoint; allowing private webhook
/// targets (`yes` reads as true) is warned about at start-up.
#[tokio::test]
async fn json_logs_carry_an_access_line_per_request_and_failed_webhooks() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("logs.db").display());
    let key = last_line(&paylink(
        &["keys", "create", "--account", "shop", "--mode", "test"],
        &url,
    ));
    let log_path = dir.path().join("server.log");
    let mut server = Command::new(env!("CARGO_BIN_EXE_paylink"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("PAYLINK_DATABASE_URL", &url)
        .env("PAYLINK_LOG", "info")
        .env("PAYLINK_LOG_FORMAT", "json")
        .env("PAYLINK_WEBHOOK_ALLOW_PRIVATE", "yes")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let lines = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
            .collect()
    };
    let mut base = None;
    for _ in 0..200 {
        if let Some(line) = lines()
            .into_iter()
            .find(|l| l["fields"]["message"] == "paylink listening")
        {
            base = Some(format!(
                "http://{}",
                line["fields"]["addr"].as_str().unwrap()
            ));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let base = base.expect("the server logs its address");
    let warned = lines();
    assert!(
        warned.iter().any(|l| l["level"] == "WARN"
            && l["fields"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("private")),
        "allowing private webhook targets is warned about"
    );

    let client = reqwest::Client::new();
    let endpoint = client
        .post(format!("{base}/v1/webhook-endpoints"))
        .bearer_auth(&key)
        .json(&json!({"url": "http://127.0.0.1:9/hook", "events": ["payment_link.cancelled"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(endpoint.status(), StatusCode::CREATED);
    let endpoint_id = endpoint.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = client
        .post(format!("{base}/v1/payment-links"))
        .bearer_auth(&key)
        .json(&json!({"amount": 100, "currency": "USD"}))
        .send()
        .await
        .unwrap();
    let link: serde_json::Value = created.json().await.unwrap();
    let id = link["id"].as_str().unwrap();
    let account = link["account_id"].as_str().map(str::to_owned);
    let got = client
        .get(format!("{base}/v1/payment-links/{id}"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let request_id = got.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(got.status(), StatusCode::OK);
    let cancelled = client
        .post(format!("{base}/v1/payment-links/{id}/cancel"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), StatusCode::OK);

    // The failed delivery (nothing listens on port 9) is a warning.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let failed = loop {
        if let Some(line) = lines()
            .into_iter()
            .find(|l| l["fields"]["message"] == "webhook attempt failed")
        {
            break line;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no warning for the failed webhook attempt"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(failed["level"], "WARN");
    assert_eq!(failed["fields"]["endpoint"], endpoint_id.as_str());
    assert!(
        failed["fields"]["event"]
            .as_str()
            .unwrap()
            .starts_with("evt_")
    );
    assert!(failed["fields"]["error"].is_string());

    assert!(
        Command::new("kill")
            .arg(server.id().to_string())
            .status()
            .unwrap()
            .success()
    );
    assert!(server.wait().unwrap().success());
    let all = lines();
    let access = all
        .iter()
        .find(|l| {
            l["span"]["request_id"] == request_id.as_str() && l["fields"]["message"] == "request"
        })
        .unwrap_or_else(|| panic!("an access line for {request_id}"));
    assert_eq!(access["level"], "INFO");
    assert_eq!(access["span"]["method"], "GET");
    assert_eq!(
        access["span"]["route"], "/v1/payment-links/{id}",
        "the route, not the path"
    );
    assert_eq!(access["fields"]["status"], 200);
    assert!(access["fields"]["latency_ms"].as_f64().unwrap() >= 0.0);
    let account_id = access["span"]["account"].as_str().expect("the account");
    assert!(account_id.starts_with("acct_"), "{account_id}");
    if let Some(account) = account {
        assert_eq!(account_id, account);
    }
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(!text.contains(&key["pl_test_".len()..]), "never a key");
    let requests = all
        .iter()
        .filter(|l| l["fields"]["message"] == "request")
        .count();
    assert!(requests >= 4, "one access line per request: {requests}");
}
