//! [`ServeFuture`]: the response future of [`ServeStore`](crate::ServeStore).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::Response;

use super::body::ServeBody;

/// The response future of [`ServeStore`](crate::ServeStore); it never fails.
pub struct ServeFuture {
    inner: Inner,
}

// The ready answers (refusals) are rare and boxed, so the future a hit moves through the
// layers above is two words.
enum Inner {
    Ready(Option<Box<Response<ServeBody>>>),
    Store(BoxFuture<'static, Response<ServeBody>>),
}

impl ServeFuture {
    pub(crate) fn ready(response: Response<ServeBody>) -> Self {
        Self {
            inner: Inner::Ready(Some(Box::new(response))),
        }
    }

    pub(crate) fn new(future: BoxFuture<'static, Response<ServeBody>>) -> Self {
        Self {
            inner: Inner::Store(future),
        }
    }
}

impl fmt::Debug for ServeFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeFuture").finish_non_exhaustive()
    }
}

impl Future for ServeFuture {
    type Output = Result<Response<ServeBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.inner {
            Inner::Ready(response) => match response.take() {
                Some(response) => Poll::Ready(Ok(*response)),
                None => panic!("ServeFuture polled after completion"),
            },
            Inner::Store(future) => future.as_mut().poll(cx).map(Ok),
        }
    }
}

#[cfg(test)]
mod tests {
    // What `Inner` says: the future a hit moves through the layers above is two words.
    #[test]
    fn the_future_is_two_words() {
        assert!(std::mem::size_of::<super::ServeFuture>() <= 2 * std::mem::size_of::<usize>());
    }
}
