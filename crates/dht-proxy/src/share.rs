//! Gets and listens shared between requests on the same key.
//!
//! - **Gets**: requests for a key while a DHT get of it is running join that get instead of
//!   starting another. A joiner first receives every value the get has found so far, then the
//!   rest as it arrives; the get ends for everyone when the DHT get ends. The next request after
//!   that starts a fresh DHT get: nothing is served from a finished get (no stale cache).
//! - **Listens**: listen streams (and push subscriptions) on a key share one DHT listen. A new
//!   stream first receives the values the listen holds (as a fresh DHT listen reports the
//!   values it finds), then every change. The DHT listen is cancelled when its last stream goes.
//!
//! Memory: one entry per key with a get running or a listen open; a get holds the values found
//! so far (what each request used to receive anyway), a listen the current values of its key;
//! each stream has a small queue, and a stream whose queue passes [`MAX_QUEUED`] events (a
//! client that stopped reading) is ended rather than buffered without bound.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};

use dht_proto::InfoHash;
use dht_proto::value::Value;
use smol::Task;
use smol::stream::{Stream, StreamExt};

use crate::dht::{BoxStream, Dht, ListenEvent};

/// Events queued for one listen stream before it is ended as too slow.
pub(crate) const MAX_QUEUED: usize = 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The gets and listens running, by key.
pub(crate) struct Shares {
    dht: Arc<dyn Dht>,
    gets: Mutex<HashMap<InfoHash, Weak<GetShare>>>,
    listens: Mutex<HashMap<InfoHash, Weak<ListenShare>>>,
    /// DHT gets started (for stats and tests).
    pub(crate) dht_gets: AtomicU64,
    /// DHT listens started.
    pub(crate) dht_listens: AtomicU64,
}

impl Shares {
    pub(crate) fn new(dht: Arc<dyn Dht>) -> Arc<Shares> {
        Arc::new(Shares {
            dht,
            gets: Mutex::new(HashMap::new()),
            listens: Mutex::new(HashMap::new()),
            dht_gets: AtomicU64::new(0),
            dht_listens: AtomicU64::new(0),
        })
    }

    /// Keys with a DHT get running, keys with a DHT listen open.
    pub(crate) fn running(&self) -> (usize, usize) {
        (lock(&self.gets).len(), lock(&self.listens).len())
    }

    /// The values at `key`: those of the DHT get running for it, or of a new one.
    pub(crate) fn get(self: &Arc<Self>, key: InfoHash) -> BoxStream<Value> {
        let mut gets = lock(&self.gets);
        let share = match gets.get(&key).and_then(Weak::upgrade) {
            Some(s) => s,
            None => {
                let s = Arc::new(GetShare {
                    key,
                    shares: Arc::downgrade(self),
                    state: Mutex::new(GetState::default()),
                    task: Mutex::new(None),
                });
                gets.insert(key, Arc::downgrade(&s));
                self.dht_gets.fetch_add(1, Ordering::Relaxed);
                let task = smol::spawn(run_get(Arc::downgrade(&s), self.dht.get(key)));
                *lock(&s.task) = Some(task);
                s
            }
        };
        drop(gets);
        let id = {
            let mut st = lock(&share.state);
            st.next_sub += 1;
            st.next_sub
        };
        Box::pin(GetStream { share, id, next: 0 })
    }

    /// A listen at `key`, sharing the DHT listen other streams have open on it.
    pub(crate) fn listen(self: &Arc<Self>, key: InfoHash) -> BoxStream<ListenEvent> {
        let mut listens = lock(&self.listens);
        let share = match listens.get(&key).and_then(Weak::upgrade) {
            Some(s) => s,
            None => {
                let s = Arc::new(ListenShare {
                    key,
                    shares: Arc::downgrade(self),
                    state: Mutex::new(ListenState::default()),
                    task: Mutex::new(None),
                });
                listens.insert(key, Arc::downgrade(&s));
                self.dht_listens.fetch_add(1, Ordering::Relaxed);
                let task = smol::spawn(run_listen(Arc::downgrade(&s), self.dht.listen(key)));
                *lock(&s.task) = Some(task);
                s
            }
        };
        drop(listens);
        let id = {
            let mut st = lock(&share.state);
            st.next_sub += 1;
            let id = st.next_sub;
            let mut queue = VecDeque::new();
            if !st.values.is_empty() {
                queue.push_back(ListenEvent::Added(st.values.values().cloned().collect()));
            }
            st.subs.insert(id, Sub { queue, waker: None });
            id
        };
        Box::pin(ListenStream { share, id })
    }
}

/// Removes `key`'s entry if it is `me` or dead (its share dropped without removing it).
fn forget<T>(map: &Mutex<HashMap<InfoHash, Weak<T>>>, key: &InfoHash, me: *const T) {
    let mut m = lock(map);
    if m.get(key)
        .is_some_and(|w| w.as_ptr() == me || w.strong_count() == 0)
    {
        m.remove(key);
    }
}

