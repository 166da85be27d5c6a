//! HTTP connections: what a reverse proxy would otherwise protect paylink
//! from. Idle or slow clients must never be able to starve the server, so
//! every connection is bounded three ways:
//!
//! - a cap on concurrent connections (a slot is taken before `accept`, so
//!   past the cap new clients wait in the kernel's backlog instead of
//!   eating file descriptors);
//! - a header-read timeout: a request head must be complete within it,
//!   counted from its first byte (from accept for a connection's first
//!   request), so slowloris clients and silent connections are cut;
//! - an idle keep-alive timeout: a connection with no request in flight
//!   and no head arriving is closed after it. It should exceed the idle
//!   timeout of the proxy in front (nginx and most load balancers use
//!   60 s), or the proxy may send a request into a connection being closed.
//!
//! hyper's own header timer runs from the moment a connection is idle, so
//! it cannot tell the two apart; it is set to the idle timeout as a
//! backstop, and a small per-connection watchdog enforces both.
//!
//! paylink speaks HTTP/1.1 (what reverse proxies speak to upstreams).
//!
//! `accept` errors (file descriptors exhausted, say) are backed off up to a
//! second and logged once when a burst starts and once when it ends, not
//! once a second for ever. At start-up the soft limit of open files is
//! raised to the hard limit, and the default cap stays below it.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// File descriptors kept free of connections for the database, webhook
/// deliveries and logs.
const RESERVED_DESCRIPTORS: u64 = 256;
/// Longest a graceful shutdown waits for open connections to finish.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// `None`: derived from the open-files limit (see [`default_max_connections`]).
    pub max_connections: Option<usize>,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        // Heads within 10 s (Go's common ReadHeaderTimeout); kept-alive
        // connections closed after 75 s of silence (nginx's keepalive_timeout,
        // longer than the 60 s most proxies keep an idle upstream).
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_connections: None,
        }
    }
}

/// Raises the soft open-files limit to the hard one and returns a cap
/// that leaves [`RESERVED_DESCRIPTORS`] free, at most 10,000.
pub fn default_max_connections() -> usize {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let usable = limit.saturating_sub(RESERVED_DESCRIPTORS).max(16);
    usize::try_from(usable.min(10_000)).unwrap_or(10_000)
}

