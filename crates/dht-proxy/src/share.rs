//! Gets and listens shared between requests on the same key.
//!
//! - **Gets**: requests for a key while a DHT get of it is running join that get instead of
//!   starting another. A joiner first receives every value the get has found so far, then the
//!   rest as it arrives; the get ends for everyone when the DHT get ends. For a short while
//!   after that (`Timers::get_cache`, 500 ms) requests are answered with the finished get's
//!   values, complete at once; the first request after it starts a fresh DHT get. A put through
//!   the proxy, or a change seen by a DHT listen the proxy holds on the key, drops the finished
//!   answer at once, so it is never older than a change the proxy knows of. Without this window
//!   a key asked for continuously turns every HTTP burst into a DHT get (about one per round
//!   trip, ~1,000/s on loopback), which the nodes asked rate-limit per IP address (OpenDHT's and
//!   ours: 1,024 requests/s): their drops cost a request a retransmission (0.5–1.1 s).
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use dht_proto::InfoHash;
use dht_proto::value::Value;
use smol::Task;
use smol::stream::{Stream, StreamExt};

use crate::dht::{BoxStream, Dht, ListenEvent};

/// Events queued for one listen stream before it is ended as too slow.
pub(crate) const MAX_QUEUED: usize = 1024;
/// Finished gets kept for [`Shares::get`]'s window at once; the oldest is dropped past this.
const MAX_ANSWERS: usize = 4096;

/// A finished get's values, kept for the `get_cache` window.
struct Answer {
    at: Instant,
    values: Arc<[Value]>,
}

/// Finished gets by key, and their keys in the order they finished (for expiry).
#[derive(Default)]
struct Answers {
    by_key: HashMap<InfoHash, Answer>,
    order: VecDeque<(Instant, InfoHash)>,
}

impl Answers {
    fn prune(&mut self, now: Instant, window: Duration) {
        while let Some(&(at, key)) = self.order.front() {
            if now.duration_since(at) < window && self.order.len() <= MAX_ANSWERS {
                break;
            }
            self.order.pop_front();
            if self.by_key.get(&key).is_some_and(|a| a.at == at) {
                self.by_key.remove(&key);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The gets and listens running, by key.
pub(crate) struct Shares {
    dht: Arc<dyn Dht>,
    gets: Mutex<HashMap<InfoHash, Weak<GetShare>>>,
    listens: Mutex<HashMap<InfoHash, Weak<ListenShare>>>,
    /// How long a finished get answers further requests.
    window: Duration,
    answers: Mutex<Answers>,
    /// Gets answered from a finished get (for stats and tests).
    pub(crate) cached_gets: AtomicU64,
    /// DHT gets started (for stats and tests).
    pub(crate) dht_gets: AtomicU64,
    /// DHT listens started.
    pub(crate) dht_listens: AtomicU64,
}

impl Shares {
    pub(crate) fn new(dht: Arc<dyn Dht>, window: Duration) -> Arc<Shares> {
        Arc::new(Shares {
            dht,
            gets: Mutex::new(HashMap::new()),
            listens: Mutex::new(HashMap::new()),
            window,
            answers: Mutex::new(Answers::default()),
            cached_gets: AtomicU64::new(0),
            dht_gets: AtomicU64::new(0),
            dht_listens: AtomicU64::new(0),
        })
    }

    /// Keys with a DHT get running, keys with a DHT listen open.
    pub(crate) fn running(&self) -> (usize, usize) {
        (lock(&self.gets).len(), lock(&self.listens).len())
    }

    /// The values at `key`: those of the DHT get running for it, else of one that finished
    /// less than the window ago, else of a new one.
    pub(crate) fn get(self: &Arc<Self>, key: InfoHash) -> BoxStream<Value> {
        let mut gets = lock(&self.gets);
        let share = match gets.get(&key).and_then(Weak::upgrade) {
            Some(s) => s,
            None => {
                if let Some(values) = self.answer(key) {
                    drop(gets);
                    self.cached_gets.fetch_add(1, Ordering::Relaxed);
                    return Box::pin(Answered { values, next: 0 });
                }
                let s = Arc::new(GetShare {
                    key,
                    stale: AtomicBool::new(false),
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

    /// The finished get of `key`, if it finished less than the window ago.
    fn answer(&self, key: InfoHash) -> Option<Arc<[Value]>> {
        if self.window.is_zero() {
            return None;
        }
        let mut a = lock(&self.answers);
        a.prune(Instant::now(), self.window);
        a.by_key.get(&key).map(|a| a.values.clone())
    }

    /// Keeps a finished get's values for the window.
    fn finished(&self, key: InfoHash, values: Arc<[Value]>) {
        if self.window.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut a = lock(&self.answers);
        a.by_key.insert(key, Answer { at: now, values });
        a.order.push_back((now, key));
        a.prune(now, self.window);
    }

    /// Drops the finished get of `key`: its values changed (a put through the proxy, a change
    /// seen by a listen).
    pub(crate) fn changed(&self, key: &InfoHash) {
        if self.window.is_zero() {
            return;
        }
        // A get running now may have asked some nodes before the change: it answers its own
        // requests but not the window after it.
        // (The map's lock is released before the share may drop, which takes it.)
        let running = lock(&self.gets).get(key).and_then(Weak::upgrade);
        if let Some(g) = running {
            g.stale.store(true, Ordering::SeqCst);
        }
        lock(&self.answers).by_key.remove(key);
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
    /// The key changed while the get ran: its values do not answer later gets.
    stale: AtomicBool,
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
    // Done: later requests are answered with these values for the window, then start a new get.
    // (No lock is held while another is taken.)
    if let Some(shares) = s.shares.upgrade() {
        let values: Arc<[Value]> = lock(&s.state).values.as_slice().into();
        shares.finished(s.key, values);
        // Checked after, as `changed` marks before it removes: either way no stale answer stays.
        if s.stale.load(Ordering::SeqCst) {
            lock(&shares.answers).by_key.remove(&s.key);
        }
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

/// A get answered from a finished one.
struct Answered {
    values: Arc<[Value]>,
    next: usize,
}

impl Stream for Answered {
    type Item = Value;

    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Value>> {
        let this = self.get_mut();
        let v = this.values.get(this.next).cloned();
        this.next += 1;
        Poll::Ready(v)
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
        if let Some(shares) = s.shares.upgrade() {
            shares.changed(&s.key);
        }
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
