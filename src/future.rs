//! [`ResponseFuture`]: waits for the inner response, and on a miss for the rule's action.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue, LOCATION};
use http::{Method, Response, StatusCode, Uri};
use pin_project_lite::pin_project;

use crate::body::ResponseBody;
use crate::fill::FillSpec;
use crate::fill::reader::Reader;
use crate::fill::registry::Joined;
use crate::fill::shared::HeadView;
use crate::layer::Config;
use crate::rule::{Mode, Rule};
use crate::{Error, key};

/// What a request leaves behind for a possible pull.
pub(crate) struct Captured {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
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
            inner: Option<Response<B>>,
            key: String,
            outcome: &'static str,
            header_name: Option<HeaderName>,
            head_only: bool,
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
                            match on_miss(c, response) {
                                Miss::Pull(pulling) => pulling,
                                Miss::Answer(response) => return Poll::Ready(Ok(response)),
                            }
                        }
                        _ => return Poll::Ready(Ok(response.map(ResponseBody::inner))),
                    }
                }
                StateProj::Pulling {
                    reader,
                    inner,
                    key,
                    outcome,
                    header_name,
                    head_only,
                } => {
                    let view = match reader.as_mut() {
                        Some(r) => ready!(r.poll_head(cx)),
                        None => HeadView::Failed(Arc::new(Error::FillAborted {
                            key: key.clone(),
                            reason: "polled after completion",
                        })),
                    };
                    let response = match view {
                        // The origin does not have it either: the inner response, untouched.
                        HeadView::NotFound => match inner.take() {
                            Some(response) => {
                                return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                            }
                            None => bad_gateway(key, None, header_name.as_ref()),
                        },
                        HeadView::Failed(e) => bad_gateway(key, Some(&e), header_name.as_ref()),
                        HeadView::Ready(head) => {
                            let body = match reader.take() {
                                Some(r) if !*head_only => ResponseBody::pulled(r),
                                _ => ResponseBody::empty(),
                            };
                            let mut response = Response::new(body);
                            *response.headers_mut() = head.headers.clone();
                            tag(&mut response, header_name.as_ref(), outcome);
                            response
                        }
                    };
                    return Poll::Ready(Ok(response));
                }
            };
            state.set(next);
        }
    }
}

enum Miss<F, B> {
    Pull(State<F, B>),
    Answer(Response<ResponseBody<B>>),
}

/// Decide what a triggering response becomes.
fn on_miss<F, B>(c: Captured, response: Response<B>) -> Miss<F, B> {
    let untouched = |response: Response<B>| Miss::Answer(response.map(ResponseBody::inner));
    let Some(key) = key::parse(c.uri.path()) else {
        return untouched(response);
    };
    let Some((rule, request)) = c
        .config
        .plan(&key, &c.method, response.status(), c.uri.query())
    else {
        return untouched(response);
    };
    let header_name = c.config.header_name.clone();
    let head_only = c.method == Method::HEAD;
    let spec = |store: bool, pinned: bool, report: bool| FillSpec {
        key: key.clone(),
        rule: rule.label(),
        origin: rule.origin.clone(),
        request: request.clone(),
        store: store.then(|| c.config.store.clone()),
        on_disconnect: rule.on_disconnect,
        pinned,
        report,
    };
    let pulling = |reader: Reader, outcome: &'static str, inner: Response<B>| {
        Miss::Pull(State::Pulling {
            reader: Some(reader),
            inner: Some(inner),
            key: key.clone(),
            outcome,
            header_name: header_name.clone(),
            head_only,
        })
    };
    match rule.mode {
        Mode::Sync => match c.config.fills.join_or_start(spec(true, head_only, true)) {
            Joined::Leader(reader) => pulling(reader, "pulled", response),
            Joined::Waiter(reader) => pulling(reader, "coalesced", response),
            Joined::KnownMissing | Joined::Refused => untouched(response),
        },
        Mode::Proxy => match c.config.fills.start_private(spec(false, false, false)) {
            Some(reader) => pulling(reader, "proxied", response),
            None => untouched(response),
        },
        Mode::Redirect => Miss::Answer(redirect(
            rule,
            &request,
            &key,
            header_name.as_ref(),
            "redirect",
        )),
        Mode::Async => {
            let answer = redirect(rule, &request, &key, header_name.as_ref(), "async");
            if answer.status().is_redirection() {
                let enqueued = c.config.fills.enqueue(spec(true, true, true));
                tracing::debug!(%key, rule = %rule.label(), ?enqueued, "async fill");
            }
            Miss::Answer(answer)
        }
    }
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

fn bad_gateway<B>(
    key: &str,
    error: Option<&Error>,
    header_name: Option<&HeaderName>,
) -> Response<ResponseBody<B>> {
    let reason = match error {
        Some(Error::OriginStatus { status, .. }) => format!("origin answered {}", status.as_u16()),
        Some(Error::OriginTimeout { .. }) => "origin timed out".to_owned(),
        Some(Error::OriginRequest { .. }) => "origin unreachable".to_owned(),
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
