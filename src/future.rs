//! [`ResponseFuture`]: waits for the inner response, and on a miss for the rule's action.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures::future::BoxFuture;
use http::header::{
    CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderName, HeaderValue, LOCATION, RANGE,
};
use http::{HeaderMap, Method, Response, StatusCode, Uri};
use http_range_header::ParsedRanges;
use pin_project_lite::pin_project;
use std::time::Duration;
use tokio::time::Sleep;

use crate::body::ResponseBody;
use crate::fill::FillSpec;
use crate::fill::reader::Reader;
use crate::fill::registry::Joined;
use crate::fill::shared::HeadView;
use crate::layer::Config;
use crate::progress::{Counters, Outcome};
use crate::rule::{HeadMiss, Mode, RangeMiss, Rule};
use crate::{Error, key};

/// What a request leaves behind for a possible pull.
pub(crate) struct Captured {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    /// The request's headers, only when some rule reads them.
    pub(crate) headers: Option<HeaderMap>,
    pub(crate) range: Option<HeaderValue>,
    pub(crate) config: Arc<Config>,
}

pin_project! {
    /// Response future of [`OriginPull`](crate::OriginPull).
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Inner {
            #[pin]
            future: F,
            captured: Option<Captured>,
        },
        Pulling {
            reader: Option<Reader>,
            // Waiting for a slot of the fill bound; resolves to the reader (or a refusal).
            admit: Option<BoxFuture<'static, Joined>>,
            // Bounds the wait for the fill's head (the fill's head deadline).
            head_timer: Option<Pin<Box<Sleep>>>,
            retry_after: Duration,
            inner: Option<Response<B>>,
            key: String,
            outcome: &'static str,
            header_name: Option<HeaderName>,
            head_only: bool,
            // Serve only this range of the whole object (RangeMiss::FillThenServe).
            range: Option<ParsedRanges>,
            counters: Arc<Counters>,
        },
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn new(future: F, captured: Option<Captured>) -> Self {
        Self {
            state: State::Inner { future, captured },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            let next = match state.as_mut().project() {
                StateProj::Inner { future, captured } => {
                    let response = ready!(future.poll(cx))?;
                    match captured.take() {
                        Some(c) if c.config.triggers_on(response.status()) => {
                            let counters = c.config.counters.clone();
                            match on_miss(c, response) {
                                Miss::Pull(pulling) => pulling,
                                Miss::Answer(response, outcome) => {
                                    counters.request(outcome);
                                    return Poll::Ready(Ok(response));
                                }
                            }
                        }
                        Some(c) => {
                            c.config.counters.request(Outcome::Hit);
                            return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                        }
                        None => return Poll::Ready(Ok(response.map(ResponseBody::inner))),
                    }
                }
                StateProj::Pulling {
                    reader,
                    admit,
                    head_timer,
                    retry_after,
                    inner,
                    key,
                    outcome,
                    header_name,
                    head_only,
                    range,
                    counters,
                } => {
                    if let Some(wait) = admit.as_mut() {
                        let joined = ready!(wait.as_mut().poll(cx));
                        *admit = None;
                        match joined {
                            Joined::Leader(r) => *reader = Some(r),
                            Joined::Waiter(r) => {
                                *reader = Some(r);
                                *outcome = "coalesced";
                            }
                            Joined::Full | Joined::Queued(_) => {
                                counters.request(Outcome::Failed);
                                return Poll::Ready(Ok(unavailable(
                                    *retry_after,
                                    header_name.as_ref(),
                                )));
                            }
                            Joined::KnownMissing | Joined::Refused => {
                                if let Some(response) = inner.take() {
                                    counters.request(Outcome::Missed);
                                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                                }
                            }
                        }
                    }
                    let view = match reader.as_mut() {
                        Some(r) => {
                            let deadline = r.head_deadline();
                            let timer = head_timer.get_or_insert_with(|| {
                                Box::pin(tokio::time::sleep_until(deadline))
                            });
                            match r.poll_head(cx) {
                                Poll::Ready(view) => view,
                                Poll::Pending => {
                                    ready!(timer.as_mut().poll(cx));
                                    HeadView::Failed(Arc::new(Error::FillAborted {
                                        key: key.clone(),
                                        reason: "no response head from the origin within the \
                                                 head timeout",
                                    }))
                                }
                            }
                        }
                        None => HeadView::Failed(Arc::new(Error::FillAborted {
                            key: key.clone(),
                            reason: "polled after completion",
                        })),
                    };
                    let response = match view {
                        // The origin does not have it either: the inner response, untouched.
                        HeadView::NotFound => match inner.take() {
                            Some(response) => {
                                counters.request(Outcome::Missed);
                                return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                            }
                            None => bad_gateway(key, None, header_name.as_ref()),
                        },
                        HeadView::Failed(e) => bad_gateway(key, Some(&e), header_name.as_ref()),
                        HeadView::Ready(head) => {
                            let mut response = match (range.take(), head.content_length) {
                                (Some(range), Some(len)) if !*head_only => {
                                    ranged(range, len, reader.take(), &head.headers)
                                }
                                _ => {
                                    let body = match reader.take() {
                                        Some(r) if !*head_only => ResponseBody::pulled(r),
                                        _ => ResponseBody::empty(),
                                    };
                                    let mut response = Response::new(body);
                                    *response.status_mut() = head.status;
                                    *response.headers_mut() = head.headers.clone();
                                    response
                                }
                            };
                            tag(&mut response, header_name.as_ref(), outcome);
                            response
                        }
                    };
                    counters.request(if response.status() == StatusCode::BAD_GATEWAY {
                        Outcome::Failed
                    } else {
                        Outcome::from_tag(outcome)
                    });
                    return Poll::Ready(Ok(response));
                }
            };
            state.set(next);
        }
    }
}

