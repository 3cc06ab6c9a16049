//! The HTTP server the examples run, hardened for the internet, and the admin token that
//! guards their `/_origin_pull/*` endpoints.
//!
//! [`Server`] (feature `server`, on by default) serves any tower service — an axum `Router`,
//! [`ServeStore`](crate::ServeStore) under the layer, … — over HTTP/1.1 and HTTP/2
//! (hyper-util's `auto` connection, HTTP/2 by prior knowledge) on plain TCP:
//!
//! ```no_run
//! # async fn run(app: axum::Router) -> std::io::Result<()> {
//! use std::time::Duration;
//! use tower_origin_pull::server::Server;
//!
//! Server::bind("0.0.0.0:8080".parse().expect("an address"))
//!     .with_max_connections(4096)
//!     .with_header_read_timeout(Duration::from_secs(5))
//!     .serve(app)
//!     .with_graceful_shutdown(async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     })
//!     .await
//! # }
//! ```
//!
//! [`Server::listen`] binds at once (to learn the port of `127.0.0.1:0`, say) and hands back a
//! [`Listening`] to serve from. Every setting has a default chosen for a server on the
//! internet, a `with_*` setter, and (feature `config`) a field of the `[server]` section of
//! the [configuration](crate::config::ServerConfig):
//!
//! | setting | default | what it bounds, and why this default |
//! |---|---|---|
//! | [`header_read_timeout`](Server::with_header_read_timeout) | 10 s | A connection must deliver a complete request head within this long of being accepted; on HTTP/1, also within this long of the first byte of each later request. Past it the connection is closed without an answer. This is what stops Slowloris (connections that send half a request line and then nothing): each holds a slot for at most this long. A real client sends a head (a few hundred bytes) in one round trip; 10 s leaves room for a very slow link. |
//! | [`idle_timeout`](Server::with_idle_timeout) | 60 s | A kept-alive connection with no request in flight (and, on HTTP/1, no request head begun) is closed this long after its last response ended (HTTP/2: with a `GOAWAY`). Clients that reuse connections within a minute keep them (nginx's `keepalive_timeout` is 75 s); idle ones do not hold slots forever. |
//! | [`send_timeout`](Server::with_send_timeout) | 60 s | A connection whose writes make no progress for this long (the client stopped reading its response) is closed, like nginx's `send_timeout`. Waiting for the response itself (an origin pull that takes long) is not bounded here: the layer bounds that. |
//! | [`max_connections`](Server::with_max_connections) | 1,024 | Connections served at once. Past it the server stops accepting: new connections wait in the kernel's listen queue (the backlog: their handshake completes and their request waits there) until a served connection closes; when that queue is full too, the kernel drops new `SYN`s and clients retry. Each connection is a file descriptor and up to [`max_header_size`](Server::with_max_header_size) of read buffer: raise it together with the process's open-file limit (`ulimit -n`). 1,024 keeps the worst case of header buffers at 64 MiB. |
//! | [`backlog`](Server::with_backlog) | 1,024 | The listen queue (`listen(2)`'s backlog; Linux caps it at `net.core.somaxconn`, 4,096 by default since 5.4). tokio's `TcpListener::bind` uses 128, which a burst of a few hundred clients connecting at once overflows: the overflowing clients wait out the 1 s `SYN` retransmit. nginx uses 511. |
//! | [`max_header_size`](Server::with_max_header_size) | 64 KiB | The request line and headers together (HTTP/1: hyper's read buffer, `max_buf_size`, at least 8 KiB; HTTP/2: `SETTINGS_MAX_HEADER_LIST_SIZE`). Larger heads get `431 Request Header Fields Too Large` (HTTP/1) or a stream reset (HTTP/2). Object keys and a few cookies fit; nginx allows 4 × 8 KiB. |
//! | [`max_headers`](Server::with_max_headers) | 100 | Header fields per HTTP/1 request; more get `431`. hyper's default, which keeps its header array on the stack (any other value costs an allocation per request). |
//! | [`http2_max_concurrent_streams`](Server::with_http2_max_concurrent_streams) | 200 | Requests in flight at once on one HTTP/2 connection (hyper's default). |
//! | [`shutdown_grace`](Server::with_shutdown_grace) | 10 s | On the shutdown signal the listener is closed at once (connections still in its queue are refused), idle connections are closed, HTTP/1 connections finish their request in flight and close, HTTP/2 connections get a `GOAWAY` and finish their streams; connections still open after this grace are closed. |
//! | [`nodelay`](Server::with_nodelay) | on | `TCP_NODELAY` on every connection: a small response whose head and body are written separately is sent at once instead of waiting for the client's delayed ACK (about 40 ms on Linux). |
//!
//! Each connection's timeouts are checked by a watchdog about every eighth of the shortest
//! of the three (10 ms ..= 1 s: every second with the defaults), so a connection is closed
//! up to that much after its timeout. The listening socket has `SO_REUSEADDR`, so a restarted server binds while connections of
//! the previous one are in `TIME_WAIT`. An error accepting a connection (out of file
//! descriptors, say) is logged (at most every 10 s) and accepting resumes 50 ms later; it
//! never stops the server. Connection errors (a client that breaks a head off, a timeout)
//! are logged at `debug`.
//!
//! What this loop does not bound: how long a request *body* may take to arrive once its
//! head is in (the examples serve `GET`s and never read one; a service that does should
//! bound its reads), and TLS (terminate it in front, or serve a TLS stream yourself).
//! HTTP upgrades (WebSocket) are not supported.
//!
//! ## The admin token
//!
//! [`AdminToken`] guards administrative endpoints: [`AdminToken::layer`] answers `401` with
//! `WWW-Authenticate: Bearer` to every request that does not carry
//! `Authorization: Bearer <token>`, comparing in constant time (the SHA-256 digests of the
//! two), and passes the others to the service it wraps. The mirror example wraps its whole
//! `/_origin_pull` router with it when `--admin-token`, `--admin-token-env` or
//! `[server] admin_token` / `admin_token_env` is given; without a token its status endpoint
//! stays open and it has no endpoint that changes anything. The token and its layer are
//! always compiled (no feature): they need no server.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use sha2::{Digest, Sha256};
use tower_layer::Layer;
use tower_service::Service;

