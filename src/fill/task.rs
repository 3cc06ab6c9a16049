//! The fill task: check the store again → fetch → verify → tee to readers and the store →
//! commit or abort → tell the readers and the subscribers.

mod refresh;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use http::header::{ACCEPT_RANGES, ETAG};
use http::{Method, StatusCode};
use tokio::time::Instant;

use super::guard::FillGuard;
use super::shared::{Abandoned, Fill, Head};
use super::verify::Verifier;
use super::{FillSpec, Limits, meta};
use crate::Error;
use crate::events::FillEvent;
use crate::rule::Oversize;
use crate::store::{Committed, StoreWrite, StoredObject};
use crate::time;

/// The task of one fill: run it under its guard, catching panics, so that however it ends
/// the guard settles it (see [`FillGuard`]).
pub(crate) async fn supervise(mut guard: FillGuard, spec: FillSpec, limits: Limits) {
    let fill = guard.fill.clone();
    let started = guard.started;
    let run = std::panic::AssertUnwindSafe(run(&limits, &fill, &spec, started));
    match run.catch_unwind().await {
        Ok(event) => guard.ended(event),
        Err(panic) => guard.panicked(panic_message(panic.as_ref())),
    }
    // The guard drops here: registry entry, slot, counters and the final event.
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Pull, and say how the fill ended as its final event.
async fn run(limits: &Limits, fill: &Fill, spec: &FillSpec, started: Instant) -> FillEvent {
    match pull(limits, fill, spec).await {
        Ok(Pulled::Stored {
            bytes,
            committed,
            origin_etag,
        }) => FillEvent::Completed {
            key: spec.key.clone(),
            rule: spec.rule.clone(),
            bytes,
            duration: started.elapsed(),
            origin_etag,
            committed,
        },
        Ok(Pulled::NotStored { reason }) => FillEvent::Failed {
            key: spec.key.clone(),
            rule: spec.rule.clone(),
            reason: format!("not stored: {reason}"),
        },
        Ok(Pulled::NotFound) => FillEvent::NotFound {
            key: spec.key.clone(),
            rule: spec.rule.clone(),
        },
        Ok(Pulled::Revalidated { asked_origin }) => FillEvent::Revalidated {
            key: spec.key.clone(),
            rule: spec.rule.clone(),
            asked_origin,
        },
        Err(e) => {
            let reason = e.to_string();
            fill.fail(e);
            FillEvent::Failed {
                key: spec.key.clone(),
                rule: spec.rule.clone(),
                reason,
            }
        }
    }
}

enum Pulled {
    Stored {
        bytes: u64,
        committed: Committed,
        origin_etag: Option<String>,
    },
    /// Streamed to the readers, deliberately not stored.
    NotStored {
        reason: &'static str,
    },
    NotFound,
    /// A refresh found the stored object current (by asking the origin, or because it was
    /// validated recently enough).
    Revalidated {
        asked_origin: bool,
    },
}

async fn pull(limits: &Limits, fill: &Fill, spec: &FillSpec) -> Result<Pulled, Error> {
    let key = spec.key.as_str();
    let begun = tokio::select! {
        biased;
        () = limits.cancelled() => return Err(cancelled(key)),
        // A fill that stores nothing is there for its readers alone: once they have all
        // left (a proxied client that went away, a cold range's speculative fill that its
        // range did not need), stop waiting for the origin's head; dropping the fetch
        // drops its connection. A stored fill keeps its `ClientDisconnect` behaviour.
        () = fill.wait_abandoned(), if fill.store.is_none() => return Err(cancelled(key)),
        begun = tokio::time::timeout_at(fill.head_deadline(), begin(fill, spec)) => {
            begun.map_err(|_| Error::HeadTimeout {
                key: key.to_owned(),
                timeout: limits.head_timeout,
            })??
        }
    };
    match begun {
        Begun::Done(pulled) => Ok(pulled),
        Begun::Replay(object) => replay_stored(limits, fill, object).await,
        Begun::Stream(mut stream) => {
            // The head is set and its readers woken: let them send it before this task goes
            // on to the body (a small body is complete at once, and its commit's hand-off
            // to the blocking pool would otherwise run before the readers' heads go out:
            // on one CPU that was most of a cold request's first-byte overhead).
            tokio::task::yield_now().await;
            open_spool(limits, fill, stream.expected, stream.writer.as_mut()).await;
            copy(limits, fill, spec, stream).await
        }
    }
}

/// Give a shared fill a spool when its object may outgrow the window (its length is not
/// known, or larger): late and ranged readers then read it instead of waiting for the
/// commit. Where the store write keeps its bytes in a local file it can be read from
/// (`StoreWrite::staging`), that file is the spool; else the fill writes one of its own.
/// A spool that cannot be created is counted and the fill goes on without it.
async fn open_spool(
    limits: &Limits,
    fill: &Fill,
    expected: Option<u64>,
    writer: Option<&mut Box<dyn StoreWrite>>,
) {
    let Some(spools) = limits.spools.clone() else {
        return;
    };
    if expected.is_some_and(|n| n <= fill.window() as u64) {
        return;
    }
    // Batches of at most a quarter of the window (the writer may take less), so the bytes
    // not yet in the file are always still in the window, as with a spool of the fill's own.
    let batch = (fill.window() / 4).max(1);
    if let Some(staging) = writer.and_then(|w| w.staging(batch)) {
        fill.attach_spool(Arc::new(spools.of_staging(staging)));
        return;
    }
    let created = tokio::task::spawn_blocking(move || {
        let created = spools.create();
        (spools, created)
    })
    .await;
    match created {
        Ok((_, Ok(spool))) => fill.attach_spool(Arc::new(spool)),
        Ok((spools, Err(e))) => {
            tracing::warn!(error = %e, "cannot create a spool; the fill goes on without one");
            spools.counted_fallback(false);
        }
        Err(e) => tracing::warn!(error = %e, "cannot create a spool"),
    }
}

/// Where a fill stands once it has its head.
enum Begun {
    /// Nothing more to do.
    Done(Pulled),
    /// The store has the object already.
    Replay(StoredObject),
    /// The origin's body is to be copied.
    Stream(Stream),
}

struct Stream {
    body: BoxStream<'static, Result<Bytes, Error>>,
    expected: Option<u64>,
    origin_etag: Option<String>,
    writer: Option<Box<dyn StoreWrite>>,
    verifier: Option<Verifier>,
    unstored: Option<&'static str>,
}

/// Everything up to the head, bounded by the head timeout: the store re-check, the origin's
/// head, the checks on it, the start of the store write.
async fn begin(fill: &Fill, spec: &FillSpec) -> Result<Begun, Error> {
    if spec.checks.refresh_fill {
        return refresh::begin(fill, spec).await;
    }
    let key = spec.key.as_str();
    let head_request = spec.request.method == Method::HEAD;
    if let (Some(store), false) = (&fill.store, head_request) {
        if let Some(begun) = recheck(fill, &**store, key, !spec.checks.store_checked).await {
            return Ok(begun);
        }
    }
    if fill.take_defer_fetch() {
        tokio::task::yield_now().await;
    }
    let mut response = spec.origin.fetch(spec.request.clone()).await?;
    let status = response.status;
    if status == StatusCode::OK {
        meta::last_modified_if_missing(&mut response.headers);
    }
    if status == StatusCode::NOT_FOUND {
        fill.not_found();
        return Ok(Begun::Done(Pulled::NotFound));
    }
    check_status(fill, spec, status)?;
    if fill.abandoned() {
        return Err(cancelled(key));
    }
    let expected = response.content_length;
    let origin_etag = response
        .headers
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Only a whole object, within the rule's size limit, is stored.
    let mut unstored = (fill.store.is_none() || status != StatusCode::OK || head_request)
        .then_some("not a storable response");
    if let (Some((limit, oversize)), Some(len)) = (spec.checks.max_size, expected) {
        if len > limit {
            match oversize {
                Oversize::Refuse => {
                    return Err(Error::TooLarge {
                        key: key.to_owned(),
                        limit,
                    });
                }
                Oversize::Proxy => unstored = Some("larger than the rule's size limit"),
            }
        }
    }
    // A response for its requester only is neither stored nor shared (RFC 9111 §3).
    let private = meta::private_reason(&response.headers).filter(|_| !spec.checks.store_private);
    if let Some(reason) = private {
        unstored.get_or_insert(reason);
    }
    if let (Some(store), None, false) = (&fill.store, unstored, spec.checks.store_mistyped) {
        // Never upgrade an object's type where the store cannot keep it.
        unstored = meta::type_risk(&response.headers, key, store.keeps_attributes());
    }
    let (writer, verifier) = start_write(fill, spec, &response.headers, &mut unstored).await?;
    let mut headers = meta::client_headers(&response.headers, &spec.checks.keep);
    if status == StatusCode::OK {
        // Readers of the fill get ranges of it, as every hit after it does.
        headers.insert(ACCEPT_RANGES, http::HeaderValue::from_static("bytes"));
    }
    if private.is_some() {
        // Its requester's own cookies; nobody else sees this response.
        for cookie in response.headers.get_all(http::header::SET_COOKIE) {
            headers.append(http::header::SET_COOKIE, cookie.clone());
        }
    }
    fill.set_head(Head {
        status,
        headers,
        content_length: expected,
        shared: private.is_none(),
    });
    if head_request {
        fill.complete_unstored(Arc::new(not_stored(key)));
        return Ok(Begun::Done(Pulled::NotStored {
            reason: "answered a HEAD",
        }));
    }
    Ok(Begun::Stream(Stream {
        body: response.body,
        expected,
        origin_etag,
        writer,
        verifier,
        unstored,
    }))
}

/// The object may have landed since the inner service looked (another fill just committed
/// it, another replica wrote it): serve it from the store and fetch nothing; a tombstone
/// means it is not pulled back (the inner response stands).
async fn recheck(fill: &Fill, store: &dyn crate::Store, key: &str, read: bool) -> Option<Begun> {
    if store.is_deleted(key).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "tombstone check failed; pulling anyway");
        false
    }) {
        fill.not_found();
        return Some(Begun::Done(Pulled::NotFound));
    }
    // `ServeStore` looked just now (its `404` said so): not again.
    if !read {
        return None;
    }
    match store.read(key, 0).await {
        Ok(Some(object)) => Some(Begun::Replay(object)),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "store check failed; pulling anyway");
            None
        }
    }
}

