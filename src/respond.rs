//! The responses the layer makes itself: a pulled object (whole or a range of it), a
//! redirect, `502`, `503`, `416`. Each is tagged with its [`Outcome`].

use std::time::Duration;

use http::header::{
    CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, HeaderName, HeaderValue, LAST_MODIFIED,
};
use http::{HeaderMap, Response, StatusCode};

use crate::Error;
use crate::body::ResponseBody;
use crate::fill::reader::Reader;
use crate::fill::shared::Head;
use crate::progress::Outcome;
use crate::serve::conditional::{self, Validators, whole_seconds};
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

/// The validators a hit of the object will answer with: the origin's `ETag` and
/// `Last-Modified` (kept with the object), or — for an origin that sends no
/// `Last-Modified` — the time it is stored, now.
pub(crate) fn validators(head: &Head) -> Validators {
    let last_modified = head
        .headers
        .get(LAST_MODIFIED)
        .and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok())
        .unwrap_or_else(std::time::SystemTime::now);
    Validators {
        etag: head.headers.get(ETAG).cloned(),
        last_modified: whole_seconds(last_modified),
    }
}

/// The request's preconditions evaluated against the fill's head, with the rules and order
/// `ServeStore` applies on a hit: `Some` answer (`304` or `412`) when they decide it. Only a
/// whole or ranged object is judged; other statuses pass through as they are.
pub(crate) fn preconditions<B>(
    head: &Head,
    conditions: &HeaderMap,
) -> Option<Response<ResponseBody<B>>> {
    if !matches!(head.status, StatusCode::OK | StatusCode::PARTIAL_CONTENT) {
        return None;
    }
    match conditional::evaluate(conditions, &validators(head)) {
        conditional::Outcome::Proceed => None,
        conditional::Outcome::NotModified => {
            let headers = crate::serve::headers::not_modified_headers(&head.headers);
            Some(with_headers(
                ResponseBody::empty(),
                StatusCode::NOT_MODIFIED,
                &headers,
            ))
        }
        conditional::Outcome::Failed => {
            let mut response =
                Response::new(ResponseBody::message("precondition failed\n".to_owned()));
            *response.status_mut() = StatusCode::PRECONDITION_FAILED;
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            Some(response)
        }
    }
}

/// Whether the client's `Range` may be honoured on the fill's head: its `If-Range`, if
/// any, matches the validators a hit would have.
pub(crate) fn if_range_holds(head: &Head, conditions: Option<&HeaderMap>) -> bool {
    conditions.is_none_or(|c| conditional::if_range_holds(c, &validators(head)))
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

/// `404`: a revalidation before serving found the object gone at its origin.
pub(crate) fn gone<B>() -> Response<ResponseBody<B>> {
    let mut response = Response::new(ResponseBody::message(
        "404 Not Found: the origin no longer has this object\n".to_owned(),
    ));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
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
        Some(Error::OriginRequest { source, .. })
            if source.to_string().starts_with("TLS handshake failed") =>
        {
            "origin TLS handshake failed (certificate name or issuer)".to_owned()
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