enum Miss<F, B> {
    Pull(State<F, B>),
    Answer(Response<ResponseBody<B>>, Outcome),
}

/// Decide what a triggering response becomes.
fn on_miss<F, B>(c: Captured, response: Response<B>) -> Miss<F, B> {
    let untouched =
        |response: Response<B>| Miss::Answer(response.map(ResponseBody::inner), Outcome::Missed);
    let Some(key) = key::parse(c.uri.path()) else {
        return untouched(response);
    };
    let plan = c.config.plan(
        &key,
        &c.method,
        response.status(),
        &c.uri,
        c.headers.as_ref(),
    );
    let Some((rule, request)) = plan else {
        return untouched(response);
    };
    tracing::debug!(%key, rule = %rule.label(), mode = ?rule.mode, method = %c.method, "miss matched a rule");
    let header_name = c.config.header_name.clone();
    let head_only = c.method == Method::HEAD;
    let fills = &c.config.fills;
    let spec = |request: &crate::OriginRequest, store: bool, pinned: bool| FillSpec {
        key: key.clone(),
        rule: rule.label(),
        origin: rule.origin.clone(),
        request: request.clone(),
        store: store.then(|| c.config.store.clone()),
        on_disconnect: rule.on_disconnect,
        pinned,
        report: store,
        checks: rule.checks.clone(),
    };
    let retry_after = c.config.fills.retry_after();
    let pulling = |joined: Joined, outcome: &'static str, inner: Response<B>, range| {
        let (reader, admit, outcome) = match joined {
            Joined::Leader(reader) => (Some(reader), None, outcome),
            Joined::Waiter(reader) => (Some(reader), None, "coalesced"),
            Joined::Queued(wait) => (None, Some(wait), outcome),
            Joined::Full => {
                return Miss::Answer(
                    unavailable(retry_after, header_name.as_ref()),
                    Outcome::Failed,
                );
            }
            Joined::KnownMissing | Joined::Refused => return untouched(inner),
        };
        Miss::Pull(State::Pulling {
            reader,
            admit,
            head_timer: None,
            retry_after,
            inner: Some(inner),
            key: key.clone(),
            outcome,
            header_name: header_name.clone(),
            head_only,
            range,
            counters: c.config.counters.clone(),
        })
    };
    let proxy = |request: crate::OriginRequest, inner: Response<B>| {
        pulling(
            fills.start_private(spec(&request, false, false)),
            "proxied",
            inner,
            None,
        )
    };
    let join = |spec: FillSpec, inner: Response<B>, range| {
        pulling(fills.join_or_start(spec), "pulled", inner, range)
    };
    // A single, well-formed range; several ranges (or a malformed header) are ignored, as
    // RFC 9110 allows, and the whole object is answered.
    let range = c
        .range
        .as_ref()
        .filter(|_| !head_only)
        .and_then(|v| http_range_header::parse_range_header(v.to_str().ok()?).ok())
        .filter(|r| r.ranges.len() == 1);
    let with_range = |mut request: crate::OriginRequest| {
        if let Some(value) = c.range.clone() {
            request.headers.insert(RANGE, value);
        }
        request
    };
    match rule.mode {
        Mode::Sync if head_only => match rule.head_miss {
            HeadMiss::OriginHead => proxy(request.with_method(Method::HEAD), response),
            _ => join(spec(&request, true, true), response, None),
        },
        Mode::Sync => match (range, rule.range_miss) {
            (None, _) => join(spec(&request, true, false), response, None),
            (Some(range), RangeMiss::FillThenServe) => {
                join(spec(&request, true, true), response, Some(range))
            }
            (Some(_), RangeMiss::ProxyRange) => proxy(with_range(request), response),
            (Some(_), _) => {
                let enqueued = fills.enqueue(spec(&request, true, true));
                tracing::debug!(%key, rule = %rule.label(), ?enqueued, "range miss: background fill");
                proxy(with_range(request), response)
            }
        },
        Mode::Proxy if head_only => proxy(request.with_method(Method::HEAD), response),
        Mode::Proxy => proxy(with_range(request), response),
        Mode::Redirect => {
            let answer = redirect(rule, &request, &key, header_name.as_ref(), "redirect");
            let outcome = if answer.status().is_redirection() {
                Outcome::Redirect
            } else {
                Outcome::Failed
            };
            Miss::Answer(answer, outcome)
        }
        Mode::Async => {
            let answer = redirect(rule, &request, &key, header_name.as_ref(), "async");
            let outcome = if answer.status().is_redirection() {
                let enqueued = fills.enqueue(spec(&request, true, true));
                tracing::debug!(%key, rule = %rule.label(), ?enqueued, "async fill");
                Outcome::Async
            } else {
                Outcome::Failed
            };
            Miss::Answer(answer, outcome)
        }
    }
}