/// Whether the origin's status can be answered: `200`, a status the rule passes through,
/// or for a range the origin was asked for its `206` or its `416` (which the client gets as
/// the same `416` a hit would give).
fn check_status(fill: &Fill, spec: &FillSpec, status: StatusCode) -> Result<(), Error> {
    let passed_through = spec.checks.pass_through.contains(&status);
    let proxied_range = fill.store.is_none()
        && spec.request.headers.contains_key(http::header::RANGE)
        && matches!(
            status,
            StatusCode::PARTIAL_CONTENT | StatusCode::RANGE_NOT_SATISFIABLE
        );
    if status == StatusCode::OK || passed_through || proxied_range {
        Ok(())
    } else {
        Err(Error::OriginStatus {
            key: spec.key.clone(),
            status,
        })
    }
}

/// Start the store write (with its verifier) unless the object is not to be stored; a
/// store that cannot hold the key makes it unstored.
async fn start_write(
    fill: &Fill,
    spec: &FillSpec,
    headers: &http::HeaderMap,
    unstored: &mut Option<&'static str>,
) -> Result<(Option<Box<dyn StoreWrite>>, Option<Verifier>), Error> {
    let (Some(store), None) = (&fill.store, *unstored) else {
        return Ok((None, None));
    };
    let verifier = Verifier::new(&spec.key, &spec.checks.checksums, headers)?;
    match store
        .begin(&spec.key, meta::attributes(headers, &spec.checks.keep))
        .await
    {
        Ok(writer) => Ok((Some(writer), Some(verifier))),
        // The store cannot hold this key: the readers still get the object.
        Err(Error::Unstorable { reason, .. }) => {
            tracing::info!(%reason, "not stored: the store cannot hold the key");
            *unstored = Some("the store cannot hold the key");
            Ok((None, None))
        }
        Err(e) => Err(e),
    }
}

