//! Idle and slow clients cannot starve the server: a real `paylink serve`
//! started with the soft open-files limit most systems give a service
//! (1024), 1,100 idle connections held against it, and a normal request
//! must still be answered in under a second; a silent connection is closed
//! after the header-read timeout, and a kept-alive one is not.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

mod common;

use common::free_port;

async fn start(addr: &str, database_url: &str) -> Child {
    // `ulimit -Sn 1024`: the soft limit systemd and most shells start with.
    // `PAYLINK_TEST_BINARY` holds another build (an older one, say) to the same check.
    let binary = std::env::var("PAYLINK_TEST_BINARY")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_paylink").to_owned());
    let script = format!(
        "ulimit -Sn 1024 && exec '{binary}' serve --addr {addr} --database-url '{database_url}'"
    );
    let child = Command::new("sh")
        .args(["-c", &script])
        .env("PAYLINK_LOG", "error")
        .env("PAYLINK_HEADER_READ_TIMEOUT_SECS", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start paylink");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("http://{addr}/healthz"))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "paylink did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}

#[tokio::test]
async fn a_request_is_answered_while_1100_idle_connections_are_held() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("paylink.db").display());
    let addr = format!("127.0.0.1:{}", free_port());
    let mut server = start(&addr, &database_url).await;

    let mut idle = Vec::new();
    for _ in 0..1100 {
        match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(&addr)).await {
            Ok(Ok(stream)) => idle.push(stream),
            _ => break,
        }
    }
    assert_eq!(idle.len(), 1100, "idle connections accepted by the kernel");
    let started = Instant::now();
    let answer = reqwest::Client::new()
        .get(format!("http://{addr}/readyz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("answered while 1,100 connections are idle");
    let took = started.elapsed();
    assert!(answer.status().is_success());
    assert!(took < Duration::from_secs(1), "took {took:?}");

    // A client that never sends its request head is cut after the
    // header-read timeout (2 s here), freeing its descriptor.
    let mut silent = idle.pop().unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf))
        .await
        .expect("the silent connection was closed within the timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    drop(idle);

    // A kept-alive connection quiet for longer than the header timeout
    // (but less than the idle timeout) still takes its next request.
    let mut kept = TcpStream::connect(&addr).await.unwrap();
    for round in 0..2 {
        kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: paylink\r\n\r\n")
            .await
            .unwrap();
        let mut answer = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), kept.read(&mut answer))
            .await
            .expect("an answer")
            .unwrap();
        let text = String::from_utf8_lossy(&answer[..n]);
        assert!(text.starts_with("HTTP/1.1 200"), "round {round}: {text}");
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    // Half a head, then nothing (slowloris): cut at the header timeout.
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: pay")
        .await
        .unwrap();
    let started = Instant::now();
    let mut rest = [0u8; 64];
    let cut = tokio::time::timeout(Duration::from_secs(10), kept.read(&mut rest))
        .await
        .expect("a stalled head is cut");
    assert!(matches!(cut, Ok(0) | Err(_)), "{cut:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let _ = server.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(10), server.wait()).await;
}
