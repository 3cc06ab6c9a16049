//! The client's side of a fill: an HTTP body that tails the fill's window, reads the fill's
//! spool at its own offset when it is not in the window (it joined late, fell behind, or
//! starts a range ahead of it), or — with no spool to read, once the object is committed —
//! reads the rest from the store.
//!
//! The body ends cleanly only when the fill says the object is complete (after the commit);
//! a failed or abandoned fill, a store read that comes up short, or a fill task that went away
//! all end it in an error, so a broken fill can never look like a complete, short object.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use http_body::{Body, Frame, SizeHint};

use super::shared::{Ended, Fill, HeadView, Read};
use crate::store::StoredObject;
use crate::{BoxError, Error};

/// One reader of a fill: first the response future waits on it for the head, then it is the
/// response body.
pub(crate) struct Reader {
    fill: Arc<Fill>,
    id: u64,
    remaining: Option<u64>,
    state: State,
}

enum State {
    Live,
    /// A read of the spool in flight (on the blocking pool); then `Live` again.
    Spooling {
        read: BoxFuture<'static, std::io::Result<Bytes>>,
    },
    Opening {
        open: BoxFuture<'static, Result<Option<StoredObject>, Error>>,
        offset: u64,
        total: u64,
    },
    Store {
        body: BoxStream<'static, Result<Bytes, Error>>,
        pos: u64,
        total: u64,
    },
    Ended,
    /// Out of the fill's readers, waiting for it to end (a range's last byte is held until
    /// then).
    Settling {
        wait: BoxFuture<'static, ()>,
    },
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("key", &self.fill.key)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// The reader of the request that starts `fill`.
    pub(crate) fn lead(fill: Arc<Fill>) -> Self {
        let id = fill.lead();
        Self {
            fill,
            id,
            remaining: None,
            state: State::Live,
        }
    }

    pub(crate) fn join(fill: Arc<Fill>) -> Self {
        let id = fill.join();
        Self {
            fill,
            id,
            remaining: None,
            state: State::Live,
        }
    }

    /// Start reading at byte `pos` (a range's first byte) instead of byte 0.
    pub(crate) fn seek(&mut self, pos: u64) {
        if matches!(self.state, State::Live) {
            self.fill.seek(self.id, pos);
            if let Some(n) = self.remaining.as_mut() {
                *n = n.saturating_sub(pos);
            }
        }
    }

    /// Leave the fill's readers and wait until it has ended: `Ok` when it ended well (the
    /// object stored, or delivered whole), its error otherwise.
    pub(crate) fn poll_settled(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if !matches!(self.state, State::Settling { .. }) {
            self.finish();
        }
        loop {
            if let Some(ended) = self.fill.ended() {
                self.state = State::Ended;
                return Poll::Ready(match ended {
                    Ended::Stored(_) | Ended::NotStored => Ok(()),
                    Ended::Failed(e) => Err(Box::new(Error::Shared(e))),
                    Ended::NotFound => {
                        Err(Box::new(self.broken("the object vanished at the origin")))
                    }
                });
            }
            if !matches!(self.state, State::Settling { .. }) {
                let fill = self.fill.clone();
                self.state = State::Settling {
                    wait: async move { fill.wait_ended().await }.boxed(),
                };
            }
            if let State::Settling { wait } = &mut self.state {
                ready!(wait.poll_unpin(cx));
            }
            self.state = State::Ended;
        }
    }

    /// Whether a range read from this fill holds its last byte until the fill ends well:
    /// when the fill stores (and verifies) the object.
    pub(crate) fn holds_last_byte(&self) -> bool {
        self.fill.store.is_some()
    }

    /// Whether the fill is expected to reach byte `pos` within `max_wait` (`None`: its rate
    /// is not known yet).
    pub(crate) fn reaches(&self, pos: u64, max_wait: std::time::Duration) -> Option<bool> {
        self.fill.reaches(pos, max_wait)
    }

    /// Let the fill's task yield once before it asks the origin ([`Fill::defer_fetch`]).
    pub(crate) fn defer_fetch(&self) {
        self.fill.defer_fetch();
    }

