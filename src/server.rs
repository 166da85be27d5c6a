//! Running the service: HTTP on a listener, the expiry sweeper, the
//! payment reconciler and the webhook dispatcher, all stopped by one
//! shutdown signal. Tests start it on port 0 the same way `paylink serve`
//! does.
//!
//! Start-up finishes what a crash of the previous run left (abandoned
//! idempotency claims, stale payment attempts) before the listener
//! answers; the reconciler then keeps doing so every few seconds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::{self, AppSettings};
use crate::checkout::csrf::CsrfKey;
use crate::checkout::limits::{CheckoutLimitSettings, CheckoutLimits};
use crate::connections::{self, ConnectionSettings};
use crate::service::Service;
use crate::web::rate_limit::{RateLimitSettings, RateLimits};
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
    pub connections: ConnectionSettings,
    pub checkout_limits: CheckoutLimitSettings,
    /// How often the reconciler looks for stale payment attempts.
    pub reconcile_interval: Duration,
    /// A payment attempt still pending this long after it started is
    /// settled by asking its processor.
    pub reconcile_after: Duration,
    /// Finished webhook deliveries and their attempts are purged this long
    /// after they finished (events are kept).
    pub delivery_retention: SignedDuration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            public_url: None,
            sweep_interval: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            rate_limits: RateLimitSettings::default(),
            webhooks: DispatcherSettings::default(),
            connections: ConnectionSettings::default(),
            checkout_limits: CheckoutLimitSettings::default(),
            reconcile_interval: Duration::from_secs(5),
            reconcile_after: Duration::from_secs(60),
            delivery_retention: SignedDuration::from_hours(30 * 24),
        }
    }
}

pub struct RunningServer {
    pub addr: SocketAddr,
    pub public_url: String,
    shutdown: CancellationToken,
    http: JoinHandle<()>,
    sweeper: JoinHandle<()>,
    reconciler: JoinHandle<()>,
    dispatcher: JoinHandle<()>,
    tasks: TaskTracker,
}

/// Serves on `listener` until [`RunningServer::shutdown`] (or a signal, via
/// [`RunningServer::run_until_signal`]).
pub async fn start(
    listener: TcpListener,
    service: Arc<Service>,
    options: ServerOptions,
) -> anyhow::Result<RunningServer> {
    let addr = listener.local_addr()?;
    let reconcile_after = SignedDuration::try_from(options.reconcile_after)?;
    // What the previous run left unfinished, before anything is answered.
    service.recover_after_start().await?;
    if let Err(error) = service.reconcile_payments(reconcile_after).await {
        tracing::warn!(%error, "reconciling payments at start-up failed; the reconciler retries");
    }
    if let Err(error) = service.reconcile_refunds(reconcile_after).await {
        tracing::warn!(%error, "reconciling refunds at start-up failed; the reconciler retries");
    }
    // Metrics from the first request on.
    crate::telemetry::install();
    let tasks = TaskTracker::new();
    let csrf = CsrfKey::new(service.checkout_csrf_key().await?.as_bytes())?;
    let checkout_limits = Arc::new(CheckoutLimits::new(options.checkout_limits));
    let public_url = options
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"))
        .trim_end_matches('/')
        .to_owned();
    let limits = Arc::new(RateLimits::new(options.rate_limits));
    let app = app::build(
        Arc::clone(&service),
        &public_url,
        AppSettings {
            request_timeout: options.request_timeout,
            limits: Arc::clone(&limits),
            tasks: tasks.clone(),
            csrf,
            checkout_limits: Arc::clone(&checkout_limits),
        },
    );
    let transport = Arc::new(HttpTransport::new(
        service.settings().webhook_allow_private,
    )?);
    let dispatcher = Dispatcher::new(
        Arc::clone(&service),
        transport,
        Arc::new(crate::app::payloads::Payloads {
            public_url: public_url.clone(),
        }),
        options.webhooks.clone(),
    );
    let shutdown = CancellationToken::new();
    let dispatcher = tokio::spawn(dispatcher.run(shutdown.clone()));
    let http = tokio::spawn(connections::serve(
        listener,
        app,
        options.connections.clone(),
        shutdown.clone(),
    ));
    let reconciler = tokio::spawn(run_reconciler(
        Arc::clone(&service),
        options.reconcile_interval,
        reconcile_after,
        shutdown.clone(),
    ));
    let sweeper = tokio::spawn(run_sweeper(
        service,
        limits,
        checkout_limits,
        (options.sweep_interval, options.delivery_retention),
        shutdown.clone(),
    ));
    Ok(RunningServer {
        addr,
        public_url,
        shutdown,
        http,
        sweeper,
        reconciler,
        dispatcher,
        tasks,
    })
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests and webhook attempts
    /// finish, stops the sweeper.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.http.await?;
        // Writes whose clients left run on; wait for them (each is bounded
        // by the store's and the processor's own timeouts).
        self.tasks.close();
        self.tasks.wait().await;
        self.sweeper.await?;
        self.reconciler.await?;
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
/// past their 24 hours and rate-limit buckets that are full again, folds
/// the metrics' gathered samples into their histograms.
async fn run_sweeper(
    service: Arc<Service>,
    limits: Arc<RateLimits>,
    checkout_limits: Arc<CheckoutLimits>,
    (interval, delivery_retention): (Duration, SignedDuration),
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        limits.forget_idle();
        checkout_limits.forget_idle();
        crate::telemetry::upkeep();
        if let Err(error) = service.purge_expired_idempotency_keys().await {
            tracing::warn!(%error, "purging idempotency keys failed; retrying next interval");
        }
        match service.purge_old_deliveries(delivery_retention).await {
            Ok(0) => {}
            Ok(purged) => {
                tracing::info!(purged, "purged finished webhook deliveries past retention")
            }
            Err(error) => {
                tracing::warn!(%error, "purging old deliveries failed; retrying next interval");
            }
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

/// Every `interval`, settles payment attempts and refunds pending longer
/// than `older_than`, so no link stays `processing` past that age and no
/// reserved refund is left unmade.
async fn run_reconciler(
    service: Arc<Service>,
    interval: Duration,
    older_than: SignedDuration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        match service.reconcile_payments(older_than).await {
            Ok(0) => {}
            Ok(settled) => tracing::info!(settled, "reconciler settled stale payment attempts"),
            Err(error) => {
                tracing::warn!(%error, "reconciling payments failed; retrying next interval");
            }
        }
        // Refunds reserved but not answered (a crash, a processor outage).
        match service.reconcile_refunds(older_than).await {
            Ok(0) => {}
            Ok(settled) => tracing::info!(settled, "reconciler settled stale refunds"),
            Err(error) => {
                tracing::warn!(%error, "reconciling refunds failed; retrying next interval");
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