use crate::Error;

#[cfg(feature = "server")]
pub use self::serve::{Listening, Serve, Server, WithGracefulShutdown};

/// The CPUs this process may run on: its affinity mask (`taskset -c 0` gives 1), else 1.
/// The default number of runtime threads of the shipped servers.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The tokio runtime the shipped servers run on: single-threaded for one thread (no work
/// stealing, no cross-thread wake-ups: measured faster for small hits on one CPU, see
/// BENCHMARKS.md), else `threads` workers; timers and I/O on.
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

// The defaults and limits of the server's settings (also what `[server]` accepts, so they
// do not depend on the `server` feature).

/// The default [`Server::with_header_read_timeout`]: 10 s.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The default [`Server::with_idle_timeout`]: 60 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The default [`Server::with_send_timeout`]: 60 s.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// The default [`Server::with_max_connections`]: 1,024.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The largest [`Server::with_max_connections`]: 1,000,000.
pub const MAX_CONNECTIONS: usize = 1_000_000;
/// The default [`Server::with_backlog`]: 1,024.
pub const DEFAULT_BACKLOG: u32 = 1024;
/// The largest [`Server::with_backlog`]: 65,535 (the kernel caps it lower anyway, at
/// `net.core.somaxconn` on Linux).
pub const MAX_BACKLOG: u32 = 65_535;
/// The default [`Server::with_max_header_size`]: 64 KiB.
pub const DEFAULT_MAX_HEADER_SIZE: usize = 64 * 1024;
/// The smallest [`Server::with_max_header_size`]: 8 KiB (hyper's smallest HTTP/1 buffer).
pub const MIN_MAX_HEADER_SIZE: usize = 8 * 1024;
/// The largest [`Server::with_max_header_size`]: 16 MiB.
pub const MAX_MAX_HEADER_SIZE: usize = 16 * 1024 * 1024;
/// The default [`Server::with_max_headers`]: 100 (hyper's).
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// The largest [`Server::with_max_headers`]: 10,000.
pub const MAX_HEADERS: usize = 10_000;
/// The default [`Server::with_http2_max_concurrent_streams`]: 200 (hyper's).
pub const DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS: u32 = 200;
/// The largest [`Server::with_http2_max_concurrent_streams`]: 100,000.
pub const MAX_HTTP2_CONCURRENT_STREAMS: u32 = 100_000;
/// The default [`Server::with_shutdown_grace`]: 10 s.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// The admin token
// ---------------------------------------------------------------------------------------

/// A bearer token for administrative endpoints, kept only as its SHA-256 digest.
///
/// `Debug` does not show it; `==` compares in constant time.
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl PartialEq for AdminToken {
    fn eq(&self, other: &Self) -> bool {
        same(&self.digest, &other.digest)
    }
}

impl Eq for AdminToken {}