/// Serves `app` on `listener` until `shutdown`, then stops accepting and
/// lets open connections finish (at most [`DRAIN_LIMIT`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: ConnectionSettings,
    shutdown: CancellationToken,
) {
    let cap = settings
        .max_connections
        .unwrap_or_else(default_max_connections);
    let slots = Arc::new(Semaphore::new(cap));
    let graceful = GracefulShutdown::new();
    // HTTP/1.1 only: sniffing for HTTP/2 prior knowledge reads the first
    // bytes with no timer at all, so a silent client would hold its slot
    // until the idle timeout. Reverse proxies speak HTTP/1.1 to upstreams.
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.idle_timeout.max(settings.header_read_timeout));
    let builder = Arc::new(builder);
    let mut accept_errors = AcceptErrors::default();
    loop {
        let slot = tokio::select! {
            () = shutdown.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (stream, remote) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    drop(slot);
                    let pause = accept_errors.failed(&error);
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(pause) => continue,
                    }
                }
            },
        };
        accept_errors.succeeded();
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let service = hyper_service(app.clone(), remote, Arc::clone(&activity));
        let io = TokioIo::new(TrackedIo {
            inner: stream,
            activity: Arc::clone(&activity),
        });
        let connection = builder.serve_connection(io, service).into_owned();
        let connection = graceful.watch(connection);
        let limits = (settings.header_read_timeout, settings.idle_timeout);
        tokio::spawn(async move {
            let _slot = slot;
            tokio::select! {
                result = connection => {
                    if let Err(error) = result {
                        tracing::debug!(%error, %remote, "connection ended with an error");
                    }
                }
                () = activity.expired(limits.0, limits.1) => {
                    tracing::debug!(%remote, "closing a slow or idle connection");
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_LIMIT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain limit were closed");
    }
}

fn hyper_service(
    app: Router,
    remote: SocketAddr,
    activity: Arc<Activity>,
) -> hyper_util::service::TowerToHyperService<
    impl tower::Service<
        hyper::Request<Incoming>,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future = impl Send,
    > + Clone,
> {
    let service = tower::service_fn(move |request: hyper::Request<Incoming>| {
        let app = app.clone();
        let in_flight = InFlight::start(Arc::clone(&activity));
        async move {
            let _in_flight = in_flight;
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(remote));
            app.oneshot(request).await
        }
    });
    hyper_util::service::TowerToHyperService::new(service)
}

/// What a connection's watchdog needs: when it last moved a byte, whether
/// a request head is arriving (and since when), and how many of its
/// requests are being answered. Times are milliseconds since accept.
struct Activity {
    started: Instant,
    last_millis: AtomicU64,
    /// 0: no head arriving; otherwise 1 + when its first byte came.
    head_since: AtomicU64,
    in_flight: AtomicUsize,
    /// Wakes the watchdog when a head begins or a request starts or ends.
    changed: tokio::sync::Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            last_millis: AtomicU64::new(0),
            // The first request's head is due from accept.
            head_since: AtomicU64::new(1),
            in_flight: AtomicUsize::new(0),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last_millis.store(self.millis(), Ordering::Relaxed);
    }

    /// Bytes arrived: with no request in flight they begin a request head.
    fn read_some(&self) {
        let now = self.millis();
        self.last_millis.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self
                .head_since
                .compare_exchange(0, now + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.changed.notify_one();
        }
    }

    /// Resolves once a head has taken longer than `header_timeout`, or the
    /// connection has been idle (nothing in flight, no head arriving) for
    /// `idle_timeout`.
    async fn expired(&self, header_timeout: Duration, idle_timeout: Duration) {
        loop {
            let now = self.millis();
            let head_since = self.head_since.load(Ordering::Relaxed);
            let deadline = if self.in_flight.load(Ordering::Relaxed) > 0 {
                None
            } else if head_since > 0 {
                Some(head_since - 1 + millis_of(header_timeout))
            } else {
                Some(self.last_millis.load(Ordering::Relaxed) + millis_of(idle_timeout))
            };
            let wait = match deadline {
                Some(deadline) if now >= deadline => return,
                Some(deadline) => Duration::from_millis((deadline - now).max(20)),
                None => idle_timeout,
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.changed.notified() => {}
            }
        }
    }
}

fn millis_of(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Counts a request as in flight until dropped (answered or abandoned);
/// its head is complete once it is.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.head_since.store(0, Ordering::Relaxed);
        activity.touch();
        activity.changed.notify_one();
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
        self.0.changed.notify_one();
    }
}

/// A TCP stream that records when it last read or wrote.
struct TrackedIo {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read_some();
        }
        polled
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A burst of failing `accept`s: logged when it starts and when it ends,
/// with a back-off that doubles from 10 ms to 1 s.
#[derive(Default)]
struct AcceptErrors {
    count: u64,
    pause: Duration,
}

impl AcceptErrors {
    fn failed(&mut self, error: &std::io::Error) -> Duration {
        // A client that gave up between SYN and accept is not our failure.
        if matches!(
            error.kind(),
            std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
        ) {
            return Duration::ZERO;
        }
        if self.count == 0 {
            tracing::error!(%error, "accept failed; backing off until connections can be accepted again");
        }
        self.count += 1;
        self.pause = (self.pause * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
        self.pause
    }

    fn succeeded(&mut self) {
        if self.count > 0 {
            tracing::warn!(failed_accepts = self.count, "accepting connections again");
        }
        self.count = 0;
        self.pause = Duration::ZERO;
    }
}
