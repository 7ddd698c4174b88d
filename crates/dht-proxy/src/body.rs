//! Response bodies: fixed, or streamed as one chunk per batch of JSON lines.
//!
//! A streamed body polls its stream (a share of a DHT get or listen, `share.rs`) itself, so
//! hyper pulls values only as fast as it can write them, and dropping the body (the connection
//! closed) leaves the share, which cancels the DHT get or listen when it was the last.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use dht_proto::value::Value;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use crate::dht::{BoxStream, ListenEvent};
use crate::json::value_line;

/// Most values gathered into one chunk of a get.
const MAX_BATCH: usize = 64;

/// Held by a body while it streams; dropped with it (counters, limits).
pub(crate) type Guard = Box<dyn Send + Sync>;

enum Kind {
    Full(Option<Bytes>),
    Chunked(Option<Bytes>),
    Get(Option<BoxStream<Value>>),
    Listen(BoxStream<ListenEvent>, VecDeque<String>),
}

/// A response body.
pub struct Body {
    kind: Kind,
    _guard: Option<Guard>,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body").finish_non_exhaustive()
    }
}

impl Body {
    pub(crate) fn full(b: impl Into<Bytes>) -> Body {
        let b = b.into();
        Body {
            kind: Kind::Full((!b.is_empty()).then_some(b)),
            _guard: None,
        }
    }

    pub(crate) fn empty() -> Body {
        Body::full(Bytes::new())
    }

    /// Fixed content sent as one chunk (no `Content-Length`), as OpenDHT answers some SUBSCRIBEs.
    pub(crate) fn chunked(b: impl Into<Bytes>) -> Body {
        Body {
            kind: Kind::Chunked(Some(b.into())),
            _guard: None,
        }
    }

    /// Each batch of values that arrive together becomes one chunk; the body ends with the get.
    pub(crate) fn get(s: BoxStream<Value>, guard: Option<Guard>) -> Body {
        Body {
            kind: Kind::Get(Some(s)),
            _guard: guard,
        }
    }

    /// One chunk per value; `"expired":true` on expirations; ends only if the DHT listen does.
    pub(crate) fn listen(s: BoxStream<ListenEvent>, guard: Guard) -> Body {
        Body {
            kind: Kind::Listen(s, VecDeque::new()),
            _guard: Some(guard),
        }
    }
}

fn chunk(lines: String) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
    Poll::Ready(Some(Ok(Frame::data(Bytes::from(lines)))))
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Full(b) | Kind::Chunked(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Get(slot) => {
                let Some(s) = slot else {
                    return Poll::Ready(None);
                };
                let mut lines = String::new();
                let mut n = 0;
                loop {
                    match s.as_mut().poll_next(cx) {
                        Poll::Ready(Some(v)) => {
                            lines.push_str(&value_line(&v, false));
                            n += 1;
                            if n >= MAX_BATCH {
                                return chunk(lines);
                            }
                        }
                        Poll::Ready(None) => {
                            *slot = None;
                            return if n > 0 { chunk(lines) } else { Poll::Ready(None) };
                        }
                        Poll::Pending if n > 0 => return chunk(lines),
                        Poll::Pending => return Poll::Pending,
                    }
                }
            }
            Kind::Listen(s, queue) => loop {
                if let Some(line) = queue.pop_front() {
                    return chunk(line);
                }
                match s.as_mut().poll_next(cx) {
                    // One chunk per value, as OpenDHT writes them.
                    Poll::Ready(Some(ListenEvent::Added(vals))) => {
                        queue.extend(vals.iter().map(|v| value_line(v, false)));
                    }
                    Poll::Ready(Some(ListenEvent::Expired(vals))) => {
                        queue.extend(vals.iter().map(|v| value_line(v, true)));
                    }
                    Poll::Ready(None) => return Poll::Ready(None),
                    Poll::Pending => return Poll::Pending,
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.kind, Kind::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            _ => SizeHint::default(),
        }
    }
}
