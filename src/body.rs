//! [`ResponseBody`]: the inner service's body passed through, or a pulled object.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;

use crate::BoxError;
use crate::fill::reader::Reader;

pin_project! {
    /// The response body of [`OriginPull`](crate::OriginPull).
    ///
    /// On a hit it is the inner service's body, unboxed and untouched; on a pull it streams
    /// the object as the fill receives it and ends in an error if the fill fails.
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        // A pulled object's reader is boxed: a hit's response, moved through every layer
        // above, is at most a word larger than the inner one.
        Pulled { body: Box<Reader> },
        Range { body: Option<Box<Reader>>, take: u64, last: Option<u8> },
        Message { body: Full<Bytes> },
        Empty,
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn pulled(body: Reader) -> Self {
        Self {
            kind: Kind::Pulled {
                body: Box::new(body),
            },
        }
    }

    /// `take` bytes of a pulled object, from byte `skip`: the reader starts there (in the
    /// window, the spool, or the store). The range's last byte is held until the fill has
    /// ended well, so a range of an object that fails verification never ends cleanly.
    pub(crate) fn range(mut body: Reader, skip: u64, take: u64) -> Self {
        body.seek(skip);
        Self {
            kind: Kind::Range {
                body: Some(Box::new(body)),
                take,
                last: None,
            },
        }
    }

    pub(crate) fn message(text: String) -> Self {
        Self {
            kind: Kind::Message {
                body: Full::new(Bytes::from(text)),
            },
        }
    }

    pub(crate) fn empty() -> Self {
        Self { kind: Kind::Empty }
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Inner { body } => f.debug_tuple("ResponseBody::Inner").field(body).finish(),
            Kind::Pulled { .. } => f.write_str("ResponseBody::Pulled"),
            Kind::Range { take, .. } => write!(f, "ResponseBody::Range({take})"),
            Kind::Message { .. } => f.write_str("ResponseBody::Message"),
            Kind::Empty => f.write_str("ResponseBody::Empty"),
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => match body.poll_frame(cx) {
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            KindProj::Pulled { body } => Pin::new(&mut **body).poll_frame(cx),
            KindProj::Range { body, take, last } => poll_range(body, take, last, cx),
            KindProj::Message { body } => Pin::new(body)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            KindProj::Empty => Poll::Ready(None),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Pulled { body } => body.is_end_stream(),
            Kind::Range { body, .. } => body.is_none(),
            Kind::Message { body } => body.is_end_stream(),
            Kind::Empty => true,
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Pulled { body } => body.size_hint(),
            Kind::Range { take, .. } => SizeHint::with_exact(*take),
            Kind::Message { body } => body.size_hint(),
            Kind::Empty => SizeHint::with_exact(0),
        }
    }
}

/// The next frame of a range of a pulled object: its bytes, all but the last, then — once
/// the fill has ended well — the last byte; an error if the fill fails first. (A fill that
/// stores nothing has nothing to verify and is abandoned when its reader leaves: its range
/// ends with its last byte.)
fn poll_range(
    body: &mut Option<Box<Reader>>,
    take: &mut u64,
    last: &mut Option<u8>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    loop {
        let Some(reader) = body.as_mut() else {
            return Poll::Ready(None);
        };
        if last.is_some() {
            let settled = std::task::ready!(reader.poll_settled(cx));
            *body = None;
            return Poll::Ready(match settled {
                Ok(()) => last
                    .take()
                    .map(|byte| Ok(Frame::data(Bytes::copy_from_slice(&[byte])))),
                Err(e) => Some(Err(e)),
            });
        }
        if *take == 0 {
            *body = None;
            return Poll::Ready(None);
        }
        match std::task::ready!(Pin::new(&mut **reader).poll_frame(cx)) {
            None => {
                *body = None;
                return Poll::Ready(Some(Err("the object ended before the range".into())));
            }
            Some(Err(e)) => {
                *body = None;
                return Poll::Ready(Some(Err(e)));
            }
            Some(Ok(frame)) => {
                let Ok(mut data) = frame.into_data() else {
                    continue;
                };
                data.truncate((*take).min(data.len() as u64) as usize);
                *take -= data.len() as u64;
                if *take == 0 && !data.is_empty() && reader.holds_last_byte() {
                    *last = data.last().copied();
                    data.truncate(data.len() - 1);
                }
                if data.is_empty() {
                    continue;
                }
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use http::Response;

    use super::ResponseBody;
    use crate::ServeBody;

    // What `Kind` says: a hit's response through the layer is at most a word larger than
    // the inner service's (without the boxed reader it was 48 bytes larger).
    #[test]
    fn a_hits_response_is_at_most_a_word_larger_than_the_inner_ones() {
        assert!(
            size_of::<Response<ResponseBody<ServeBody>>>()
                <= size_of::<Response<ServeBody>>() + size_of::<usize>()
        );
    }
}