/// Constant-time equality of two digests.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// The shortest token accepted: 16 characters (a random one of that length is out of
    /// reach of guessing; `openssl rand -hex 32` makes a good one).
    pub const MIN_LEN: usize = 16;

    /// A token: at least [`MIN_LEN`](Self::MIN_LEN) characters, all visible ASCII (no
    /// spaces), so that it fits in an `Authorization` header as it is.
    pub fn new(token: &str) -> Result<Self, Error> {
        check_token(token).map_err(Error::config)?;
        Ok(Self {
            digest: digest(token.as_bytes()),
        })
    }

    /// The token held in the environment variable `name` (surrounding whitespace, such as
    /// the newline of a file read into it, is dropped). Keeps it off the command line, where
    /// every local user can read it in the process list.
    pub fn from_env(name: &str) -> Result<Self, Error> {
        let value = std::env::var(name).map_err(|e| {
            Error::config(format!("admin token: environment variable {name:?}: {e}"))
        })?;
        Self::new(value.trim()).map_err(|e| Error::config(format!("admin token from ${name}: {e}")))
    }

    /// Whether `presented` is the token, compared in constant time.
    pub fn matches(&self, presented: &[u8]) -> bool {
        same(&self.digest, &digest(presented))
    }

    /// Whether `headers` carry `Authorization: Bearer <this token>` (the scheme in any case).
    pub fn authorizes(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return false;
        };
        let value = value.as_bytes();
        let Some((scheme, token)) = value.split_at_checked(7) else {
            return false;
        };
        scheme.eq_ignore_ascii_case(b"bearer ") && self.matches(token.trim_ascii())
    }

    /// A layer that lets through only requests that carry this token, answering the others
    /// `401 Unauthorized` with `WWW-Authenticate: Bearer` (see [`RequireAdminToken`]).
    pub fn layer(&self) -> RequireAdminTokenLayer {
        RequireAdminTokenLayer {
            token: self.clone(),
        }
    }
}

#[cfg(feature = "config")]
impl AdminToken {
    /// The token of a `[server]` section: `admin_token`, or the variable `admin_token_env`
    /// names, read now; `None` when neither is given.
    pub fn from_config(config: &crate::config::ServerConfig) -> Result<Option<Self>, Error> {
        config.values()?;
        match (&config.admin_token, &config.admin_token_env) {
            (Some(token), _) => Self::new(token).map(Some),
            (None, Some(name)) => Self::from_env(name).map(Some),
            (None, None) => Ok(None),
        }
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Why `token` cannot be an admin token, if it cannot (shared with config validation).
pub(crate) fn check_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("the admin token is empty".to_owned());
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the admin token must be visible ASCII characters only (no spaces)".to_owned());
    }
    if token.len() < AdminToken::MIN_LEN {
        return Err(format!(
            "the admin token has {} characters, fewer than {}: use a long random one \
             (`openssl rand -hex 32`)",
            token.len(),
            AdminToken::MIN_LEN
        ));
    }
    Ok(())
}

/// The [`Layer`] of [`RequireAdminToken`]; made by [`AdminToken::layer`].
#[derive(Debug, Clone)]
pub struct RequireAdminTokenLayer {
    token: AdminToken,
}

impl<S> Layer<S> for RequireAdminTokenLayer {
    type Service = RequireAdminToken<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireAdminToken {
            inner,
            token: self.token.clone(),
        }
    }
}

/// Passes a request to the inner service only if it carries the admin token as
/// `Authorization: Bearer <token>`; answers the others `401 Unauthorized`, with
/// `WWW-Authenticate: Bearer realm="origin-pull"` and `Cache-Control: no-store`, without
/// calling the inner service. Wrap the admin endpoints only (an axum router nested at
/// `/_origin_pull`, say), not the objects.
#[derive(Debug, Clone)]
pub struct RequireAdminToken<S> {
    inner: S,
    token: AdminToken,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireAdminToken<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<Either<ResBody, Full<Bytes>>>;
    type Error = S::Error;
    type Future = AdminFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if self.token.authorizes(request.headers()) {
            AdminFuture {
                state: AdminState::Inner {
                    future: self.inner.call(request),
                },
            }
        } else {
            AdminFuture {
                state: AdminState::Denied {
                    response: Some(unauthorized()),
                },
            }
        }
    }
}

fn unauthorized() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(
        b"401 Unauthorized: this endpoint needs `Authorization: Bearer <admin token>`\n",
    )));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    let headers = response.headers_mut();
    headers.insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"origin-pull\""),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

pin_project! {
    /// The response future of [`RequireAdminToken`].
    pub struct AdminFuture<F> {
        #[pin]
        state: AdminState<F>,
    }
}

pin_project! {
    #[project = AdminStateProj]
    enum AdminState<F> {
        // Authorized: the inner service's answer.
        Inner { #[pin] future: F },
        // Refused: the `401`, until taken.
        Denied { response: Option<Response<Full<Bytes>>> },
    }
}

impl<F, B, E> Future for AdminFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<Either<B, Full<Bytes>>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            AdminStateProj::Inner { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(Either::Left)))
            }
            AdminStateProj::Denied { response } => match response.take() {
                Some(r) => Poll::Ready(Ok(r.map(Either::Right))),
                None => Poll::Pending,
            },
        }
    }
}

// ---------------------------------------------------------------------------------------
// The server loop
// ---------------------------------------------------------------------------------------

#[cfg(feature = "server")]
mod serve {
    use std::future::{Future, IntoFuture};
    use std::io;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use std::task::{Context, Poll, ready};
    use std::time::{Duration, Instant};

    use http::{Request, Response, Version};
    use http_body::{Body, Frame, SizeHint};
    use hyper::body::Incoming;
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use pin_project_lite::pin_project;
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio::net::{TcpListener, TcpSocket, TcpStream};
    use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
    use tokio::time::MissedTickBehavior;
    use tower_service::Service;