/// Copy the origin's body to the readers and the store, then commit or abort.
async fn copy(
    limits: &Limits,
    fill: &Fill,
    spec: &FillSpec,
    stream: Stream,
) -> Result<Pulled, Error> {
    let key = spec.key.as_str();
    let Stream {
        body,
        expected,
        origin_etag,
        writer,
        verifier,
        unstored,
    } = stream;
    let mut tee = Tee {
        key,
        fill,
        limits,
        bounds: Bounds {
            key,
            limits,
            stall: limits.stall_timeout,
        },
        writer,
        verifier,
        limit: spec.checks.max_size,
        unstored,
        staging: fill.catch_up_staging(),
    };
    match tee.copy(body, expected).await {
        // Cancelled meanwhile (a delete of the key): nothing is written back.
        Ok(_) if fill.is_cancelled() => {
            tee.abort().await;
            Err(cancelled(key))
        }
        Ok((bytes, held)) => {
            let committed = match tee.unstored {
                None => match tee.commit().await {
                    // A key the disk cannot hold, found at the first write to disk.
                    Err(Error::Unstorable { reason, .. }) => {
                        tee.cannot_store(&reason);
                        Ok(None)
                    }
                    committed => committed.map(Some),
                },
                Some(_) => Ok(None),
            };
            if let Some(last) = held {
                // Abandoned now means nobody is left to read it; what was committed stands,
                // so this is not a failure.
                let _ = tee.push(last).await;
            }
            // The spool's last batch, so a reader outside the window reads to the end.
            fill.flush_spool().await;
            match committed {
                Ok(Some(committed)) => {
                    fill.complete(committed);
                    Ok(Pulled::Stored {
                        bytes,
                        committed,
                        origin_etag,
                    })
                }
                Ok(None) => {
                    fill.complete_unstored(Arc::new(not_stored(key)));
                    Ok(Pulled::NotStored {
                        reason: tee.unstored.unwrap_or("not stored"),
                    })
                }
                Err(e) => {
                    // The readers' bytes are complete and verified; only the write-back
                    // failed. Readers that kept up end cleanly; those that fell behind
                    // (and would need the store) see an error.
                    fill.complete_unstored(Arc::new(Error::FillAborted {
                        key: key.to_owned(),
                        reason: "the reader fell behind and the store write failed",
                    }));
                    Err(e)
                }
            }
        }
        Err(e) => {
            tee.abort().await;
            Err(e)
        }
    }
}