// ----- gets

#[derive(Default)]
struct GetState {
    values: Vec<Value>,
    done: bool,
    wakers: HashMap<u64, Waker>,
    next_sub: u64,
}

struct GetShare {
    key: InfoHash,
    shares: Weak<Shares>,
    state: Mutex<GetState>,
    /// The task polling the DHT get; dropped (cancelling the get) with the last request.
    task: Mutex<Option<Task<()>>>,
}

impl Drop for GetShare {
    fn drop(&mut self) {
        if let Some(s) = self.shares.upgrade() {
            forget(&s.gets, &self.key, self);
        }
    }
}

async fn run_get(share: Weak<GetShare>, mut values: BoxStream<Value>) {
    while let Some(v) = values.next().await {
        let Some(s) = share.upgrade() else { return };
        let mut st = lock(&s.state);
        st.values.push(v);
        st.wakers.drain().for_each(|(_, w)| w.wake());
    }
    let Some(s) = share.upgrade() else { return };
    // Done: later requests start a new get.
    if let Some(shares) = s.shares.upgrade() {
        forget(&shares.gets, &s.key, &*s);
    }
    let mut st = lock(&s.state);
    st.done = true;
    st.wakers.drain().for_each(|(_, w)| w.wake());
}

struct GetStream {
    share: Arc<GetShare>,
    id: u64,
    next: usize,
}

impl Stream for GetStream {
    type Item = Value;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Value>> {
        let this = self.get_mut();
        let mut st = lock(&this.share.state);
        if let Some(v) = st.values.get(this.next) {
            let v = v.clone();
            this.next += 1;
            st.wakers.remove(&this.id);
            return Poll::Ready(Some(v));
        }
        if st.done {
            return Poll::Ready(None);
        }
        st.wakers.insert(this.id, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for GetStream {
    fn drop(&mut self) {
        lock(&self.share.state).wakers.remove(&self.id);
    }
}

// ----- listens

struct Sub {
    queue: VecDeque<ListenEvent>,
    waker: Option<Waker>,
}

#[derive(Default)]
struct ListenState {
    /// The values the listen holds now, by id.
    values: BTreeMap<u64, Value>,
    subs: HashMap<u64, Sub>,
    next_sub: u64,
    ended: bool,
}

struct ListenShare {
    key: InfoHash,
    shares: Weak<Shares>,
    state: Mutex<ListenState>,
    task: Mutex<Option<Task<()>>>,
}

impl Drop for ListenShare {
    fn drop(&mut self) {
        if let Some(s) = self.shares.upgrade() {
            forget(&s.listens, &self.key, self);
        }
    }
}

async fn run_listen(share: Weak<ListenShare>, mut events: BoxStream<ListenEvent>) {
    while let Some(ev) = events.next().await {
        let Some(s) = share.upgrade() else { return };
        let mut st = lock(&s.state);
        match &ev {
            ListenEvent::Added(vals) => {
                for v in vals {
                    st.values.insert(v.id, v.clone());
                }
            }
            ListenEvent::Expired(vals) => {
                for v in vals {
                    st.values.remove(&v.id);
                }
            }
        }
        for sub in st.subs.values_mut() {
            // A stream too far behind is ended (below) rather than buffered without bound.
            if sub.queue.len() <= MAX_QUEUED {
                sub.queue.push_back(ev.clone());
            }
            if let Some(w) = sub.waker.take() {
                w.wake();
            }
        }
    }
    let Some(s) = share.upgrade() else { return };
    if let Some(shares) = s.shares.upgrade() {
        forget(&shares.listens, &s.key, &*s);
    }
    let mut st = lock(&s.state);
    st.ended = true;
    for sub in st.subs.values_mut() {
        if let Some(w) = sub.waker.take() {
            w.wake();
        }
    }
}

struct ListenStream {
    share: Arc<ListenShare>,
    id: u64,
}

impl Stream for ListenStream {
    type Item = ListenEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ListenEvent>> {
        let this = self.get_mut();
        let mut st = lock(&this.share.state);
        let ended = st.ended;
        let Some(sub) = st.subs.get_mut(&this.id) else {
            return Poll::Ready(None);
        };
        if sub.queue.len() > MAX_QUEUED {
            tracing::debug!(key = %this.share.key, "listen stream too far behind: ended");
            st.subs.remove(&this.id);
            return Poll::Ready(None);
        }
        if let Some(ev) = sub.queue.pop_front() {
            return Poll::Ready(Some(ev));
        }
        if ended {
            return Poll::Ready(None);
        }
        sub.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for ListenStream {
    fn drop(&mut self) {
        lock(&self.share.state).subs.remove(&self.id);
    }
}