/// A `206` for `range` of an object of `len` bytes streamed by `reader`, or a `416`.
fn ranged<B>(
    range: ParsedRanges,
    len: u64,
    reader: Option<Reader>,
    headers: &HeaderMap,
) -> Response<ResponseBody<B>> {
    let mut response;
    match (
        range.validate(len).ok().and_then(|r| r.into_iter().next()),
        reader,
    ) {
        (Some(r), Some(reader)) if len > 0 => {
            let (start, end) = (*r.start(), *r.end());
            response = Response::new(ResponseBody::range(reader, start, end - start + 1));
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            *response.headers_mut() = headers.clone();
            let h = response.headers_mut();
            h.insert(CONTENT_LENGTH, HeaderValue::from(end - start + 1));
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                h.insert(CONTENT_RANGE, v);
            }
        }
        _ => {
            // Unsatisfiable: the fill goes on (it is pinned), the client gets a 416.
            response = Response::new(ResponseBody::empty());
            *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                response.headers_mut().insert(CONTENT_RANGE, v);
            }
            response
                .headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        }
    }
    response
}

fn tag<B>(response: &mut Response<B>, name: Option<&HeaderName>, outcome: &'static str) {
    if let Some(name) = name {
        response
            .headers_mut()
            .insert(name.clone(), HeaderValue::from_static(outcome));
    }
}

fn redirect<B>(
    rule: &Rule,
    request: &crate::OriginRequest,
    key: &str,
    header_name: Option<&HeaderName>,
    outcome: &'static str,
) -> Response<ResponseBody<B>> {
    let location = rule
        .origin
        .location(request)
        .and_then(|uri| HeaderValue::from_str(&uri.to_string()).ok());
    let Some(location) = location else {
        let e = Error::config(format!(
            "rule {}: its origin has no URL to redirect clients to",
            rule.label()
        ));
        tracing::error!(%key, error = %e, "cannot redirect");
        return bad_gateway(key, Some(&e), header_name);
    };
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = rule.redirect_status.status();
    response.headers_mut().insert(LOCATION, location);
    response
        .headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    tag(&mut response, header_name, outcome);
    response
}

/// `503` with `Retry-After`: too many fills running.
fn unavailable<B>(after: Duration, header_name: Option<&HeaderName>) -> Response<ResponseBody<B>> {
    let mut response = Response::new(ResponseBody::message(
        "503 Service Unavailable: too many objects being pulled; retry later\n".to_owned(),
    ));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        http::header::RETRY_AFTER,
        HeaderValue::from(after.as_secs().max(1)),
    );
    tag(&mut response, header_name, "failed");
    response
}

fn bad_gateway<B>(
    key: &str,
    error: Option<&Error>,
    header_name: Option<&HeaderName>,
) -> Response<ResponseBody<B>> {
    let reason = match error {
        Some(Error::OriginStatus { status, .. }) => format!("origin answered {}", status.as_u16()),
        Some(Error::OriginTimeout { .. }) => "origin timed out".to_owned(),
        Some(Error::OriginRequest { .. }) => "origin unreachable".to_owned(),
        Some(Error::HeadTimeout { .. }) => "origin timed out".to_owned(),
        Some(Error::FillAborted { reason, .. }) => (*reason).to_owned(),
        Some(Error::Config { .. }) => "origin cannot be redirected to".to_owned(),
        _ => "origin pull failed".to_owned(),
    };
    let mut response = Response::new(ResponseBody::message(format!(
        "502 Bad Gateway: could not pull {key}: {reason}\n"
    )));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    tag(&mut response, header_name, "failed");
    response
}
