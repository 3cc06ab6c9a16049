//! [`ServeBody`]: an object streamed from the store, or a short message.

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use http_body::{Body, Frame, SizeHint};
use object_store::{GetResult, GetResultPayload};

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

/// Bytes read per blocking call from a local file.
///
/// object_store's own stream for a `LocalFileSystem` file reads 8 KiB per blocking task, so
/// every 8 KiB paid a hand-off to the blocking pool and back (128 of them per MiB). 256 KiB
/// per read keeps what a connection holds small and makes the hand-off negligible.
const FILE_CHUNK: u64 = 256 * 1024;

/// The bytes of `result`: a local file is read in [`FILE_CHUNK`] pieces with positioned
/// reads, one blocking task each, and the stream ends without a further task once the
/// range is read; any other backend's stream is used as it is.
pub(crate) fn result_stream(result: GetResult) -> BoxStream<'static, object_store::Result<Bytes>> {
    match result.payload {
        GetResultPayload::File(file, path) => file_stream(file, path, result.range),
        GetResultPayload::Stream(stream) => stream,
    }
}

pub(crate) fn file_stream(
    file: File,
    path: PathBuf,
    range: Range<u64>,
) -> BoxStream<'static, object_store::Result<Bytes>> {
    let end = range.end;
    futures::stream::try_unfold((file, range.start), move |(mut file, pos)| {
        let path = path.clone();
        async move {
            if pos >= end {
                return Ok(None);
            }
            let len = (end - pos).min(FILE_CHUNK);
            let read = tokio::task::spawn_blocking(move || {
                file.seek(SeekFrom::Start(pos))?;
                let mut buf = Vec::with_capacity(len as usize);
                (&mut file).take(len).read_to_end(&mut buf)?;
                Ok::<_, std::io::Error>((file, buf))
            })
            .await;
            let failed =
                |source: Box<dyn std::error::Error + Send + Sync>| object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: format!("reading {}: {source}", path.display()).into(),
                };
            match read {
                // Shorter than announced (cut under us): end here; `ServeBody` reports it.
                Ok(Ok((_, buf))) if buf.is_empty() => Ok(None),
                Ok(Ok((file, buf))) => {
                    let next = pos + buf.len() as u64;
                    Ok(Some((Bytes::from(buf), (file, next))))
                }
                Ok(Err(e)) => Err(failed(e.into())),
                Err(e) => Err(failed(e.into())),
            }
        }
    })
    .boxed()
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