fn not_stored(key: &str) -> Error {
    Error::FillAborted {
        key: key.to_owned(),
        reason: "the reader fell behind a response that is not stored",
    }
}

/// The store has the object already: hand it to the readers, write nothing.
async fn replay_stored(
    limits: &Limits,
    fill: &Fill,
    object: StoredObject,
) -> Result<Pulled, Error> {
    let size = object.size;
    let etag = object.e_tag.clone();
    let mut headers = meta::stored_headers(&object);
    if !headers.contains_key(http::header::CONTENT_TYPE) {
        // A store without attributes: typed as ServeStore and file servers type it.
        if let Some(guess) = mime_guess::from_path(&fill.key).first_raw() {
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(guess),
            );
        }
    }
    fill.set_head(Head {
        status: StatusCode::OK,
        headers,
        content_length: Some(size),
        shared: true,
    });
    let tee = Tee {
        key: &fill.key,
        fill,
        limits,
        bounds: Bounds {
            key: &fill.key,
            limits,
            stall: limits.stall_timeout,
        },
        writer: None,
        verifier: None,
        limit: None,
        unstored: Some("already stored"),
        staging: false,
    };
    let mut body = object.body;
    let mut received = 0;
    while let Some(chunk) = tee
        .bounds
        .step("the store's next chunk", body.next())
        .await?
    {
        let chunk = chunk?;
        received += chunk.len() as u64;
        tee.push(chunk).await?;
    }
    if received != size {
        return Err(Error::LengthMismatch {
            key: fill.key.clone(),
            expected: size,
            received,
        });
    }
    fill.complete(Committed::AlreadyExists);
    Ok(Pulled::Stored {
        bytes: size,
        committed: Committed::AlreadyExists,
        origin_etag: etag,
    })
}

fn cancelled(key: &str) -> Error {
    Error::FillAborted {
        key: key.to_owned(),
        reason: "nobody wants it any more (the client left and the rule cancels, or shutdown)",
    }
}

/// What bounds each step of a fill after its head: the stall timeout, and shutdown.
#[derive(Clone, Copy)]
struct Bounds<'a> {
    key: &'a str,
    limits: &'a Limits,
    /// How long any one step may take.
    stall: Duration,
}

impl Bounds<'_> {
    /// Run one step of the fill, bounded by the stall timeout and cut short by shutdown.
    async fn step<T>(self, what: &'static str, step: impl Future<Output = T>) -> Result<T, Error> {
        tokio::select! {
            biased;
            () = self.limits.cancelled() => Err(cancelled(self.key)),
            done = tokio::time::timeout(time::capped(self.stall), step) => {
                done.map_err(|_| Error::FillStalled {
                    key: self.key.to_owned(),
                    step: what,
                    timeout: self.stall,
                })
            }
        }
    }
}

