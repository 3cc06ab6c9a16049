//! The fill: fetch from the origin → verify → tee to the client and the store → commit or
//! abort.
//!
//! A fill runs as its own Tokio task; the client's response body only *reads* it (see
//! [`reader`]). So a client that disconnects cannot cancel the write-back by accident (the
//! rule's [`ClientDisconnect`] policy decides), and a failure has exactly one place where it
//! becomes "the reader sees an error" and "the store write is aborted".
//!
//! Memory per fill: at most [`reader::CAPACITY`] origin chunks waiting for the client, plus
//! what the [`Store`] buffers (for [`BucketStore`](crate::BucketStore): 24 MiB with its
//! defaults), whatever the object size.

mod meta;
pub(crate) mod reader;

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use http::{HeaderMap, StatusCode};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use self::reader::{Msg, Reader};
use crate::Error;
use crate::origin::{Origin, OriginRequest};
use crate::rule::ClientDisconnect;
use crate::store::{Committed, Store, StoreWrite};

/// Everything a fill needs, decided by the service from the request and the matched rule.
pub(crate) struct FillSpec {
    pub(crate) key: String,
    pub(crate) rule: Arc<str>,
    pub(crate) origin: Arc<dyn Origin>,
    pub(crate) request: OriginRequest,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) on_disconnect: ClientDisconnect,
    /// No client reads the body (a `HEAD`): fill the store regardless of the policy.
    pub(crate) detached: bool,
}

/// What the fill tells the waiting response future once the origin's headers are in.
pub(crate) enum Head {
    /// The origin does not have the object: answer with the inner service's response.
    NotFound,
    /// The pull failed before any byte: answer 502.
    Failed(Error),
    /// Stream the object.
    Streaming { headers: HeaderMap, body: Reader },
}

/// Start a fill on the current Tokio runtime; the receiver gets the [`Head`].
pub(crate) fn start(spec: FillSpec) -> oneshot::Receiver<Head> {
    let (head_tx, head_rx) = oneshot::channel();
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            let span = tracing::info_span!("fill", key = %spec.key, rule = %spec.rule);
            rt.spawn(run(spec, head_tx).instrument(span));
        }
        Err(_) => {
            let _ = head_tx.send(Head::Failed(Error::NoRuntime { key: spec.key }));
        }
    }
    head_rx
}

async fn run(spec: FillSpec, head_tx: oneshot::Sender<Head>) {
    let started = Instant::now();
    let key = spec.key.as_str();
    let response = match spec.origin.fetch(spec.request).await {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(error = %e, "origin fetch failed");
            let _ = head_tx.send(Head::Failed(e));
            return;
        }
    };
    if response.status == StatusCode::NOT_FOUND {
        tracing::debug!("origin does not have the object");
        let _ = head_tx.send(Head::NotFound);
        return;
    }
    if response.status != StatusCode::OK {
        let e = Error::OriginStatus {
            key: key.to_owned(),
            status: response.status,
        };
        tracing::warn!(error = %e, "origin refused");
        let _ = head_tx.send(Head::Failed(e));
        return;
    }
    let expected = response.content_length;
    let writer = match spec
        .store
        .begin(key, meta::attributes(&response.headers))
        .await
    {
        Ok(writer) => writer,
        Err(e) => {
            tracing::warn!(error = %e, "store refused the write");
            let _ = head_tx.send(Head::Failed(e));
            return;
        }
    };
    let (tx, body) = reader::channel(key, expected);
    let head = Head::Streaming {
        headers: meta::client_headers(&response.headers),
        body,
    };
    let client = match head_tx.send(head) {
        Ok(()) if !spec.detached => Some(tx),
        _ => None,
    };
    let mut tee = Tee {
        key,
        writer: Some(writer),
        client,
        held: None,
        policy: if spec.detached {
            ClientDisconnect::FinishFill
        } else {
            spec.on_disconnect
        },
    };
    let outcome = tee.copy(response.body, expected).await;
    tee.finish(outcome, started).await;
}

/// The copy loop's state: where the bytes go.
struct Tee<'a> {
    key: &'a str,
    writer: Option<Box<dyn StoreWrite>>,
    client: Option<mpsc::Sender<Msg>>,
    /// The final chunk of a body of known length, held back until the object is committed:
    /// a client that has every byte may ask again at once, and must then get a hit.
    held: Option<bytes::Bytes>,
    policy: ClientDisconnect,
}

impl Tee<'_> {
    /// Copy the origin's body to the client and the store; `Ok(bytes)` once it ended cleanly
    /// with exactly the announced length.
    async fn copy(
        &mut self,
        mut body: futures::stream::BoxStream<'static, Result<bytes::Bytes, Error>>,
        expected: Option<u64>,
    ) -> Result<u64, Error> {
        let mut received: u64 = 0;
        if self.client.is_none() && !self.detached_ok() {
            return Err(self.cancelled());
        }
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            received += chunk.len() as u64;
            if let Some(expected) = expected.filter(|&n| received > n) {
                return Err(Error::LengthMismatch {
                    key: self.key.to_owned(),
                    expected,
                    received,
                });
            }
            if expected == Some(received) {
                self.held = Some(chunk.clone());
            } else if let Some(client) = &self.client {
                if client.send(Msg::Data(chunk.clone())).await.is_err() {
                    self.client = None;
                    tracing::debug!(received, "client went away");
                    if !self.detached_ok() {
                        return Err(self.cancelled());
                    }
                }
            }
            if let Some(writer) = self.writer.as_mut() {
                writer.write(chunk).await?;
            }
        }
        match expected {
            Some(expected) if expected != received => Err(Error::LengthMismatch {
                key: self.key.to_owned(),
                expected,
                received,
            }),
            _ => Ok(received),
        }
    }

    fn detached_ok(&self) -> bool {
        self.policy == ClientDisconnect::FinishFill
    }

    fn cancelled(&self) -> Error {
        Error::FillAborted {
            key: self.key.to_owned(),
            reason: "the client disconnected and the rule cancels fills then",
        }
    }

    /// Commit or abort the write, then end the client's body accordingly.
    async fn finish(mut self, outcome: Result<u64, Error>, started: Instant) {
        let writer = self.writer.take();
        match outcome {
            Ok(bytes) => {
                // Commit before ending the client's body: once the client has the whole
                // object, the next request for it is a hit.
                let committed = match writer {
                    Some(w) => w.commit().await,
                    None => Ok(Committed::Written),
                };
                let elapsed = started.elapsed();
                match committed {
                    Ok(how) => tracing::info!(bytes, ?elapsed, ?how, "fill stored"),
                    // The client's bytes are complete and verified; only the write-back
                    // failed, so the client still gets a clean end.
                    Err(e) => tracing::error!(bytes, ?elapsed, error = %e, "fill not stored"),
                }
                if let Some(last) = self.held.take() {
                    self.send(Msg::Data(last)).await;
                }
                self.send(Msg::End).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "fill failed; nothing stored");
                if let Some(w) = writer {
                    if let Err(abort) = w.abort().await {
                        tracing::error!(error = %abort, "aborting the store write failed");
                    }
                }
                self.send(Msg::Error(e)).await;
            }
        }
    }

    async fn send(&mut self, msg: Msg) {
        if let Some(client) = &self.client {
            if client.send(msg).await.is_err() {
                self.client = None;
            }
        }
    }
}
