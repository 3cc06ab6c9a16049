//! The refresh fill: a conditional request for a stored object (see `crate::refresh`).

use std::time::SystemTime;

use http::StatusCode;
use http::header::{IF_MODIFIED_SINCE, IF_NONE_MATCH};

use super::{Begun, Pulled, Stream};
use crate::Error;
use crate::fill::shared::{Fill, Head};
use crate::fill::verify::Verifier;
use crate::fill::{FillSpec, meta};
use crate::rule::OriginGone;
use crate::store::Committed;

/// Ask the origin whether the stored object is still its current version, unless it was
/// validated recently enough.
pub(super) async fn begin(fill: &Fill, spec: &FillSpec) -> Result<Begun, Error> {
    let key = spec.key.as_str();
    let (Some(store), Some(policy)) = (&fill.store, &spec.checks.revalidate) else {
        return Err(Error::config(
            "a refresh needs a store and a refresh policy",
        ));
    };
    let Some(validation) = store.validation(key).await? else {
        fill.complete_unstored(std::sync::Arc::new(super::not_stored(key)));
        return Ok(Begun::Done(Pulled::NotStored {
            reason: "not in the store any more",
        }));
    };
    let now = SystemTime::now();
    let age = now
        .duration_since(validation.validated_at)
        .unwrap_or_default();
    if age < policy.after {
        policy.due.set(key, policy.after - age);
        fill.complete(Committed::AlreadyExists);
        return Ok(Begun::Done(Pulled::Revalidated {
            asked_origin: false,
        }));
    }
    let mut request = spec.request.clone();
    let validator = |v: &Option<String>| v.as_deref().and_then(|v| v.parse().ok());
    if let Some(etag) = validator(&validation.etag) {
        request.headers.insert(IF_NONE_MATCH, etag);
    }
    if let Some(date) = validator(&validation.last_modified) {
        request.headers.insert(IF_MODIFIED_SINCE, date);
    }
    let mut response = spec.origin.fetch(request).await?;
    if response.status == StatusCode::OK {
        meta::last_modified_if_missing(&mut response.headers);
    }
    match response.status {
        StatusCode::NOT_MODIFIED => {
            store.set_validated(key, now).await?;
            policy.due.set(key, policy.after);
            fill.complete(Committed::AlreadyExists);
            Ok(Begun::Done(Pulled::Revalidated { asked_origin: true }))
        }
        StatusCode::NOT_FOUND => {
            match spec.checks.gone {
                OriginGone::Keep => policy.due.set(key, policy.after),
                OriginGone::Delete => store.remove(key).await?,
            }
            fill.not_found();
            Ok(Begun::Done(Pulled::NotFound))
        }
        StatusCode::OK => {
            // The storing rules hold for a new version as for the first.
            let private =
                meta::private_reason(&response.headers).filter(|_| !spec.checks.store_private);
            let risk = meta::type_risk(&response.headers, key, store.keeps_attributes())
                .filter(|_| !spec.checks.store_mistyped);
            if let Some(reason) = private.or(risk) {
                policy.due.set(key, policy.after);
                fill.complete_unstored(std::sync::Arc::new(super::not_stored(key)));
                return Ok(Begun::Done(Pulled::NotStored { reason }));
            }
            let verifier = Verifier::new(key, &spec.checks.checksums, &response.headers)?;
            let attributes = meta::attributes(&response.headers, &spec.checks.keep);
            let writer = store.begin_replace(key, attributes).await?;
            let origin_etag = response
                .headers
                .get(http::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            fill.set_head(Head {
                status: StatusCode::OK,
                headers: meta::client_headers(&response.headers, &spec.checks.keep),
                content_length: response.content_length,
                shared: true,
            });
            Ok(Begun::Stream(Stream {
                body: response.body,
                expected: response.content_length,
                origin_etag,
                writer: Some(writer),
                verifier: Some(verifier),
                unstored: None,
            }))
        }
        status => Err(Error::OriginStatus {
            key: key.to_owned(),
            status,
        }),
    }
}
