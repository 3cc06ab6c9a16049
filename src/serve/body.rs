//! [`ServeBody`]: an object streamed from the store, or a short message.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::stream::BoxStream;
use http_body::{Body, Frame, SizeHint};

use crate::BoxError;

/// The body of a [`ServeStore`](crate::ServeStore) response.
///
/// An object's bytes are streamed from the store as the client reads them (memory stays
/// bounded whatever the object size). The body checks the byte count against the length it
/// announced: a store stream that ends early or runs long ends the body in an error, never
/// in a clean short body.
pub struct ServeBody {
    inner: Inner,
}

enum Inner {
    Empty,
    Message(Option<Bytes>),
    Stream {
        stream: BoxStream<'static, object_store::Result<Bytes>>,
        remaining: u64,
        /// Empty chunks in a row.
        stalled: u32,
    },
    Done,
}

impl ServeBody {
    pub(crate) fn empty() -> Self {
        Self {
            inner: Inner::Empty,
        }
    }

    pub(crate) fn message(text: impl Into<Bytes>) -> Self {
        Self {
            inner: Inner::Message(Some(text.into())),
        }
    }

    pub(crate) fn stream(
        stream: BoxStream<'static, object_store::Result<Bytes>>,
        length: u64,
    ) -> Self {
        if length == 0 {
            return Self::empty();
        }
        Self {
            inner: Inner::Stream {
                stream,
                remaining: length,
                stalled: 0,
            },
        }
    }
}

impl fmt::Debug for ServeBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ServeBody");
        match &self.inner {
            Inner::Empty | Inner::Done => d.field("kind", &"empty"),
            Inner::Message(m) => d.field("message", m),
            Inner::Stream { remaining, .. } => d.field("remaining", remaining),
        }
        .finish()
    }
}

/// Empty chunks in a row after which a store stream counts as ended.
const MAX_EMPTY_CHUNKS: u32 = 16;

/// The store's stream did not match the length announced in Content-Length.
#[derive(Debug, thiserror::Error)]
#[error("the store's stream {0} the announced Content-Length")]
struct LengthMismatch(&'static str);

impl Body for ServeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut self.inner;
        match this {
            Inner::Empty | Inner::Done => Poll::Ready(None),
            Inner::Message(m) => Poll::Ready(m.take().map(|b| Ok(Frame::data(b)))),
            Inner::Stream {
                stream,
                remaining,
                stalled,
            } => loop {
                let polled = std::task::ready!(stream.as_mut().poll_next(cx));
                let result = match polled {
                    // `LocalFileSystem` yields empty chunks forever from a file cut short
                    // under it; a run of them is an end, not progress.
                    Some(Ok(bytes)) if bytes.is_empty() => {
                        *stalled += 1;
                        if *stalled < MAX_EMPTY_CHUNKS {
                            continue;
                        }
                        Err(LengthMismatch("stopped short of").into())
                    }
                    Some(Ok(bytes)) if bytes.len() as u64 > *remaining => {
                        Err(LengthMismatch("ran past").into())
                    }
                    Some(Ok(bytes)) => {
                        *stalled = 0;
                        *remaining -= bytes.len() as u64;
                        if *remaining == 0 {
                            *this = Inner::Done;
                        }
                        return Poll::Ready(Some(Ok(Frame::data(bytes))));
                    }
                    Some(Err(e)) => Err(e.into()),
                    None => Err(LengthMismatch("ended short of").into()),
                };
                *this = Inner::Done;
                return Poll::Ready(Some(result));
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Empty | Inner::Done => true,
            Inner::Message(m) => m.is_none(),
            Inner::Stream { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Empty | Inner::Done => SizeHint::with_exact(0),
            Inner::Message(m) => SizeHint::with_exact(m.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::Stream { remaining, .. } => SizeHint::with_exact(*remaining),
        }
    }
}
