//! The client's side of a fill: an HTTP body fed by the fill task.
//!
//! The fill task sends chunks through a bounded channel (backpressure: a client that reads
//! slowly slows its fill; at most [`CAPACITY`] chunks wait in between). The body ends cleanly
//! only on an explicit end-of-object message, sent after the byte count was verified; an
//! error message, or the task going away without one (cancelled, panicked), ends the body in
//! an error, so a broken fill can never look like a complete, short object.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

use crate::{BoxError, Error};

/// Chunks buffered between the fill and its reader.
pub(crate) const CAPACITY: usize = 8;

pub(crate) enum Msg {
    Data(Bytes),
    End,
    Error(Error),
}

pub(crate) fn channel(key: &str, content_length: Option<u64>) -> (mpsc::Sender<Msg>, Reader) {
    let (tx, rx) = mpsc::channel(CAPACITY);
    let reader = Reader {
        rx,
        key: key.to_owned(),
        remaining: content_length,
        ended: false,
    };
    (tx, reader)
}

/// The body of a pulled response.
#[derive(Debug)]
pub(crate) struct Reader {
    rx: mpsc::Receiver<Msg>,
    key: String,
    remaining: Option<u64>,
    ended: bool,
}

impl Body for Reader {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let msg = std::task::ready!(self.rx.poll_recv(cx));
        Poll::Ready(match msg {
            Some(Msg::Data(bytes)) => {
                if let Some(n) = self.remaining.as_mut() {
                    *n = n.saturating_sub(bytes.len() as u64);
                }
                Some(Ok(Frame::data(bytes)))
            }
            Some(Msg::End) => {
                self.ended = true;
                None
            }
            Some(Msg::Error(e)) => {
                self.ended = true;
                Some(Err(e.into()))
            }
            None => {
                self.ended = true;
                Some(Err(Error::FillAborted {
                    key: std::mem::take(&mut self.key),
                    reason: "the fill task ended without finishing",
                }
                .into()))
            }
        })
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
