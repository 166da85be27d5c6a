//! Running the service: HTTP on a listener, the expiry sweeper and the
//! webhook dispatcher, all stopped by one shutdown signal. Tests start it on port 0 the same way
//! `paylink serve` does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::http::rate_limit::{RateLimitSettings, RateLimits};
use crate::http::{self, HttpSettings};
use crate::service::Service;
use crate::webhooks::dispatcher::{Dispatcher, DispatcherSettings};
use crate::webhooks::transport::HttpTransport;

/// Links the sweeper expires per round trip to the store.
const SWEEP_BATCH: usize = 500;

#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Base of hosted page URLs; `None` means `http://{bound address}`.
    pub public_url: Option<String>,
    pub sweep_interval: Duration,
    pub request_timeout: Duration,
    pub rate_limits: RateLimitSettings,
    pub webhooks: DispatcherSettings,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            public_url: None,
            sweep_interval: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            rate_limits: RateLimitSettings::default(),
            webhooks: DispatcherSettings::default(),
        }
    }
}

pub struct RunningServer {
    pub addr: SocketAddr,
    pub public_url: String,
    shutdown: CancellationToken,
    http: JoinHandle<std::io::Result<()>>,
    sweeper: JoinHandle<()>,
    dispatcher: JoinHandle<()>,
}

/// Serves on `listener` until [`RunningServer::shutdown`] (or a signal, via
/// [`RunningServer::run_until_signal`]).
pub async fn start(
    listener: TcpListener,
    service: Arc<Service>,
    options: ServerOptions,
) -> anyhow::Result<RunningServer> {
    let addr = listener.local_addr()?;
    let public_url = options
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"))
        .trim_end_matches('/')
        .to_owned();
    let limits = Arc::new(RateLimits::new(options.rate_limits));
    let app = http::app(
        Arc::clone(&service),
        &public_url,
        HttpSettings {
            request_timeout: options.request_timeout,
            limits: Arc::clone(&limits),
        },
    );
    let transport = Arc::new(HttpTransport::new(
        service.settings().webhook_allow_private,
    )?);
    let dispatcher = Dispatcher::new(
        Arc::clone(&service),
        transport,
        &public_url,
        options.webhooks.clone(),
    );
    let shutdown = CancellationToken::new();
    let dispatcher = tokio::spawn(dispatcher.run(shutdown.clone()));
    let http_shutdown = shutdown.clone();
    let http = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
        .await
    });
    let sweeper = tokio::spawn(run_sweeper(
        service,
        limits,
        options.sweep_interval,
        shutdown.clone(),
    ));
    Ok(RunningServer {
        addr,
        public_url,
        shutdown,
        http,
        sweeper,
        dispatcher,
    })
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests and webhook attempts
    /// finish, stops the sweeper.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.http.await??;
        self.sweeper.await?;
        self.dispatcher.await?;
        Ok(())
    }

    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        shutdown_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        self.shutdown().await
    }
}

/// Periodic housekeeping: stores due expiries, forgets idempotency keys
/// past their 24 hours and rate-limit buckets that are full again.
async fn run_sweeper(
    service: Arc<Service>,
    limits: Arc<RateLimits>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        limits.forget_idle();
        if let Err(error) = service.purge_expired_idempotency_keys().await {
            tracing::warn!(%error, "purging idempotency keys failed; retrying next interval");
        }
        // Drain everything due, a batch at a time, unless asked to stop.
        loop {
            match service.expire_due_links(SWEEP_BATCH).await {
                Ok(expired) => {
                    if expired > 0 {
                        tracing::info!(expired, "sweeper stored expired links");
                    }
                    if expired < SWEEP_BATCH || shutdown.is_cancelled() {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "expiry sweep failed; retrying next interval");
                    break;
                }
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
