//! What operations give back: a get's [`GetStream`], a listen's [`ListenStream`] of [`Change`]s,
//! a put's [`Stored`].

use std::pin::Pin;
use std::task::{Context, Poll};

use dht_proto::PutOutcome;
use dht_proto::value::Value;
use smol::channel::Receiver;
use smol::stream::Stream;

use crate::command::{Command, GetMsg};
use crate::{Error, GetId, GetSummary, Handle, ListenId};

/// A put's result: the value id (chosen here when the value's was 0) and how many nodes stored it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The value id, for [`Handle::cancel_put`].
    pub vid: u64,
    /// Acknowledgements.
    pub outcome: PutOutcome,
}

/// What a listen reports.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Values added (or changed).
    Added(Vec<Value>),
    /// Values expired or removed.
    Expired(Vec<Value>),
}

/// The values of a get, as they arrive ([`Handle::get`]). Ends when the search is done; dropping
/// it early cancels the get.
pub struct GetStream {
    pub(crate) node: Handle,
    pub(crate) id: GetId,
    pub(crate) rx: Pin<Box<Receiver<GetMsg>>>,
    pub(crate) pending: Vec<Value>,
    pub(crate) outcome: Option<Result<bool, Error>>,
    /// How the get ended, once it has (with `outcome: Some(Ok(_))`).
    pub(crate) summary: Option<GetSummary>,
}

impl std::fmt::Debug for GetStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetStream")
            .field("id", &self.id.get())
            .finish_non_exhaustive()
    }
}

impl GetStream {
    /// Once the stream has ended: `Ok(true)` when the closest nodes answered, `Ok(false)` when
    /// not all did, `Err` when the node refused the get or shut down. `None` before the end.
    pub fn outcome(&self) -> Option<&Result<bool, Error>> {
        self.outcome.as_ref()
    }

    /// Once the stream has ended after a finished search: how it ended (complete or not, and
    /// how many of the closest nodes answered in full out of how many were asked). `None` before
    /// the end, or when the get failed ([`GetStream::outcome`] holds the error).
    ///
    /// ```
    /// use dht_smol::{Config, Handle};
    /// use dht_proto::{InfoHash, value::Value};
    /// use smol::stream::StreamExt;
    ///
    /// smol::block_on(async {
    ///     let a = Handle::start(Config::loopback()).await.unwrap();
    ///     let b = Handle::start(Config::loopback()).await.unwrap();
    ///     b.bootstrap_addr(a.local_addrs()[0]).unwrap();
    ///     b.wait_connected(std::time::Duration::from_secs(10)).await.unwrap();
    ///     let key = InfoHash::get("hello");
    ///     a.put(key, Value::new(0, b"world".to_vec())).await.unwrap();
    ///     let mut get = b.get(key);
    ///     assert!(get.summary().is_none(), "not ended yet");
    ///     while let Some(v) = get.next().await {
    ///         assert_eq!(v.data, b"world");
    ///     }
    ///     let summary = get.summary().unwrap();
    ///     assert!(summary.ok && summary.answered >= 1 && summary.answered <= summary.asked);
    ///     println!("get done: {summary}"); // e.g. "get done: 2/2 answered"
    ///     a.shutdown().await;
    ///     b.shutdown().await;
    /// });
    /// ```
    pub fn summary(&self) -> Option<GetSummary> {
        self.summary
    }
}

impl Stream for GetStream {
    type Item = Value;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Value>> {
        loop {
            if let Some(v) = self.pending.pop() {
                return Poll::Ready(Some(v));
            }
            if self.outcome.is_some() {
                return Poll::Ready(None);
            }
            match self.rx.as_mut().poll_next(cx) {
                Poll::Ready(Some(GetMsg::Values(mut vs))) => {
                    vs.reverse();
                    self.pending = vs;
                }
                Poll::Ready(Some(GetMsg::Done(r))) => {
                    self.summary = r.as_ref().ok().copied();
                    self.outcome = Some(r.map(|s| s.ok));
                }
                Poll::Ready(None) => self.outcome = Some(Err(Error::Closed)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for GetStream {
    fn drop(&mut self) {
        if self.outcome.is_none() {
            let _ = self.node.send(Command::CancelGet(self.id));
        }
    }
}

/// The changes of a listen ([`Handle::listen`]); dropping it cancels the listen. Yields an `Err`
/// (and then ends) if the node refused the listen or shut down.
pub struct ListenStream {
    pub(crate) node: Handle,
    pub(crate) id: ListenId,
    pub(crate) rx: Pin<Box<Receiver<Result<Change, Error>>>>,
}

impl std::fmt::Debug for ListenStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenStream")
            .field("id", &self.id.get())
            .finish_non_exhaustive()
    }
}

impl Stream for ListenStream {
    type Item = Result<Change, Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.as_mut().poll_next(cx)
    }
}

impl Drop for ListenStream {
    fn drop(&mut self) {
        let _ = self.node.send(Command::CancelListen(self.id));
    }
}
