//! What the process-level tests share: a real `paylink serve` child that
//! they start, kill with SIGKILL and restart on one database.

#![allow(dead_code)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

pub mod localstripe;

/// The reconcile age the child servers run with.
pub const RECONCILE_AFTER_SECS: u64 = 2;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A raw HTTP/1.1 POST, for clients that hang up before the answer.
pub fn post_request(
    path: &str,
    headers: &[(&str, &str)],
    content_type: &str,
    body: &str,
) -> Vec<u8> {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: paylink\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.push_str(body);
    head.into_bytes()
}

/// Sends `request` to `addr`, waits `after`, and resets the connection
/// (no answer read): a client that hangs up mid-request.
pub async fn send_and_hang_up(addr: &str, request: &[u8], after: Duration) {
    if let Ok(Ok(mut stream)) =
        tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await
    {
        let _ = stream.set_zero_linger();
        let _ = stream.write_all(request).await;
        tokio::time::sleep(after).await;
    }
}

pub struct Server {
    pub child: Option<Child>,
    pub addr: String,
    pub database_url: String,
    /// Extra environment for `serve` (processor endpoints, secrets key).
    pub env: Vec<(String, String)>,
}

impl Server {
    /// A key of a new account, then a server started on `database_url`.
    pub async fn launch(database_url: String) -> (Self, String) {
        let key = create_key(&database_url).await;
        let mut server = Server {
            child: None,
            addr: format!("127.0.0.1:{}", free_port()),
            database_url,
            env: Vec::new(),
        };
        server.start().await;
        (server, key)
    }

    /// This build's binary, or `PAYLINK_TEST_BINARY` (to hold another
    /// build, an older one say, to the same checks).
    pub fn binary() -> String {
        std::env::var("PAYLINK_TEST_BINARY")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_paylink").to_owned())
    }

    pub async fn start(&mut self) {
        let child = Command::new(Self::binary())
            .args([
                "serve",
                "--addr",
                &self.addr,
                "--database-url",
                &self.database_url,
            ])
            .env("PAYLINK_RATE_LIMIT_PER_SECOND", "1000000")
            .env("PAYLINK_RATE_LIMIT_BURST", "1000000")
            .env("PAYLINK_CHECKOUT_LINK_PAYMENTS_PER_MINUTE", "1000000")
            .env("PAYLINK_CHECKOUT_LINK_PAYMENTS_BURST", "1000000")
            .env("PAYLINK_CHECKOUT_ADDRESS_PAYMENTS_PER_MINUTE", "1000000")
            .env("PAYLINK_CHECKOUT_ADDRESS_PAYMENTS_BURST", "1000000")
            .env(
                "PAYLINK_RECONCILE_AFTER_SECS",
                RECONCILE_AFTER_SECS.to_string(),
            )
            .env("PAYLINK_LOG", "error")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start paylink serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        loop {
            let answer = client
                .get(format!("http://{}/readyz", self.addr))
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if answer.as_ref().is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "paylink was not ready within 30 s: {:?}",
                answer.map(|r| r.status())
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        }
    }
}

pub async fn create_key(database_url: &str) -> String {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(Server::binary())
            .args([
                "keys",
                "create",
                "--account",
                "chaos",
                "--mode",
                "test",
                "--database-url",
                database_url,
            ])
            .stderr(Stdio::null())
            .output(),
    )
    .await
    .expect("keys create finished")
    .expect("keys create ran");
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .last()
        .expect("a key")
        .trim()
        .to_owned()
}
