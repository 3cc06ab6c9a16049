//! The fill task: check the store again → fetch → verify → tee to readers and the store →
//! commit or abort → tell the readers and the subscribers.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use http::header::ETAG;
use http::{Method, StatusCode};
use tokio::time::Instant;

use super::registry::Fills;
use super::shared::{Abandoned, Fill, Head};
use super::verify::Verifier;
use super::{FillSpec, meta};
use crate::Error;
use crate::events::FillEvent;
use crate::rule::Oversize;
use crate::store::{Committed, StoreWrite, StoredObject};

pub(crate) async fn run(fills: Arc<Fills>, fill: Arc<Fill>, spec: FillSpec) {
    let report = spec.report;
    if report {
        fills.events.emit(FillEvent::Started {
            key: spec.key.clone(),
            rule: spec.rule.clone(),
            background: spec.pinned,
        });
    }
    let started = Instant::now();
    let result = pull(&fills, &fill, &spec).await;
    let event = match result {
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
        Err(e) => {
            let reason = e.to_string();
            fill.fail(e);
            FillEvent::Failed {
                key: spec.key.clone(),
                rule: spec.rule.clone(),
                reason,
            }
        }
    };
    match &event {
        FillEvent::Completed {
            bytes,
            duration,
            committed,
            ..
        } => {
            tracing::info!(bytes, ?duration, ?committed, "fill complete");
        }
        FillEvent::NotFound { .. } => tracing::debug!("origin does not have the object"),
        // A proxied response (nothing to store by design) is not a failed fill.
        FillEvent::Failed { reason, .. } if !report => tracing::debug!(%reason, "proxied"),
        FillEvent::Failed { reason, .. } => tracing::warn!(%reason, "fill failed; nothing stored"),
        FillEvent::Started { .. } => {}
    }
    let not_found = matches!(event, FillEvent::NotFound { .. });
    if report {
        match &event {
            FillEvent::Completed {
                bytes, duration, ..
            } => fills.counters.fill_completed(*bytes, *duration),
            FillEvent::NotFound { .. } => fills.counters.fill_not_found(),
            _ => fills.counters.fill_failed(),
        }
    }
    fills.finished(&fill, &spec.rule, not_found);
    if report {
        fills.events.emit(event);
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
}

async fn pull(fills: &Fills, fill: &Fill, spec: &FillSpec) -> Result<Pulled, Error> {
    let key = spec.key.as_str();
    let head_request = spec.request.method == Method::HEAD;
    // The object may have landed since the inner service looked (another fill just
    // committed it, another replica wrote it): serve it from the store, fetch nothing.
    if let (Some(store), false) = (&fill.store, head_request) {
        // Deleted on purpose: not pulled back (the inner response stands).
        if store.is_deleted(key).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "tombstone check failed; pulling anyway");
            false
        }) {
            fill.not_found();
            return Ok(Pulled::NotFound);
        }
        match store.read(key, 0).await {
            Ok(Some(object)) => return replay_stored(fill, object).await,
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "store check failed; pulling anyway"),
        }
    }
    let response = tokio::select! {
        biased;
        () = fills.cancelled() => return Err(cancelled(key)),
        response = spec.origin.fetch(spec.request.clone()) => response?,
    };
    let status = response.status;
    if status == StatusCode::NOT_FOUND {
        fill.not_found();
        return Ok(Pulled::NotFound);
    }
    let passed_through = spec.checks.pass_through.contains(&status);
    let proxied_range = fill.store.is_none() && status == StatusCode::PARTIAL_CONTENT;
    if status != StatusCode::OK && !passed_through && !proxied_range {
        return Err(Error::OriginStatus {
            key: key.to_owned(),
            status,
        });
    }
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
    let (writer, verifier) = match (&fill.store, unstored) {
        (Some(store), None) => {
            let verifier = Verifier::new(key, &spec.checks.checksums, &response.headers)?;
            let writer = store
                .begin(key, meta::attributes(&response.headers))
                .await?;
            (Some(writer), Some(verifier))
        }
        _ => (None, None),
    };
    fill.set_head(Head {
        status,
        headers: meta::client_headers(&response.headers),
        content_length: expected,
    });
    if head_request {
        fill.complete_unstored(Arc::new(not_stored(key)));
        return Ok(Pulled::NotStored {
            reason: "answered a HEAD",
        });
    }
    let mut tee = Tee {
        key,
        fill,
        fills,
        writer,
        verifier,
        limit: spec.checks.max_size,
        unstored,
    };
    match tee.copy(response.body, expected).await {
        Ok((bytes, held)) => {
            let committed = match tee.unstored {
                None => tee.commit().await.map(Some),
                Some(_) => Ok(None),
            };
            if let Some(last) = held {
                // Abandoned now means nobody is left to read it; what was committed stands,
                // so this is not a failure.
                let _ = fill.push(last).await;
            }
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
async fn replay_stored(fill: &Fill, object: StoredObject) -> Result<Pulled, Error> {
    let size = object.size;
    let etag = object.e_tag.clone();
    fill.set_head(Head {
        status: StatusCode::OK,
        headers: meta::stored_headers(&object),
        content_length: Some(size),
    });
    let mut body = object.body;
    let mut received = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        received += chunk.len() as u64;
        fill.push(chunk)
            .await
            .map_err(|Abandoned| cancelled(&fill.key))?;
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

/// Where the origin's bytes go.
struct Tee<'a> {
    key: &'a str,
    fill: &'a Fill,
    fills: &'a Fills,
    writer: Option<Box<dyn StoreWrite>>,
    verifier: Option<Verifier>,
    limit: Option<(u64, Oversize)>,
    /// Why the bytes are not (or no longer) being stored.
    unstored: Option<&'static str>,
}

impl Tee<'_> {
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
        loop {
            let next = tokio::select! {
                biased;
                () = self.fills.cancelled() => return Err(cancelled(self.key)),
                next = body.next() => next,
            };
            let Some(chunk) = next else { break };
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
                self.fill
                    .push(chunk.clone())
                    .await
                    .map_err(|Abandoned| cancelled(self.key))?;
            }
            if let Some(writer) = self.writer.as_mut() {
                writer.write(chunk).await?;
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
            Some(writer) => writer.commit().await,
            // Nothing to store (proxy mode).
            None => Ok(Committed::Written),
        }
    }

    async fn abort(&mut self) {
        if let Some(writer) = self.writer.take() {
            if let Err(e) = writer.abort().await {
                tracing::error!(error = %e, "aborting the store write failed");
            }
        }
    }
}
