//! [`ResponseFuture`]: waits for the inner response, and for the origin on a pull.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Uri};
use pin_project_lite::pin_project;
use tokio::sync::oneshot;

use crate::body::ResponseBody;
use crate::fill::{self, FillSpec, Head};
use crate::layer::Config;
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
            head: oneshot::Receiver<Head>,
            inner: Option<Response<B>>,
            key: String,
            header_name: Option<HeaderName>,
            method: Method,
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
                            match start_pull(c, response) {
                                Ok(pulling) => pulling,
                                Err(response) => {
                                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                                }
                            }
                        }
                        _ => return Poll::Ready(Ok(response.map(ResponseBody::inner))),
                    }
                }
                StateProj::Pulling {
                    head,
                    inner,
                    key,
                    header_name,
                    method,
                } => {
                    let head = ready!(Pin::new(head).poll(cx)).unwrap_or_else(|_| {
                        Head::Failed(Error::FillAborted {
                            key: key.clone(),
                            reason: "the fill task ended before the origin answered",
                        })
                    });
                    let (mut response, outcome) = match head {
                        // The origin does not have it either: the inner response, untouched.
                        Head::NotFound => match inner.take() {
                            Some(response) => {
                                return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                            }
                            None => (
                                bad_gateway(
                                    key,
                                    &Error::FillAborted {
                                        key: key.clone(),
                                        reason: "polled after completion",
                                    },
                                ),
                                "failed",
                            ),
                        },
                        Head::Failed(e) => (bad_gateway(key, &e), "failed"),
                        Head::Streaming { headers, body } => {
                            let body = if *method == Method::HEAD {
                                ResponseBody::empty()
                            } else {
                                ResponseBody::pulled(body)
                            };
                            let mut response = Response::new(body);
                            *response.headers_mut() = headers;
                            (response, "pulled")
                        }
                    };
                    if let Some(name) = header_name.take() {
                        response
                            .headers_mut()
                            .insert(name, HeaderValue::from_static(outcome));
                    }
                    return Poll::Ready(Ok(response));
                }
            };
            state.set(next);
        }
    }
}

/// Decide whether a triggering response is pulled: `Err` gives it back untouched.
fn start_pull<F, B>(c: Captured, response: Response<B>) -> Result<State<F, B>, Response<B>> {
    let Some(key) = key::parse(c.uri.path()) else {
        return Err(response);
    };
    let Some((rule, request)) = c
        .config
        .plan(&key, &c.method, response.status(), c.uri.query())
    else {
        return Err(response);
    };
    let head = fill::start(FillSpec {
        key: key.clone(),
        rule: rule.label(),
        origin: rule.origin.clone(),
        request,
        store: c.config.store.clone(),
        on_disconnect: rule.on_disconnect,
        detached: c.method == Method::HEAD,
    });
    Ok(State::Pulling {
        head,
        inner: Some(response),
        key,
        header_name: c.config.header_name.clone(),
        method: c.method,
    })
}

fn bad_gateway<B>(key: &str, error: &Error) -> Response<ResponseBody<B>> {
    let reason = match error {
        Error::OriginStatus { status, .. } => format!("origin answered {}", status.as_u16()),
        Error::OriginTimeout { .. } => "origin timed out".to_owned(),
        Error::OriginRequest { .. } => "origin unreachable".to_owned(),
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
    response
}
