//! The origin's body as a stream of chunks, failing when no byte arrives for the idle timeout
//! or when the overall deadline passes. Any idle timeout works, up to `Duration::MAX`
//! (read as "far future").

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use http_body::Body;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::Error;
use crate::time::{capped, deadline};

pin_project! {
    /// The origin's body as a stream of chunks that fails when no byte arrives for `idle`.
    pub(crate) struct IdleBody {
        #[pin]
        body: Incoming,
        #[pin]
        sleep: Sleep,
        // The overall cap, if any.
        deadline: Option<Pin<Box<Sleep>>>,
        idle: Duration,
        url: String,
        received: u64,
        done: bool,
    }
}

impl IdleBody {
    pub(crate) fn new(
        body: Incoming,
        idle: Duration,
        deadline: Option<Instant>,
        url: String,
    ) -> Self {
        Self {
            body,
            sleep: tokio::time::sleep(capped(idle)),
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            idle,
            url,
            received: 0,
            done: false,
        }
    }
}

impl Stream for IdleBody {
    type Item = Result<Bytes, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        loop {
            match this.body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    this.sleep.as_mut().reset(deadline(*this.idle));
                    if let Ok(data) = frame.into_data() {
                        if data.is_empty() {
                            continue;
                        }
                        *this.received += data.len() as u64;
                        return Poll::Ready(Some(Ok(data)));
                    }
                    // Trailers carry nothing we keep.
                }
                Poll::Ready(Some(Err(e))) => {
                    *this.done = true;
                    return Poll::Ready(Some(Err(Error::OriginBody {
                        url: this.url.clone(),
                        received: *this.received,
                        source: e.into(),
                    })));
                }
                Poll::Ready(None) => {
                    *this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => {
                    if let Some(deadline) = this.deadline.as_mut() {
                        if deadline.as_mut().poll(cx).is_ready() {
                            *this.done = true;
                            return Poll::Ready(Some(Err(Error::OriginBody {
                                url: this.url.clone(),
                                received: *this.received,
                                source: "the overall timeout passed".into(),
                            })));
                        }
                    }
                    if this.sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    *this.done = true;
                    return Poll::Ready(Some(Err(Error::OriginStalled {
                        url: this.url.clone(),
                        timeout: *this.idle,
                        received: *this.received,
                    })));
                }
            }
        }
    }
}