    /// Whether the fill has ended in failure.
    pub(crate) fn has_failed(&self) -> bool {
        self.fill.has_failed()
    }

    /// When this reader stops waiting for the head.
    pub(crate) fn head_deadline(&self) -> tokio::time::Instant {
        self.fill.head_deadline()
    }

    pub(crate) fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<HeadView> {
        let view = ready!(self.fill.poll_head(self.id, cx));
        if let HeadView::Ready(head) = &view {
            self.remaining = head.content_length;
        }
        Poll::Ready(view)
    }

    fn error(&mut self, e: Error) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.finish();
        Poll::Ready(Some(Err(e.into())))
    }

    fn finish(&mut self) {
        if matches!(self.state, State::Live | State::Spooling { .. }) {
            self.fill.leave(self.id);
        }
        self.state = State::Ended;
    }

    fn data(&mut self, bytes: Bytes) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(n) = self.remaining.as_mut() {
            *n = n.saturating_sub(bytes.len() as u64);
        }
        Poll::Ready(Some(Ok(Frame::data(bytes))))
    }

    /// The store's object opened for a demoted reader: go on reading it, or fail if it is
    /// not the object the fill wrote.
    fn opened(
        &mut self,
        opened: Result<Option<StoredObject>, Error>,
        offset: u64,
        total: u64,
    ) -> Result<(), Error> {
        match opened? {
            Some(object) if object.size == total => {
                self.state = State::Store {
                    body: object.body,
                    pos: offset,
                    total,
                };
                Ok(())
            }
            Some(_) => Err(self.broken("the stored object changed while reading")),
            None => Err(self.broken("the stored object vanished while reading")),
        }
    }

    fn broken(&self, reason: &'static str) -> Error {
        Error::FillAborted {
            key: self.fill.key.clone(),
            reason,
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Body for Reader {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Ended | State::Settling { .. } => return Poll::Ready(None),
                State::Live => match ready!(this.fill.poll_read(this.id, cx)) {
                    Read::Data(bytes) => return this.data(bytes),
                    Read::End => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Read::Failed(e) => {
                        this.finish();
                        return Poll::Ready(Some(Err(Box::new(Error::Shared(e)))));
                    }
                    Read::Spool { spool, offset, len } => {
                        spool.spools().counted_read();
                        this.state = State::Spooling {
                            read: spool.read(offset, len).boxed(),
                        };
                    }
                    Read::FromStore { offset, total } => {
                        this.fill.leave(this.id);
                        let Some(store) = this.fill.store.clone() else {
                            this.state = State::Ended;
                            let e = this.broken("the reader fell behind a fill with no store");
                            return this.error(e);
                        };
                        let key = this.fill.key.clone();
                        let open = async move { store.read(&key, offset).await }.boxed();
                        this.state = State::Opening {
                            open,
                            offset,
                            total,
                        };
                    }
                },
                State::Spooling { read } => {
                    let read = ready!(read.poll_unpin(cx));
                    this.state = State::Live;
                    match read {
                        Ok(bytes) => return this.data(bytes),
                        Err(e) => {
                            let e = Error::SpoolRead {
                                key: this.fill.key.clone(),
                                source: e,
                            };
                            return this.error(e);
                        }
                    }
                }
                State::Opening {
                    open,
                    offset,
                    total,
                } => {
                    let (offset, total) = (*offset, *total);
                    let opened = ready!(open.poll_unpin(cx));
                    if let Err(e) = this.opened(opened, offset, total) {
                        return this.error(e);
                    }
                }
                State::Store { body, pos, total } => match ready!(body.poll_next_unpin(cx)) {
                    Some(Ok(bytes)) => {
                        *pos += bytes.len() as u64;
                        if *pos > *total {
                            let e = this.broken("the stored object is longer than the fill");
                            return this.error(e);
                        }
                        return this.data(bytes);
                    }
                    Some(Err(e)) => return this.error(e),
                    None if *pos == *total => {
                        this.state = State::Ended;
                        return Poll::Ready(None);
                    }
                    None => {
                        let e = this.broken("the stored object is shorter than the fill");
                        return this.error(e);
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Ended)
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
