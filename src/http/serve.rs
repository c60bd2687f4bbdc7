//! The connection layer: accepts TCP connections and serves HTTP on them within the
//! limits an API open to the internet needs.
//!
//! Each connection has a watchdog that knows, from the bytes moving on the socket and
//! the requests in flight, which of three states it is in, and closes it when that
//! state has lasted too long:
//! - **idle** (no request in flight, nothing received since the last answer): closed
//!   after `server.idle_timeout_ms`;
//! - **reading a request head** (bytes arrived, no request started yet): closed after
//!   `server.header_read_timeout_ms`, so a client trickling headers (slowloris) holds a
//!   socket for seconds, not forever;
//! - **in a request**: closed when nothing moved either way for `idle_timeout_ms`
//!   (request bodies have their own timeout, in [`super::guard`]).
//!
//! At most `server.max_connections` connections are open at once: past that, new ones
//! wait in the kernel's accept queue instead of exhausting file descriptors.
//!
//! Shutdown drains instead of dropping: the listener closes, every answer from then on
//! carries `Connection: close`, a request arriving on a kept-alive connection is still
//! answered, and a connection is closed once it has been idle for [`DRAIN_IDLE`].

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::ServerSettings;

/// During shutdown, a kept-alive connection with nothing in flight is closed after
/// this long: time for a request the client already sent to arrive and be answered.
pub const DRAIN_IDLE: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub header_read: Duration,
    pub idle: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub fn new(s: &ServerSettings) -> Self {
        Self {
            header_read: Duration::from_millis(s.header_read_timeout_ms),
            idle: Duration::from_millis(s.idle_timeout_ms),
            max_connections: s.max_connections,
        }
    }
}

/// Serves `router` on `listener` until `draining` is cancelled, then drains: returns
/// once every connection has closed. The caller bounds the drain with its timeout.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    draining: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let mut warned = false;
    loop {
        let permit = if let Ok(p) = slots.clone().try_acquire_owned() {
            p
        } else {
            if !warned {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "connection limit reached; new connections wait"
                );
                warned = true;
            }
            tokio::select! {
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                () = draining.cancelled() => break,
            }
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = draining.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors or a connection reset before accept: wait a little
                // rather than spin.
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(connection(
            stream,
            router.clone(),
            limits,
            draining.clone(),
            permit,
        ));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Why the watchdog closed a connection (the metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expiry {
    Idle,
    HeaderRead,
    Stalled,
    Drained,
}

impl Expiry {
    const fn as_str(self) -> &'static str {
        match self {
            Expiry::Idle => "idle",
            Expiry::HeaderRead => "header_read",
            Expiry::Stalled => "stalled",
            Expiry::Drained => "drained",
        }
    }
}

const NONE: u64 = u64::MAX;

/// What the watchdog knows of one connection; updated by the socket wrapper (bytes
/// moved) and the service (requests started and finished). Times are milliseconds
/// since the connection opened.
struct Activity {
    opened: Instant,
    in_flight: AtomicU32,
    /// Last time a byte moved either way, or a request started or finished.
    last: AtomicU64,
    /// When the first byte of a request head arrived while nothing was in flight.
    head_since: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicU32::new(0),
            last: AtomicU64::new(0),
            head_since: AtomicU64::new(NONE),
        }
    }

    fn now(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    fn received(&self) {
        let now = self.now();
        self.last.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let _ =
                self.head_since
                    .compare_exchange(NONE, now, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    fn sent(&self) {
        self.last.store(self.now(), Ordering::Relaxed);
    }

    fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(NONE, Ordering::Release);
        self.sent();
    }

    fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.sent();
    }

    /// When the connection expires as things stand, and why.
    fn deadline(&self, limits: &Limits, drain_from: Option<u64>) -> (u64, Expiry) {
        let ms = |d: Duration| d.as_millis() as u64;
        let last = self.last.load(Ordering::Relaxed);
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return (last + ms(limits.idle), Expiry::Stalled);
        }
        let head = self.head_since.load(Ordering::Acquire);
        if head != NONE {
            return (head + ms(limits.header_read), Expiry::HeaderRead);
        }
        match drain_from {
            Some(from) => (last.max(from) + ms(DRAIN_IDLE), Expiry::Drained),
            None => (last + ms(limits.idle), Expiry::Idle),
        }
    }
}

/// The socket, reporting every byte moved to the connection's [`Activity`].
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.received();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.sent();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.sent();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn connection(
    stream: TcpStream,
    router: Router,
    limits: Limits,
    draining: CancellationToken,
    _slot: tokio::sync::OwnedSemaphorePermit,
) {
    let gauge = metrics::gauge!("vitrine_http_connections");
    gauge.increment(1.0);
    let activity = Arc::new(Activity::new());
    let closing = Arc::new(AtomicBool::new(false));
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        let closing = closing.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let activity = activity.clone();
            let closing = closing.clone();
            let router = router.clone();
            activity.begin();
            async move {
                let Ok(mut response) = router.oneshot(req.map(Body::new)).await;
                if closing.load(Ordering::Acquire) {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                activity.end();
                Ok::<_, Infallible>(response)
            }
        })
    };
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut drain_from = None;
    loop {
        let (at, _) = activity.deadline(&limits, drain_from);
        let deadline = activity.opened + Duration::from_millis(at);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            () = tokio::time::sleep_until(deadline) => {
                // Something may have moved since the deadline was computed.
                let (again, why_now) = activity.deadline(&limits, drain_from);
                if again <= activity.now() {
                    if why_now != Expiry::Drained {
                        metrics::counter!("vitrine_http_connections_closed_total", "reason" => why_now.as_str()).increment(1);
                    }
                    break;
                }
            }
            () = draining.cancelled(), if drain_from.is_none() => {
                closing.store(true, Ordering::Release);
                drain_from = Some(activity.now());
            }
        }
    }
    gauge.decrement(1.0);
}
