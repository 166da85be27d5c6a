//! The two servers under load, each a child process killed on drop, and
//! their start-up waits (bounded: a server that never comes up fails the
//! bench instead of hanging it).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Baseline {
    child: Child,
    addr: String,
}

impl Baseline {
    pub fn start() -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("--serve-baseline")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the baseline");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("the baseline's address");
        let addr = line.trim().strip_prefix("addr=").expect("addr=").to_owned();
        Self { child, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Paylink {
    child: Child,
    pub addr: String,
    pub key: String,
    log: std::path::PathBuf,
}

impl Paylink {
    /// `paylink serve` (the release binary cargo built for this bench) on
    /// `database_url`, rate limits out of the way, logging warnings only.
    pub async fn start(database_url: &str, env: &[(&str, &str)]) -> Self {
        // A free port, chosen here: the server logs its address only at
        // `info`, and the bench runs it at `warn`.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .to_string();
        let log = std::env::temp_dir().join(format!("paylink-bench-{}.log", std::process::id()));
        // `PAYLINK_BENCH_BINARY`: another build of paylink (a copy of the
        // parent commit's, say), for alternated runs of two builds.
        let binary = std::env::var_os("PAYLINK_BENCH_BINARY")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_paylink").into());
        let mut child = Command::new(binary)
            .args(["serve", "--addr", &addr, "--database-url", database_url])
            .env("PAYLINK_RATE_LIMIT_PER_SECOND", "100000000")
            .env("PAYLINK_RATE_LIMIT_BURST", "100000000")
            .env("PAYLINK_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start paylink");
        let deadline = Instant::now() + START_TIMEOUT;
        let mut key = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        while key.is_empty() {
            assert!(Instant::now() < deadline, "paylink printed no key");
            let mut line = String::new();
            if stdout.read_line(&mut line).unwrap() == 0 {
                panic!(
                    "paylink exited: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if line.starts_with("pl_test_") {
                key = line.trim().to_owned();
            }
        }
        // The key is printed before the listener answers.
        while tokio::net::TcpStream::connect(&addr).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "paylink never answered on {addr}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            child,
            addr,
            key,
            log,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A link created through the API: the template the seed copies.
    pub async fn create_link(&self) -> String {
        let answer: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/v1/payment-links", self.url()))
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
            .body(crate::baseline::CREATE_BODY)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("create the template link")
            .json()
            .await
            .unwrap();
        answer["id"].as_str().expect("an id").to_owned()
    }

    /// The server's resident set, from /proc.
    pub fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }
}

impl Drop for Paylink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Empties the database at `url` (the bench's own scratch database).
pub async fn empty_postgres(url: &str) {
    let pool = sqlx::PgPool::connect(url)
        .await
        .expect("connect to PAYLINK_BENCH_POSTGRES_URL");
    sqlx::raw_sql("drop schema public cascade; create schema public;")
        .execute(&pool)
        .await
        .expect("empty the bench database");
}
