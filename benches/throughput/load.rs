//! Load through wrk (Debian's `wrk`): one run per path, 2 threads and 64
//! connections, scripted in Lua so every request targets a seeded link
//! (a random one for reads, each one once for cancels). wrk is written in
//! C and costs far less CPU per request than a generator written here,
//! which matters when it shares two cores with the server it measures.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::baseline::CREATE_BODY;

pub const THREADS: u32 = 2;
pub const CONNECTIONS: u32 = 64;

/// What one wrk run measured.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub rate: f64,
    pub requests: u64,
    pub p99_ms: f64,
}

/// The request one run sends.
#[derive(Clone)]
pub enum Target {
    Retrieve {
        links: u64,
    },
    Create,
    /// Links from `first` on, each cancelled once (one that runs past the
    /// seeded links gets 404s, which fail the run).
    Cancel {
        first: u64,
    },
}

const SCRIPT: &str = r#"
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
function init(args)
  mode = args[1]
  key = args[2]
  first = tonumber(args[3])
  last = tonumber(args[4])
  body = args[5]
  nthreads = tonumber(args[6])
  math.randomseed(os.time() * 100 + tid)
  nexti = first + tid
  headers = { ["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json" }
end
function request()
  if mode == "retrieve" then
    return wrk.format("GET", string.format("/v1/payment-links/plink_B%023d", math.random(first, last)), headers)
  elseif mode == "create" then
    return wrk.format("POST", "/v1/payment-links", headers, body)
  else
    local i = nexti
    nexti = nexti + nthreads
    return wrk.format("POST", string.format("/v1/payment-links/plink_B%023d/cancel", i), headers, "{}")
  end
end
"#;

/// Runs wrk for `duration` against `base` (`http://IP:PORT`).
pub fn wrk(base: &str, key: &str, path: &Target, duration: Duration, scratch: &Path) -> Run {
    let script = scratch.join("bench.lua");
    std::fs::write(&script, SCRIPT).expect("write the wrk script");
    let (mode, first, last) = match path {
        Target::Retrieve { links } => ("retrieve", 1, *links),
        Target::Create => ("create", 0, 0),
        Target::Cancel { first } => ("cancel", *first, 0),
    };
    let output = Command::new("timeout")
        .arg(format!("{}", duration.as_secs() + 30))
        .arg("wrk")
        .args(["-t", &THREADS.to_string(), "-c", &CONNECTIONS.to_string()])
        .arg(format!("-d{}s", duration.as_secs()))
        .arg("--latency")
        .arg("-s")
        .arg(&script)
        .arg(base)
        .arg("--")
        .args([
            mode,
            key,
            &first.to_string(),
            &last.to_string(),
            CREATE_BODY,
        ])
        .arg(THREADS.to_string())
        .output()
        .expect("run wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    if let Some(line) = text.lines().find(|l| l.contains("Non-2xx")) {
        panic!("{mode} answered errors during the run ({line}):\n{text}");
    }
    if text.contains("Socket errors") {
        eprintln!(
            "note: {mode}: {}",
            text.lines().find(|l| l.contains("Socket errors")).unwrap()
        );
    }
    let rate = field(&text, "Requests/sec:").expect("wrk's Requests/sec");
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("wrk's request count");
    let p99_ms = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("99%"))
        .and_then(|l| l.split_whitespace().nth(1))
        .map(milliseconds)
        .expect("wrk's 99th percentile");
    Run {
        rate,
        requests,
        p99_ms,
    }
}

fn field(text: &str, label: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|v| v.trim().parse().ok())
}

/// wrk prints latencies as `812.00us`, `3.21ms` or `1.02s`.
fn milliseconds(text: &str) -> f64 {
    let split = text.find(|c: char| c.is_alphabetic()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        "m" => value * 60_000.0,
        _ => f64::NAN,
    }
}