    use super::{
        DEFAULT_BACKLOG, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
        DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HEADER_SIZE,
        DEFAULT_MAX_HEADERS, DEFAULT_SEND_TIMEOUT, DEFAULT_SHUTDOWN_GRACE, MAX_BACKLOG,
        MAX_CONNECTIONS, MAX_HEADERS, MAX_HTTP2_CONCURRENT_STREAMS, MAX_MAX_HEADER_SIZE,
        MIN_MAX_HEADER_SIZE,
    };
    use crate::BoxError;

    /// How long a connection closed for being idle may take over its `GOAWAY` (HTTP/2) before
    /// it is dropped.
    const CLOSE_AFTER_GOAWAY: Duration = Duration::from_secs(1);
    /// How long accepting pauses after an error that is not one connection's (no file
    /// descriptor left, say).
    const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
    /// How often such an error is logged at most.
    const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

    /// The hardened server loop: an address and its settings (see the
    /// [module docs](crate::server) for each one's default and why).
    ///
    /// Nothing is opened until [`listen`](Self::listen) or the [`serve`](Self::serve)
    /// future is awaited. Both need a Tokio runtime (with the time driver).
    #[derive(Debug, Clone)]
    pub struct Server {
        addr: SocketAddr,
        header_read_timeout: Duration,
        idle_timeout: Duration,
        send_timeout: Duration,
        max_connections: usize,
        backlog: u32,
        max_header_size: usize,
        max_headers: usize,
        http2_max_concurrent_streams: u32,
        shutdown_grace: Duration,
        nodelay: bool,
    }

    impl Server {
        /// A server for `addr` (`127.0.0.1:0` for a free port) with the default settings.
        pub fn bind(addr: SocketAddr) -> Self {
            Self {
                addr,
                header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
                idle_timeout: DEFAULT_IDLE_TIMEOUT,
                send_timeout: DEFAULT_SEND_TIMEOUT,
                max_connections: DEFAULT_MAX_CONNECTIONS,
                backlog: DEFAULT_BACKLOG,
                max_header_size: DEFAULT_MAX_HEADER_SIZE,
                max_headers: DEFAULT_MAX_HEADERS,
                http2_max_concurrent_streams: DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
                shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
                nodelay: true,
            }
        }

        /// The address to bind.
        pub fn addr(&self) -> SocketAddr {
            self.addr
        }

        /// Connections served at once (see [`with_max_connections`](Self::with_max_connections)).
        pub fn max_connections(&self) -> usize {
            self.max_connections
        }

        /// How long a connection may take to deliver a complete request head, counted from
        /// its accept and, on HTTP/1, from the first byte of each later request (default
        /// [`DEFAULT_HEADER_READ_TIMEOUT`], 10 s). Past it the connection is closed without
        /// an answer. Checked about every eighth of the shortest timeout (10 ms to 1 s), so
        /// a connection closes up to that much later. Zero closes every connection at the
        /// first check.
        pub fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
            self.header_read_timeout = timeout;
            self
        }

