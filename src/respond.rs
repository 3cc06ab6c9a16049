//! The responses the layer makes itself: a pulled object (whole or a range of it), a
//! redirect, `502`, `503`, `416`. Each is tagged with its [`Outcome`].

use std::time::Duration;

use http::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

use crate::Error;
use crate::body::ResponseBody;
use crate::fill::reader::Reader;
use crate::fill::shared::Head;
use crate::progress::Outcome;
use crate::serve::range::{self, Decision};

/// Add the header saying what happened.
pub(crate) fn tag<B>(response: &mut Response<B>, name: Option<&HeaderName>, outcome: Outcome) {
    if let Some(name) = name {
        response
            .headers_mut()
            .insert(name.clone(), outcome.header_value());
    }
}

/// The answer to a request that read a fill whose head is `head`: the object, or — for a
/// client `Range` — the one range decision `ServeStore` makes on a hit ([`range::decide`]):
/// `206` with the range, the whole object, or `416`. An origin's own `206` (a range it was
/// asked for) passes through; its `416` becomes the `416` a hit would give.
pub(crate) fn pulled<B>(
    head: &Head,
    reader: Option<Reader>,
    range: Option<&HeaderValue>,
    head_only: bool,
    outcome: Outcome,
) -> (Response<ResponseBody<B>>, Outcome) {
    if head.status == StatusCode::RANGE_NOT_SATISFIABLE {
        let len = head
            .headers
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes */"))
            .and_then(|n| n.parse::<u64>().ok());
        return (unsatisfiable(len), Outcome::PassedThrough);
    }
    let decision = match (range, head.status, head.content_length) {
        (Some(range), StatusCode::OK, Some(len)) if !head_only => range::decide(range, len),
        _ => Decision::Full,
    };
    let outcome = match head.status {
        StatusCode::OK | StatusCode::PARTIAL_CONTENT => outcome,
        _ => Outcome::PassedThrough,
    };
    match decision {
        Decision::Unsatisfiable => (unsatisfiable(head.content_length), outcome),
        Decision::Partial(bytes) => {
            let len = head.content_length.unwrap_or(bytes.end);
            let take = bytes.end - bytes.start;
            let body = match reader {
                Some(reader) => ResponseBody::range(reader, bytes.start, take),
                None => ResponseBody::empty(),
            };
            let mut response = with_headers(body, StatusCode::PARTIAL_CONTENT, &head.headers);
            let h = response.headers_mut();
            h.insert(CONTENT_LENGTH, HeaderValue::from(take));
            if let Ok(v) =
                HeaderValue::from_str(&format!("bytes {}-{}/{len}", bytes.start, bytes.end - 1))
            {
                h.insert(CONTENT_RANGE, v);
            }
            (response, outcome)
        }
        Decision::Full => {
            let body = match reader {
                Some(r) if !head_only => ResponseBody::pulled(r),
                _ => ResponseBody::empty(),
            };
            (with_headers(body, head.status, &head.headers), outcome)
        }
    }
}

fn with_headers<B>(
    body: ResponseBody<B>,
    status: StatusCode,
    headers: &HeaderMap,
) -> Response<ResponseBody<B>> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers.clone();
    response
}

/// `416` with `Content-Range: bytes */len` (when the length is known), as `ServeStore`.
fn unsatisfiable<B>(len: Option<u64>) -> Response<ResponseBody<B>> {
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
    if let Some(v) = len.and_then(|len| HeaderValue::from_str(&format!("bytes */{len}")).ok()) {
        response.headers_mut().insert(CONTENT_RANGE, v);
    }
    response
        .headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

/// A redirect to `location`.
pub(crate) fn redirect<B>(status: StatusCode, location: HeaderValue) -> Response<ResponseBody<B>> {
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::LOCATION, location);
    response
        .headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

/// `503` with `Retry-After`: every fill slot is taken.
pub(crate) fn unavailable<B>(after: Duration) -> Response<ResponseBody<B>> {
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
    response
}

/// `502` with a one-line reason (never the origin's page).
pub(crate) fn bad_gateway<B>(key: &str, error: Option<&Error>) -> Response<ResponseBody<B>> {
    let reason = match error.map(Error::root) {
        Some(Error::OriginStatus { status, .. }) => format!("origin answered {}", status.as_u16()),
        Some(Error::OriginTimeout { .. } | Error::HeadTimeout { .. }) => {
            "origin timed out".to_owned()
        }
        Some(Error::OriginRequest { .. }) => "origin unreachable".to_owned(),
        Some(Error::Config { .. }) => "origin cannot be redirected to".to_owned(),
        Some(Error::FillAborted { reason, .. }) => (*reason).to_owned(),
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
