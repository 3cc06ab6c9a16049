//! Refresh: stored objects revalidated against their origin once they are older than a
//! rule's [`revalidate_after`](crate::Rule::revalidate_after).
//!
//! A hit on such an object is served from the store at once; it queues one background
//! refresh fill for the key, deduplicated and bounded by the fill registry like any async
//! fill. That fill asks the origin conditionally (`If-None-Match` / `If-Modified-Since` from
//! the validators kept with the object): `304` records the validation time beside the object
//! (the bytes are not rewritten), `200` replaces the object atomically, `404` keeps or
//! removes it per [`OriginGone`](crate::OriginGone). The time of the last validation is the
//! later of the object's store time and the recorded one, so it survives a restart.
//!
//! Per process, the next time each key is due is remembered (at most [`MAX_DUE`] keys; past
//! that the memory starts over, which costs a background store lookup per key, never an
//! origin request), so hits on a fresh object queue nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use http::Method;

use crate::engine::Engine;
use crate::fill::FillSpec;
use crate::fill::registry::Fills;
use crate::fill::shared::Ended;
use crate::store::Committed;

/// How many keys' next due times a rule remembers.
pub(crate) const MAX_DUE: usize = 65_536;

/// A rule's refresh policy.
#[derive(Debug, Clone)]
pub(crate) struct Revalidate {
    pub(crate) after: Duration,
    pub(crate) due: Arc<Due>,
}

impl Revalidate {
    pub(crate) fn new(after: Duration) -> Self {
        Self {
            after,
            due: Arc::default(),
        }
    }
}

/// What a revalidation before serving found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The stored object is current: serve the inner response.
    Current,
    /// The object was replaced by the origin's new version: serve that.
    Replaced,
    /// The origin no longer has it.
    Gone,
    /// Could not revalidate (origin unreachable, new version not storable, no slot).
    Failed,
}

/// When each key is next due for revalidation, in this process.
#[derive(Debug, Default)]
pub(crate) struct Due {
    map: Mutex<HashMap<String, Instant>>,
}

impl Due {
    /// Whether `key` is known fresh now.
    pub(crate) fn is_fresh(&self, key: &str) -> bool {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).is_some_and(|due| *due > Instant::now())
    }

    /// `key` is fresh for `for_` from now.
    pub(crate) fn set(&self, key: &str, for_: Duration) {
        let until = crate::time::deadline(for_).into_std();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_DUE && !map.contains_key(key) {
            map.clear();
        }
        map.insert(key.to_owned(), until);
    }
}

/// A hit (the inner service answered it from the store): queue a background refresh of the
/// key if a rule refreshes it and it is not known fresh; for a rule that revalidates before
/// serving, the revalidation to wait for instead.
pub(crate) fn on_hit(
    engine: &Engine,
    method: &Method,
    uri: &http::Uri,
    headers: Option<&http::HeaderMap>,
) -> Option<BoxFuture<'static, Verdict>> {
    let key = crate::key::parse(uri.path())?;
    let rule = engine
        .rules
        .iter()
        .find(|r| r.takes(&key, method, headers))?;
    let policy = rule.checks.revalidate.as_ref()?;
    // Variants are stored under other keys; they are not refreshed (documented).
    if rule.keys_input() || policy.due.is_fresh(&key) {
        return None;
    }
    let spec = spec(engine, &key, uri, false)?;
    if rule.checks.before_serve {
        let fills = engine.fills.clone();
        let wait = engine.settings.queue_timeout;
        return Some(Box::pin(revalidate_now(fills, spec, wait)));
    }
    let enqueued = engine.fills.enqueue(spec);
    tracing::debug!(%key, ?enqueued, "refresh queued");
    None
}

/// Revalidate `spec`'s key now (joining a fill of the key in flight), waiting at most
/// `wait` for a slot of the fill bound.
async fn revalidate_now(fills: Arc<Fills>, spec: FillSpec, wait: Duration) -> Verdict {
    let Ok(Some(fill)) = tokio::time::timeout(wait, fills.ensure(spec)).await else {
        return Verdict::Failed;
    };
    fill.wait_ended().await;
    match (fill.ended(), fill.committed()) {
        (Some(Ended::Stored(_)), Some(Committed::Refreshed)) => Verdict::Replaced,
        (Some(Ended::Stored(_)), _) => Verdict::Current,
        (Some(Ended::NotFound), _) => Verdict::Gone,
        _ => Verdict::Failed,
    }
}

/// The refresh fill of `key` by the rule that takes it: for a hit (the rule must refresh),
/// or `now` for [`Warmup::refresh`](crate::warmup::Warmup::refresh) (whatever the object's
/// age, with any rule that stores objects).
pub(crate) fn spec(engine: &Engine, key: &str, uri: &http::Uri, now: bool) -> Option<FillSpec> {
    let (rule, request) = engine.plan(key, &Method::GET, http::StatusCode::NOT_FOUND, uri, None)?;
    let mut checks = rule.checks.clone();
    if now {
        if !matches!(
            rule.mode,
            crate::rule::Mode::Sync | crate::rule::Mode::Async
        ) {
            return None;
        }
        let due = checks.revalidate.as_ref().map(|r| r.due.clone());
        checks.revalidate = Some(Revalidate {
            after: Duration::ZERO,
            due: due.unwrap_or_default(),
        });
    }
    checks.revalidate.as_ref()?;
    checks.refresh_fill = true;
    Some(FillSpec {
        key: key.to_owned(),
        rule: rule.label(),
        origin: rule.origin.clone(),
        request,
        store: Some(engine.store.clone()),
        on_disconnect: rule.on_disconnect,
        pinned: true,
        report: true,
        checks,
    })
}