        /// How long a connection with no request in flight (on HTTP/1: and no head begun)
        /// is kept open after its last response (default [`DEFAULT_IDLE_TIMEOUT`], 60 s).
        pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
            self.idle_timeout = timeout;
            self
        }

        /// How long a connection's writes may make no progress (the client reads nothing
        /// of its response) before it is closed (default [`DEFAULT_SEND_TIMEOUT`], 60 s).
        pub fn with_send_timeout(mut self, timeout: Duration) -> Self {
            self.send_timeout = timeout;
            self
        }

        /// Connections served at once (default [`DEFAULT_MAX_CONNECTIONS`], 1,024; 1 ..=
        /// [`MAX_CONNECTIONS`], values outside are brought within). Past it new
        /// connections wait in the listen queue until one closes. Keep it below the
        /// process's open-file limit.
        pub fn with_max_connections(mut self, max: usize) -> Self {
            self.max_connections = max.clamp(1, MAX_CONNECTIONS);
            self
        }

        /// The listen queue's length (default [`DEFAULT_BACKLOG`], 1,024; 1 ..=
        /// [`MAX_BACKLOG`]; the kernel caps it at `net.core.somaxconn` on Linux).
        pub fn with_backlog(mut self, backlog: u32) -> Self {
            self.backlog = backlog.clamp(1, MAX_BACKLOG);
            self
        }

        /// The largest request head, request line and headers together (default
        /// [`DEFAULT_MAX_HEADER_SIZE`], 64 KiB; [`MIN_MAX_HEADER_SIZE`] (8 KiB) ..=
        /// [`MAX_MAX_HEADER_SIZE`] (16 MiB)).
        /// HTTP/1: hyper's read buffer (a larger head is answered `431`); HTTP/2: the
        /// advertised `SETTINGS_MAX_HEADER_LIST_SIZE`.
        pub fn with_max_header_size(mut self, bytes: usize) -> Self {
            self.max_header_size = bytes.clamp(MIN_MAX_HEADER_SIZE, MAX_MAX_HEADER_SIZE);
            self
        }

        /// The most header fields in an HTTP/1 request (default [`DEFAULT_MAX_HEADERS`],
        /// 100; 1 ..= [`MAX_HEADERS`]); more are answered `431`. Any value but the default makes
        /// hyper allocate the header array per request.
        pub fn with_max_headers(mut self, max: usize) -> Self {
            self.max_headers = max.clamp(1, MAX_HEADERS);
            self
        }

        /// Requests in flight at once on one HTTP/2 connection (default
        /// [`DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS`], 200; 1 ..=
        /// [`MAX_HTTP2_CONCURRENT_STREAMS`]).
        pub fn with_http2_max_concurrent_streams(mut self, max: u32) -> Self {
            self.http2_max_concurrent_streams = max.clamp(1, MAX_HTTP2_CONCURRENT_STREAMS);
            self
        }

        /// How long connections may take to finish once shutdown has begun (default
        /// [`DEFAULT_SHUTDOWN_GRACE`], 10 s); those still open then are closed.
        pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
            self.shutdown_grace = grace;
            self
        }

        /// `TCP_NODELAY` on every connection (default on).
        pub fn with_nodelay(mut self, nodelay: bool) -> Self {
            self.nodelay = nodelay;
            self
        }

        /// Apply a `[server]` section: each setting it gives replaces this server's (the
        /// admin token is read by [`AdminToken::from_config`](super::AdminToken::from_config)).
        #[cfg(feature = "config")]
        pub fn with_config(
            mut self,
            config: &crate::config::ServerConfig,
        ) -> Result<Self, crate::Error> {
            let v = config.values()?;
            if let Some(d) = v.header_read_timeout {
                self = self.with_header_read_timeout(d);
            }
            if let Some(d) = v.idle_timeout {
                self = self.with_idle_timeout(d);
            }
            if let Some(d) = v.send_timeout {
                self = self.with_send_timeout(d);
            }
            if let Some(d) = v.shutdown_grace {
                self = self.with_shutdown_grace(d);
            }
            if let Some(n) = v.max_connections {
                self = self.with_max_connections(n);
            }
            if let Some(n) = v.backlog {
                self = self.with_backlog(n);
            }
            if let Some(n) = v.max_header_size {
                self = self.with_max_header_size(n);
            }
            if let Some(n) = v.max_headers {
                self = self.with_max_headers(n);
            }
            if let Some(n) = v.http2_max_concurrent_streams {
                self = self.with_http2_max_concurrent_streams(n);
            }
            Ok(self)
        }

        /// Bind the address now (with `SO_REUSEADDR`, listening with
        /// [`backlog`](Self::with_backlog)), to learn its port or fail early. Must be called
        /// inside a Tokio runtime.
        pub fn listen(self) -> io::Result<Listening> {
            let socket = if self.addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            #[cfg(not(windows))]
            socket.set_reuseaddr(true)?;
            socket.bind(self.addr)?;
            let listener = socket.listen(self.backlog)?;
            Ok(Listening {
                listener,
                server: self,
            })
        }

        /// Serve `service` on this address; the returned [`Serve`] runs when awaited (binding
        /// first), until [`with_graceful_shutdown`](Serve::with_graceful_shutdown)'s signal.
        pub fn serve<S>(self, service: S) -> Serve<S> {
            Serve {
                source: Source::Unbound(self),
                service,
            }
        }

        fn limits(&self) -> Limits {
            let shortest = self
                .header_read_timeout
                .min(self.idle_timeout)
                .min(self.send_timeout);
            Limits {
                header_read_timeout: self.header_read_timeout,
                idle_timeout: self.idle_timeout,
                send_timeout: self.send_timeout,
                tick: (shortest / 8).clamp(Duration::from_millis(10), Duration::from_secs(1)),
            }
        }

        fn builder(&self) -> auto::Builder<TokioExecutor> {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            {
                let mut http1 = builder.http1();
                http1
                    .timer(TokioTimer::new())
                    // The connection's own clock does this, with the idle timeout apart
                    // (hyper's runs from the end of the previous response).
                    .header_read_timeout(None)
                    .keep_alive(true)
                    .max_buf_size(self.max_header_size);
                if self.max_headers != DEFAULT_MAX_HEADERS {
                    http1.max_headers(self.max_headers);
                }
            }
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_header_list_size(u32::try_from(self.max_header_size).unwrap_or(u32::MAX))
                .max_concurrent_streams(self.http2_max_concurrent_streams);
            builder
        }
    }

    /// A bound [`Server`]: its address is known, and it serves once
    /// [`serve`](Self::serve)'s future is awaited (connections that arrive before wait in
    /// the listen queue).
    #[derive(Debug)]
    pub struct Listening {
        listener: TcpListener,
        server: Server,
    }

    impl Listening {
        /// The address bound (with the port the system chose for port 0).
        pub fn local_addr(&self) -> io::Result<SocketAddr> {
            self.listener.local_addr()
        }

        /// Serve `service`; see [`Server::serve`].
        pub fn serve<S>(self, service: S) -> Serve<S> {
            Serve {
                source: Source::Bound(self),
                service,
            }
        }
    }

    #[derive(Debug)]
    enum Source {
        Unbound(Server),
        Bound(Listening),
    }

    impl Source {
        fn listen(self) -> io::Result<Listening> {
            match self {
                Self::Unbound(server) => server.listen(),
                Self::Bound(listening) => Ok(listening),
            }
        }
    }

    /// A server about to serve a service: await it to serve until the process ends, or add
    /// a shutdown signal with [`with_graceful_shutdown`](Self::with_graceful_shutdown).
    ///
    /// The service is any tower service of `Request<hyper::body::Incoming>` (an axum
    /// `Router` is one), cloned per request; its errors close the connection.
    #[derive(Debug)]
    #[must_use = "a server does nothing until awaited"]
    pub struct Serve<S> {
        source: Source,
        service: S,
    }

    impl<S> Serve<S> {
        /// Serve until `signal` completes, then shut down gracefully: stop accepting, let
        /// the connections finish their requests in flight for up to the
        /// [shutdown grace](Server::with_shutdown_grace), close the rest. The future ends
        /// when every connection is closed.
        pub fn with_graceful_shutdown<F>(self, signal: F) -> WithGracefulShutdown<S, F>
        where
            F: Future<Output = ()> + Send + 'static,
        {
            WithGracefulShutdown {
                serve: self,
                signal,
            }
        }
    }

    /// [`Serve`] with a shutdown signal; await it.
    #[derive(Debug)]
    #[must_use = "a server does nothing until awaited"]
    pub struct WithGracefulShutdown<S, F> {
        serve: Serve<S>,
        signal: F,
    }

    impl<S, B> IntoFuture for Serve<S>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        type Output = io::Result<()>;
        type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

        fn into_future(self) -> Self::IntoFuture {
            Box::pin(run(self.source, self.service, std::future::pending()))
        }
    }

    impl<S, B, F> IntoFuture for WithGracefulShutdown<S, F>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
        F: Future<Output = ()> + Send + 'static,
    {
        type Output = io::Result<()>;
        type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

        fn into_future(self) -> Self::IntoFuture {
            Box::pin(run(self.serve.source, self.serve.service, self.signal))
        }
    }

    /// The accept loop, then the shutdown.
    async fn run<S, B, F>(source: Source, service: S, signal: F) -> io::Result<()>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
        F: Future<Output = ()> + Send + 'static,
    {
        let Listening { listener, server } = source.listen()?;
        let limits = server.limits();
        let builder = Arc::new(server.builder());
        let slots = Arc::new(Semaphore::new(server.max_connections));
        let (stop_tx, stop_rx) = watch::channel(());
        let (force_tx, force_rx) = watch::channel(());
        let mut signal = std::pin::pin!(signal);
        let mut last_warning: Option<Instant> = None;
        loop {
            // A slot first: past the cap, connections wait in the listen queue.
            let slot = tokio::select! {
                biased;
                () = &mut signal => break,
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
            };
            let (stream, peer) = tokio::select! {
                biased;
                () = &mut signal => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) if is_connection_error(&e) => continue,
                    Err(e) => {
                        if last_warning.is_none_or(|at| at.elapsed() >= ACCEPT_ERROR_LOG_EVERY) {
                            last_warning = Some(Instant::now());
                            tracing::warn!(
                                error = %e,
                                "accepting a connection failed; retrying every 50 ms (is \
                                 the open-file limit below max_connections?)"
                            );
                        }
                        tokio::select! {
                            biased;
                            () = &mut signal => break,
                            () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                        }
                    }
                },
            };
            if server.nodelay {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, %peer, "TCP_NODELAY");
                }
            }
            tokio::spawn(connection(
                stream,
                peer,
                service.clone(),
                builder.clone(),
                limits,
                stop_rx.clone(),
                force_rx.clone(),
                slot,
            ));
        }
        // Refuse what waits in the listen queue, then let the connections finish.
        drop(listener);
        let _ = stop_tx.send(());
        let all = u32::try_from(server.max_connections).unwrap_or(u32::MAX);
        let open = server.max_connections - slots.available_permits();
        tracing::debug!(open, "stopped accepting; connections finishing");
        if tokio::time::timeout(server.shutdown_grace, slots.acquire_many(all))
            .await
            .is_err()
        {
            let open = server.max_connections - slots.available_permits();
            tracing::info!(
                open,
                "shutdown grace over: closing the connections still open"
            );
            let _ = force_tx.send(());
            let _ = tokio::time::timeout(Duration::from_secs(1), slots.acquire_many(all)).await;
        }
        Ok(())
    }

    fn is_connection_error(e: &io::Error) -> bool {
        matches!(
            e.kind(),
            io::ErrorKind::ConnectionRefused
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
        )
    }

    /// The timeouts a connection's watchdog applies.
    #[derive(Debug, Clone, Copy)]
    struct Limits {
        header_read_timeout: Duration,
        idle_timeout: Duration,
        send_timeout: Duration,
        /// How often the watchdog looks.
        tick: Duration,
    }

    /// One connection: hyper's, under a watchdog that applies the timeouts, the server's
    /// shutdown, and holding its slot until it ends.
    #[allow(clippy::too_many_arguments)]
    async fn connection<S, B>(
        stream: TcpStream,
        peer: SocketAddr,
        service: S,
        builder: Arc<auto::Builder<TokioExecutor>>,
        limits: Limits,
        mut stop: watch::Receiver<()>,
        mut force: watch::Receiver<()>,
        _slot: OwnedSemaphorePermit,
    ) where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let clock = Arc::new(Clock::new());
        let io = TokioIo::new(Watched {
            io: stream,
            clock: clock.clone(),
        });
        let service = Tracked {
            inner: service,
            clock: clock.clone(),
        };
        let mut conn = std::pin::pin!(builder.serve_connection(io, service));
        let start = tokio::time::Instant::now() + limits.tick;
        let mut tick = tokio::time::interval_at(start, limits.tick);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Set once the connection was asked to close for being idle: dropped past this.
        let mut closing: Option<Instant> = None;
        let mut stopping = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                    return;
                }
                _ = tick.tick() => {
                    if closing.is_some_and(|at| Instant::now() >= at) {
                        return;
                    }
                    match clock.expired(&limits) {
                        Some(Expired::Head) => {
                            tracing::debug!(%peer, "no complete request head in time: closed");
                            return;
                        }
                        Some(Expired::Send) => {
                            tracing::debug!(%peer, "the client reads nothing: closed");
                            return;
                        }
                        Some(Expired::Idle) if closing.is_none() => {
                            tracing::trace!(%peer, "idle: closing");
                            closing = Some(Instant::now() + CLOSE_AFTER_GOAWAY);
                            if !stopping {
                                conn.as_mut().graceful_shutdown();
                            }
                        }
                        _ => {}
                    }
                }
                _ = stop.changed(), if !stopping => {
                    stopping = true;
                    if closing.is_none() {
                        conn.as_mut().graceful_shutdown();
                    }
                }
                _ = force.changed() => return,
            }
        }
    }

    /// Why a connection is closed.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Expired {
        /// A request head took longer than `header_read_timeout`.
        Head,
        /// Idle longer than `idle_timeout`.
        Idle,
        /// Writes blocked longer than `send_timeout`.
        Send,
    }

    /// No instant.
    const NONE: u64 = u64::MAX;

    /// What a connection is doing, as its watchdog sees it: instants in nanoseconds since
    /// the accept ([`NONE`] for none). Written by the connection's reads and writes, by
    /// each request's start and the end of its response (on HTTP/2 from the streams' tasks).
    #[derive(Debug)]
    struct Clock {
        epoch: Instant,
        in_flight: AtomicUsize,
        /// Since when a request head is awaited: the accept, or (HTTP/1) the first byte
        /// read after the previous response.
        head_since: AtomicU64,
        /// Since when no request is in flight.
        idle_since: AtomicU64,
        /// Since when a write has been waiting for the client to read.
        blocked_since: AtomicU64,
        http2: AtomicBool,
    }

    impl Clock {
        fn new() -> Self {
            Self {
                epoch: Instant::now(),
                in_flight: AtomicUsize::new(0),
                head_since: AtomicU64::new(0),
                idle_since: AtomicU64::new(0),
                blocked_since: AtomicU64::new(NONE),
                http2: AtomicBool::new(false),
            }
        }

        fn now(&self) -> u64 {
            u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(NONE - 1)
        }

        /// Bytes were read: on an idle HTTP/1 connection, a request head begins.
        fn on_read(&self) {
            if self.in_flight.load(Ordering::SeqCst) == 0
                && self.head_since.load(Ordering::Relaxed) == NONE
                && !self.http2.load(Ordering::Relaxed)
            {
                self.head_since.store(self.now(), Ordering::SeqCst);
            }
        }

        fn on_write(&self, pending: bool) {
            let blocked = self.blocked_since.load(Ordering::Relaxed);
            if pending && blocked == NONE {
                self.blocked_since.store(self.now(), Ordering::Relaxed);
            } else if !pending && blocked != NONE {
                self.blocked_since.store(NONE, Ordering::Relaxed);
            }
        }

        /// A request head is complete and the service called.
        fn start(self: &Arc<Self>, version: Version) -> InFlight {
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            self.head_since.store(NONE, Ordering::SeqCst);
            if version == Version::HTTP_2 && !self.http2.load(Ordering::Relaxed) {
                self.http2.store(true, Ordering::Relaxed);
            }
            InFlight(self.clone())
        }

        fn finish(&self) {
            // Before the count drops, so that the watchdog never sees an idle connection
            // with an old idle instant.
            self.idle_since.store(self.now(), Ordering::SeqCst);
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
        }

        fn expired(&self, limits: &Limits) -> Option<Expired> {
            let now = self.now();
            let age = |at: u64| Duration::from_nanos(now.saturating_sub(at));
            let blocked = self.blocked_since.load(Ordering::Relaxed);
            if blocked != NONE && age(blocked) >= limits.send_timeout {
                return Some(Expired::Send);
            }
            if self.in_flight.load(Ordering::SeqCst) > 0 {
                return None;
            }
            let head = self.head_since.load(Ordering::SeqCst);
            if head != NONE {
                return (age(head) >= limits.header_read_timeout).then_some(Expired::Head);
            }
            let idle = self.idle_since.load(Ordering::SeqCst);
            (age(idle) >= limits.idle_timeout).then_some(Expired::Idle)
        }
    }

    /// A request in flight; its drop (the end of the response body) makes the connection
    /// idle if it was the last.
    #[derive(Debug)]
    struct InFlight(Arc<Clock>);

    impl Drop for InFlight {
        fn drop(&mut self) {
            self.0.finish();
        }
    }

    /// The TCP stream, telling the clock about reads and blocked writes.
    #[derive(Debug)]
    struct Watched {
        io: TcpStream,
        clock: Arc<Clock>,
    }

    impl AsyncRead for Watched {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let before = buf.filled().len();
            let this = &mut *self;
            let result = Pin::new(&mut this.io).poll_read(cx, buf);
            if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
                this.clock.on_read();
            }
            result
        }
    }

    impl AsyncWrite for Watched {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = &mut *self;
            let result = Pin::new(&mut this.io).poll_write(cx, buf);
            this.clock.on_write(result.is_pending());
            result
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let this = &mut *self;
            let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
            this.clock.on_write(result.is_pending());
            result
        }

        fn is_write_vectored(&self) -> bool {
            self.io.is_write_vectored()
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_shutdown(cx)
        }
    }

    /// The tower service as hyper's, marking each request in flight until its response
    /// body ends.
    #[derive(Debug, Clone)]
    struct Tracked<S> {
        inner: S,
        clock: Arc<Clock>,
    }

    impl<S, B> hyper::service::Service<Request<Incoming>> for Tracked<S>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone,
    {
        type Response = Response<TrackedBody<B>>;
        type Error = S::Error;
        type Future = TrackedCall<S, S::Future>;

        fn call(&self, request: Request<Incoming>) -> Self::Future {
            let in_flight = self.clock.start(request.version());
            TrackedCall {
                state: CallState::Ready {
                    service: self.inner.clone(),
                    request: Some(request),
                },
                in_flight: Some(in_flight),
            }
        }
    }

    pin_project! {
        /// A tower call: `poll_ready`, then `call`.
        struct TrackedCall<S, F> {
            #[pin]
            state: CallState<S, F>,
            in_flight: Option<InFlight>,
        }
    }

    pin_project! {
        #[project = CallStateProj]
        enum CallState<S, F> {
            Ready { service: S, request: Option<Request<Incoming>> },
            Called { #[pin] future: F },
        }
    }

    impl<S, F, B, E> Future for TrackedCall<S, F>
    where
        S: Service<Request<Incoming>, Response = Response<B>, Error = E, Future = F>,
        F: Future<Output = Result<Response<B>, E>>,
    {
        type Output = Result<Response<TrackedBody<B>>, E>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let mut this = self.project();
            loop {
                match this.state.as_mut().project() {
                    CallStateProj::Ready { service, request } => {
                        ready!(service.poll_ready(cx))?;
                        let Some(request) = request.take() else {
                            return Poll::Pending;
                        };
                        let future = service.call(request);
                        this.state.set(CallState::Called { future });
                    }
                    CallStateProj::Called { future } => {
                        let response = ready!(future.poll(cx))?;
                        let in_flight = this.in_flight.take();
                        return Poll::Ready(Ok(
                            response.map(|inner| TrackedBody { inner, in_flight })
                        ));
                    }
                }
            }
        }
    }

    pin_project! {
        /// The response body, holding its request in flight until it ends or is dropped.
        struct TrackedBody<B> {
            #[pin]
            inner: B,
            in_flight: Option<InFlight>,
        }
    }

    impl<B: Body> Body for TrackedBody<B> {
        type Data = B::Data;
        type Error = B::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
            let this = self.project();
            let frame = ready!(this.inner.poll_frame(cx));
            if frame.is_none() {
                this.in_flight.take();
            }
            Poll::Ready(frame)
        }

        fn is_end_stream(&self) -> bool {
            self.inner.is_end_stream()
        }

        fn size_hint(&self) -> SizeHint {
            self.inner.size_hint()
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::runtime::RuntimeFlavor;

    #[test]
    fn one_thread_is_a_single_threaded_runtime() {
        let flavor = |threads| super::runtime(threads).unwrap().handle().runtime_flavor();
        assert_eq!(flavor(1), RuntimeFlavor::CurrentThread);
        assert_eq!(flavor(0), RuntimeFlavor::CurrentThread);
        assert_eq!(flavor(2), RuntimeFlavor::MultiThread);
        assert!(super::default_threads() >= 1);
    }
}