/// Where the origin's bytes go.
struct Tee<'a> {
    key: &'a str,
    fill: &'a Fill,
    limits: &'a Limits,
    bounds: Bounds<'a>,
    writer: Option<Box<dyn StoreWrite>>,
    verifier: Option<Verifier>,
    limit: Option<(u64, Oversize)>,
    /// Why the bytes are not (or no longer) being stored.
    unstored: Option<&'static str>,
    /// The fill's spool is the store write's staging file (looked up once, not per chunk).
    staging: bool,
}

impl Tee<'_> {
    /// Hand a chunk to the readers (the fill's own wait is bounded by the slow-reader
    /// grace; shutdown cuts it short).
    fn push(&self, chunk: Bytes) -> impl Future<Output = Result<(), Error>> + Send + use<'_> {
        let (limits, fill, key) = (self.limits, self.fill, self.key);
        async move {
            tokio::select! {
                biased;
                () = limits.cancelled() => Err(cancelled(key)),
                pushed = async {
                    fill.spool(&chunk).await;
                    fill.push(chunk).await
                } => pushed.map_err(|Abandoned| cancelled(key)),
            }
        }
    }

    /// Copy the body to the readers and the store. Returns the byte count and, for a body of
    /// known length, its final chunk, held back until the commit: a client that has every
    /// byte may ask again at once and must then get a hit.
    async fn copy(
        &mut self,
        mut body: BoxStream<'static, Result<Bytes, Error>>,
        expected: Option<u64>,
    ) -> Result<(u64, Option<Bytes>), Error> {
        let mut received: u64 = 0;
        let mut held = None;
        while let Some(chunk) = self
            .bounds
            .step("the origin's next chunk", body.next())
            .await?
        {
            let chunk = chunk?;
            received += chunk.len() as u64;
            if let Some(expected) = expected.filter(|&n| received > n) {
                return Err(Error::LengthMismatch {
                    key: self.key.to_owned(),
                    expected,
                    received,
                });
            }
            if let Some((limit, oversize)) = self.limit.filter(|(limit, _)| received > *limit) {
                match oversize {
                    Oversize::Refuse => {
                        return Err(Error::TooLarge {
                            key: self.key.to_owned(),
                            limit,
                        });
                    }
                    Oversize::Proxy if self.unstored.is_none() => {
                        self.unstored = Some("larger than the rule's size limit");
                        self.verifier = None;
                        self.abort().await;
                    }
                    Oversize::Proxy => {}
                }
            }
            if let Some(verifier) = self.verifier.as_mut() {
                verifier.update(&chunk);
            }
            if expected == Some(received) {
                held = Some(chunk.clone());
            } else {
                self.push(chunk.clone()).await?;
            }
            if let Some(mut writer) = self.writer.take() {
                let written = self.bounds.step("a store write", writer.write(chunk)).await;
                self.writer = Some(writer);
                match written {
                    Ok(Ok(())) if self.staging => {
                        self.fill.catch_up_staging();
                    }
                    Ok(Ok(())) => {}
                    // A key the disk cannot hold, found at the first write to disk: the
                    // readers still get the object.
                    Ok(Err(Error::Unstorable { reason, .. })) => {
                        self.abort().await;
                        self.cannot_store(&reason);
                    }
                    Ok(Err(e)) | Err(e) => return Err(e),
                }
            }
        }
        if let Some(expected) = expected.filter(|&n| n != received) {
            return Err(Error::LengthMismatch {
                key: self.key.to_owned(),
                expected,
                received,
            });
        }
        if let Some(verifier) = self.verifier.take() {
            verifier.finish(self.key)?;
        }
        Ok((received, held))
    }

    async fn commit(&mut self) -> Result<Committed, Error> {
        match self.writer.take() {
            Some(writer) => {
                self.bounds
                    .step("the store's commit", writer.commit())
                    .await?
            }
            // Nothing to store (proxy mode).
            None => Ok(Committed::Written),
        }
    }

    /// The store cannot hold the key: the object is streamed to its readers, not stored.
    fn cannot_store(&mut self, reason: &str) {
        tracing::info!(%reason, "not stored: the store cannot hold the key");
        self.writer = None;
        self.verifier = None;
        self.unstored = Some("the store cannot hold the key");
    }

    async fn abort(&mut self) {
        self.fill.stop_staging();
        if let Some(writer) = self.writer.take() {
            match self.bounds.step("the store's abort", writer.abort()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) | Err(e) => {
                    tracing::error!(error = %e, "aborting the store write failed")
                }
            }
        }
    }
}
