//! Latency at a fixed request rate (open loop): wrk measures the peak by
//! sending as fast as answers come back, which says nothing of latency at
//! a sustainable rate. Here each of `CONNECTIONS` keep-alive connections
//! sends on a fixed schedule, and a request's latency counts from when it
//! was due, not when it went out, so a slow answer that delays the next
//! request is charged to the server (no coordinated omission).

use std::time::{Duration, Instant};

use hyper::Request;
use hyper_util::rt::TokioIo;

use crate::baseline::CREATE_BODY;
use crate::load::Target;
use crate::seed::link_id;

const CONNECTIONS: u64 = 32;

#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Sends `rate` requests a second for `duration` to `addr`.
pub async fn run(addr: &str, key: &str, target: &Target, rate: f64, duration: Duration) -> Latency {
    let start = Instant::now() + Duration::from_millis(50);
    let per_connection = rate / CONNECTIONS as f64;
    let interval = Duration::from_secs_f64(1.0 / per_connection);
    let count = (per_connection * duration.as_secs_f64()) as u64;
    let mut tasks = Vec::new();
    for connection in 0..CONNECTIONS {
        let addr = addr.to_owned();
        let key = key.to_owned();
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            stream.set_nodelay(true).unwrap();
            let (mut sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(driver);
            // Connections start staggered across one interval.
            let offset = interval.mul_f64(connection as f64 / CONNECTIONS as f64);
            let mut random = 0x9E37_79B9_7F4A_7C15u64 ^ (connection + 1);
            let mut latencies = Vec::with_capacity(count as usize);
            for k in 0..count {
                let due = start + offset + interval * k as u32;
                tokio::time::sleep_until(due.into()).await;
                let request = match &target {
                    Target::Retrieve { links } => {
                        random ^= random << 13;
                        random ^= random >> 7;
                        random ^= random << 17;
                        get(
                            &format!("/v1/payment-links/{}", link_id(1 + random % links)),
                            &key,
                        )
                    }
                    Target::Create => post("/v1/payment-links", CREATE_BODY, &key),
                    Target::Cancel { first, .. } => post(
                        &format!(
                            "/v1/payment-links/{}/cancel",
                            link_id(first + connection + k * CONNECTIONS)
                        ),
                        "{}",
                        &key,
                    ),
                };
                let response = sender.send_request(request).await.expect("send");
                assert!(
                    response.status().is_success(),
                    "status {}",
                    response.status()
                );
                let _ = http_body_util::BodyExt::collect(response.into_body()).await;
                latencies.push(due.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("a paced connection failed"));
    }
    all.sort();
    let at =
        |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)].as_secs_f64() * 1000.0;
    Latency {
        rate,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
    }
}

fn get(path: &str, key: &str) -> Request<String> {
    Request::get(path)
        .header("host", "bench")
        .header("authorization", format!("Bearer {key}"))
        .body(String::new())
        .unwrap()
}

fn post(path: &str, body: &str, key: &str) -> Request<String> {
    Request::post(path)
        .header("host", "bench")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .unwrap()
}
