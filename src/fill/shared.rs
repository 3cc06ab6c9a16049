//! The state one fill shares with its readers: the origin's head, and a bounded window of the
//! object's bytes that readers tail.
//!
//! # Memory bound and slow readers
//!
//! The fill keeps the object's bytes in memory from byte 0 until they exceed `window`
//! (so requests that join a young fill replay it from the start). Beyond that, it drops the
//! oldest chunk as soon as every *live* reader has read past it. A reader that holds the
//! window full keeps the fill waiting for at most `grace`; after that the reader is
//! *demoted*: it stops reading from memory, the fill goes on at the origin's pace, and the
//! reader continues at its own offset from the fill's spool at once when the fill has one
//! ([`super::spool`]; it reads the window again once it catches up), else from the store
//! once the object is committed. Requests that join after byte 0 was dropped are demoted
//! from the start. So memory per fill is at most `window` plus one chunk (plus one spool
//! read per reader outside the window) whatever the object size and the number of readers,
//! one slow client never stalls the others for more than `grace`, and no reader ever sees
//! bytes from two different versions (a demoted reader fails if the store holds another
//! object).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::spool::{READ_BUFFER, Spool, SpoolError};
use crate::Error;
use crate::store::{Committed, Store};
use crate::time;

/// What the origin said, shared by every reader.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) status: http::StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) content_length: Option<u64>,
    /// Whether readers other than the one that started the fill may have it (`false` for a
    /// response marked private: see `meta::private_reason`).
    pub(crate) shared: bool,
}

/// Bytes gathered before one spool write (or a quarter of the window, if less: unwritten
/// bytes are then always still in memory).
pub(crate) const SPOOL_BATCH: usize = 256 * 1024;

/// The head as a reader sees it.
pub(crate) enum HeadView {
    Ready(Arc<Head>),
    /// The response is its first requester's alone: this reader must fetch its own.
    Private,
    NotFound,
    Failed(Arc<Error>),
}

/// What a live reader gets next.
pub(crate) enum Read {
    Data(Bytes),
    End,
    Failed(Arc<Error>),
    /// The reader fell behind; the object is committed: read it from the store from
    /// `offset`, expecting `total` bytes in all.
    FromStore {
        offset: u64,
        total: u64,
    },
    /// The reader is not in the window: read `len` bytes of the spool at `offset`.
    Spool {
        spool: Arc<Spool>,
        offset: u64,
        len: usize,
    },
}

/// How a fill ended, for callers that wait on it without reading it (warm-up).
#[derive(Debug, Clone)]
pub(crate) enum Ended {
    /// Stored (or found already stored), `bytes` long.
    Stored(u64),
    /// The origin does not have it.
    NotFound,
    /// Delivered but not stored (a response that is not stored, or the store write failed).
    NotStored,
    /// Failed.
    Failed(Arc<Error>),
}

/// The fill was abandoned: its last reader left and the policy cancels it then, or the
/// layer is shutting down.
#[derive(Debug)]
pub(crate) struct Abandoned;

enum HeadState {
    Pending,
    Ready(Arc<Head>),
    NotFound,
    Failed(Arc<Error>),
}

enum Outcome {
    Committed(Committed),
    /// Every byte went to the readers, but the store write failed.
    Unstored(Arc<Error>),
    Failed(Arc<Error>),
}

struct Slot {
    pos: u64,
    live: bool,
    waker: Option<Waker>,
}

struct State {
    head: HeadState,
    chunks: VecDeque<(u64, Bytes)>,
    end: u64,
    retained: usize,
    outcome: Option<Outcome>,
    /// By reader id: a reader finds its slot in O(1), so n readers of one chunk cost O(n).
    readers: HashMap<u64, Slot>,
    next_id: u64,
    /// The reader that started the fill, if a request did.
    leader: Option<u64>,
    had_reader: bool,
    fill_waiting: bool,
    cancelled: bool,
    /// The fill's spool, while anyone may still read it.
    spool: Option<Arc<Spool>>,
    /// Bytes written to the spool (from byte 0).
    spooled: u64,
    /// Whether the spool is still being written (not stopped by its bound or an error).
    spool_open: bool,
    /// Chunks received but not yet written to the spool (at most [`SPOOL_BATCH`] bytes, all
    /// still in the window: only bytes older than the window are read from the spool).
    pending: Vec<Bytes>,
    pending_len: usize,
    /// When the first byte of the body arrived (the fill's rate is measured from it).
    first_byte: Option<Instant>,
}

pub(crate) struct Fill {
    pub(crate) key: String,
    pub(crate) store: Option<Arc<dyn Store>>,
    window: usize,
    /// How long a full window may hold the fill up (for a fill that stores nothing: how long
    /// a reader may go without reading anything while the window is full).
    grace: Duration,
    cancel_when_alone: bool,
    /// Let other tasks go first once before asking the origin (a speculative range of the
    /// fill's leader takes the idle pooled connection then: see [`Fill::defer_fetch`]).
    defer_fetch: std::sync::atomic::AtomicBool,
    /// When readers stop waiting for the head.
    head_deadline: Instant,
    state: Mutex<State>,
    /// Wakes the fill task when a reader advances or leaves, or on cancellation.
    space: Notify,
    /// Wakes whoever waits for the fill to end.
    ended: Notify,
}

impl State {
    fn base(&self) -> u64 {
        self.chunks.front().map_or(self.end, |(offset, _)| *offset)
    }

    fn min_live_pos(&self) -> u64 {
        self.readers
            .values()
            .filter(|s| s.live)
            .map(|s| s.pos)
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Drop consumed chunks from the front until `len` more bytes fit in `window`.
    fn make_room(&mut self, len: usize, window: usize) {
        let min = self.min_live_pos();
        while self.retained + len > window {
            match self.chunks.front() {
                Some((offset, bytes)) if offset + bytes.len() as u64 <= min => {
                    self.retained -= bytes.len();
                    self.chunks.pop_front();
                }
                _ => break,
            }
        }
    }

    fn fits(&self, len: usize, window: usize) -> bool {
        self.chunks.is_empty() || self.retained + len <= window
    }

    /// Demote the live readers that keep `len` more bytes from fitting; with no store to
    /// continue from, drop them (their bodies end in an error).
    fn demote_laggards(&mut self, len: usize, window: usize, evict: bool) {
        let mut retained = self.retained;
        let mut keep_from = self.base();
        for (offset, bytes) in &self.chunks {
            if retained + len <= window {
                break;
            }
            retained -= bytes.len();
            keep_from = offset + bytes.len() as u64;
        }
        for slot in self
            .readers
            .values_mut()
            .filter(|s| s.live && s.pos < keep_from)
        {
            slot.live = false;
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
        if evict {
            self.readers.retain(|_, s| s.live);
        }
        self.release_if_done();
    }

    /// Once the fill has ended, drop the bytes no live reader can still read: all of them
    /// when it failed or when no live reader is left. A request that stopped reading then
    /// pins no memory of the fill.
    fn release_if_done(&mut self) {
        let done = match &self.outcome {
            None => false,
            Some(Outcome::Failed(_)) => true,
            Some(_) => !self.readers.values().any(|s| s.live),
        };
        if done {
            self.chunks.clear();
            self.retained = 0;
        }
        // The spool goes once no reader outside the window is left to read it (and at once
        // when the fill failed): its descriptor closes, the kernel frees its bytes.
        let spool_needed = match &self.outcome {
            None => true,
            Some(Outcome::Failed(_)) => false,
            Some(_) => self.readers.values().any(|s| !s.live),
        };
        if !spool_needed {
            self.spool = None;
            self.spool_open = false;
        }
    }

    fn wake_readers(&mut self) {
        for slot in self.readers.values_mut() {
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
    }

    fn slot(&mut self, id: u64) -> Option<&mut Slot> {
        self.readers.get_mut(&id)
    }
}

impl Fill {
    pub(crate) fn new(
        key: String,
        store: Option<Arc<dyn Store>>,
        window: usize,
        grace: Duration,
        cancel_when_alone: bool,
        head_deadline: Instant,
    ) -> Self {
        Self {
            key,
            store,
            window,
            grace,
            cancel_when_alone,
            defer_fetch: std::sync::atomic::AtomicBool::new(false),
            head_deadline,
            state: Mutex::new(State {
                head: HeadState::Pending,
                chunks: VecDeque::new(),
                end: 0,
                retained: 0,
                outcome: None,
                readers: HashMap::new(),
                next_id: 0,
                leader: None,
                had_reader: false,
                fill_waiting: false,
                cancelled: false,
                spool: None,
                spooled: 0,
                spool_open: false,
                pending: Vec::new(),
                pending_len: 0,
                first_byte: None,
            }),
            space: Notify::new(),
            ended: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state half-updated in a way that
        // matters more than the panic itself; keep serving the other readers.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ----- the fill task's side -----

    /// Ask the fill to let the tasks already scheduled run before it asks the origin (set
    /// by a leader's speculative range request, started right after the fill: that request
    /// is the one its client waits for, so it should get the connection the pool has idle
    /// and go out first; the fill may connect). Best effort: a fill that already asked is
    /// unaffected.
    pub(crate) fn defer_fetch(&self) {
        self.defer_fetch
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether [`Fill::defer_fetch`] was asked (once).
    pub(crate) fn take_defer_fetch(&self) -> bool {
        self.defer_fetch
            .swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn set_head(&self, head: Head) {
        let mut st = self.lock();
        st.head = HeadState::Ready(Arc::new(head));
        st.wake_readers();
    }

    pub(crate) fn not_found(&self) {
        let mut st = self.lock();
        st.head = HeadState::NotFound;
        st.outcome = Some(Outcome::Failed(Arc::new(Error::FillAborted {
            key: self.key.clone(),
            reason: "the origin does not have the object",
        })));
        st.wake_readers();
        drop(st);
        self.ended.notify_waiters();
    }

    /// End the fill in failure: before the head (→ 502) or after it (→ body error).
    pub(crate) fn fail(&self, error: Error) {
        let error = Arc::new(error);
        let mut st = self.lock();
        if matches!(st.head, HeadState::Pending) {
            st.head = HeadState::Failed(error.clone());
        }
        // An outcome already set (the bytes were all delivered) stands.
        st.outcome.get_or_insert(Outcome::Failed(error));
        st.release_if_done();
        st.wake_readers();
        drop(st);
        self.ended.notify_waiters();
    }

    pub(crate) fn complete(&self, committed: Committed) {
        let mut st = self.lock();
        st.outcome = Some(Outcome::Committed(committed));
        st.release_if_done();
        st.wake_readers();
        drop(st);
        self.ended.notify_waiters();
    }

    pub(crate) fn complete_unstored(&self, error: Arc<Error>) {
        let mut st = self.lock();
        st.outcome = Some(Outcome::Unstored(error));
        st.release_if_done();
        st.wake_readers();
        drop(st);
        self.ended.notify_waiters();
    }

    /// Whether nobody wants the fill any more.
    pub(crate) fn abandoned(&self) -> bool {
        let st = self.lock();
        self.is_abandoned(&st)
    }

    fn is_abandoned(&self, st: &State) -> bool {
        st.cancelled || (self.cancel_when_alone && st.had_reader && st.readers.is_empty())
    }

    /// Resolves once nobody wants the fill any more (see [`abandoned`](Self::abandoned)):
    /// its last reader left ([`leave`](Self::leave) wakes the fill then) or it was
    /// cancelled.
    pub(crate) async fn wait_abandoned(&self) {
        loop {
            let notified = self.space.notified();
            if self.abandoned() {
                return;
            }
            notified.await;
        }
    }

    /// Whether [`cancel`](Self::cancel) was called (shutdown, a delete of the key).
    pub(crate) fn is_cancelled(&self) -> bool {
        self.lock().cancelled
    }

    /// Stop the fill at its next step (shutdown, a delete of the key).
    pub(crate) fn cancel(&self) {
        self.lock().cancelled = true;
        self.space.notify_one();
    }

    /// Append a chunk for the readers, waiting (at most `grace`) for room in the window.
    ///
    /// With a store, a reader that keeps the window full for `grace` is demoted (it goes on
    /// from the store after the commit). Without one, a reader that is merely slow paces the
    /// fill (plain backpressure), but one that reads nothing at all for `grace` is dropped:
    /// its body ends in an error, and a fill nobody reads any more stops.
    pub(crate) async fn push(&self, chunk: Bytes) -> Result<(), Abandoned> {
        let len = chunk.len();
        let evict = self.store.is_none();
        let mut deadline = None;
        let mut progress = None;
        loop {
            let notified = self.space.notified();
            let wait_until = {
                let mut st = self.lock();
                if self.is_abandoned(&st) {
                    return Err(Abandoned);
                }
                st.make_room(len, self.window);
                if !st.fits(len, self.window) {
                    let now = Instant::now();
                    let slowest = st.min_live_pos();
                    if evict && progress != Some(slowest) {
                        // The slowest reader moved: its grace starts again.
                        progress = Some(slowest);
                        deadline = None;
                    }
                    let until = *deadline.get_or_insert(time::after(now, self.grace));
                    if now >= until {
                        st.demote_laggards(len, self.window, evict);
                        if self.is_abandoned(&st) {
                            return Err(Abandoned);
                        }
                        st.make_room(len, self.window);
                    }
                }
                if st.fits(len, self.window) {
                    st.fill_waiting = false;
                    st.first_byte.get_or_insert_with(Instant::now);
                    let offset = st.end;
                    st.end += len as u64;
                    st.retained += len;
                    st.chunks.push_back((offset, chunk));
                    st.wake_readers();
                    return Ok(());
                }
                st.fill_waiting = true;
                deadline
            };
            match wait_until {
                Some(until) => {
                    let _ = tokio::time::timeout_at(until, notified).await;
                }
                None => notified.await,
            }
        }
    }

    /// Give the fill a spool: from now on each chunk is written to it before the window.
    pub(crate) fn attach_spool(&self, spool: Arc<Spool>) {
        let mut st = self.lock();
        if st.end == 0 && st.outcome.is_none() {
            st.spool = Some(spool);
            st.spool_open = true;
        }
    }

    /// Write a chunk to the spool (if the fill spools) before it goes to the window, and let
    /// the readers outside the window have it. Past the disk bound or on an IO error the
    /// spool stops where it is (counted): what it holds stays readable, and readers past
    /// it go on as without a spool.
    ///
    /// Chunks are written in batches of [`SPOOL_BATCH`] bytes (one blocking write each, not
    /// one per chunk: a hand-off to the blocking pool per 16 KiB chunk cost cold pulls a
    /// third of their throughput on one CPU); the bytes of a batch not yet written are in
    /// the window, where readers read them.
    pub(crate) async fn spool(&self, chunk: &Bytes) {
        {
            let mut st = self.lock();
            let staging = st.spool.as_ref().is_some_and(|s| s.staged().is_some());
            if st.spool.is_none() || !st.spool_open || staging {
                // A staging file is written by the store ([`Fill::catch_up_staging`]).
                return;
            }
            st.first_byte.get_or_insert_with(Instant::now);
            st.pending.push(chunk.clone());
            st.pending_len += chunk.len();
            // A quarter of the window at most: the unwritten bytes are always newer than
            // what `make_room` may drop.
            if st.pending_len < SPOOL_BATCH.min(self.window / 4).max(1) {
                return;
            }
        }
        self.flush_spool().await;
    }

    /// Write the chunks not yet in the spool (the fill calls this once its last chunk is
    /// in, so a reader outside the window can read to the end).
    pub(crate) async fn flush_spool(&self) {
        if self.catch_up_staging() {
            return;
        }
        let (spool, offset, batch) = {
            let mut st = self.lock();
            let (Some(spool), true, false) =
                (st.spool.clone(), st.spool_open, st.pending.is_empty())
            else {
                return;
            };
            let mut batch = bytes::BytesMut::with_capacity(st.pending_len);
            for chunk in st.pending.drain(..) {
                batch.extend_from_slice(&chunk);
            }
            st.pending_len = 0;
            (spool, st.spooled, batch.freeze())
        };
        let len = batch.len() as u64;
        let spools = spool.spools().clone();
        let written = spool.write(offset, batch).await;
        let mut st = self.lock();
        match written {
            Ok(()) if st.spool_open => {
                st.spooled = offset.saturating_add(len);
            }
            Ok(()) => {}
            Err(e) => {
                let full = matches!(e, SpoolError::Full);
                if let SpoolError::Io(e) = &e {
                    tracing::warn!(key = %self.key, error = %e, "spool write failed; not spooling");
                }
                spools.counted_fallback(full);
                st.spool_open = false;
            }
        }
        st.wake_readers();
    }

    /// For a fill whose spool is the store write's staging file: the bytes the store has
    /// written are readable now, up to what the readers have been handed (so the held last
    /// chunk is never read from the file before the commit releases it). `false`: the
    /// fill's spool is not a staging file (or it has none).
    pub(crate) fn catch_up_staging(&self) -> bool {
        let mut st = self.lock();
        let Some(written) = st.spool.as_ref().and_then(|s| s.staged()) else {
            return false;
        };
        let readable = written.min(st.end);
        if st.spool_open && readable > st.spooled {
            st.spooled = readable;
            st.wake_readers();
        }
        true
    }

    /// A spool that is the store write's staging file stops where it is (the write is gone):
    /// what it holds stays readable, readers past it go on as without a spool. A spool of
    /// the fill's own goes on.
    pub(crate) fn stop_staging(&self) {
        let mut st = self.lock();
        if st.spool.as_ref().is_some_and(|s| s.staged().is_some()) {
            st.spool_open = false;
        }
    }

    /// Whether a reader starting at `pos` is expected to have its first byte within
    /// `max_wait`: the byte is in the window or the spool, or the fill reaches it in time at
    /// the rate it has had since its first byte. Before the rate is known (the first
    /// 10 ms of the body), a start within one window past what has arrived counts, and
    /// beyond that the answer is `None`: not known yet.
    pub(crate) fn reaches(&self, pos: u64, max_wait: Duration) -> Option<bool> {
        if max_wait == Duration::MAX {
            return Some(true);
        }
        let st = self.lock();
        let frontier = st.end.max(st.spooled);
        let spooled = st.spool.is_some() && pos < st.spooled;
        if pos < frontier {
            // In memory or spooled: at once. Behind the window with no spool: only after
            // the commit, whose time is not known.
            return Some(pos >= st.base() || spooled);
        }
        let elapsed = st.first_byte.map(|t| t.elapsed()).unwrap_or_default();
        if elapsed < Duration::from_millis(10) || st.end == 0 {
            return (pos.saturating_sub(frontier) <= self.window as u64).then_some(true);
        }
        // Bytes per second so far.
        let rate = st.end as f64 / elapsed.as_secs_f64();
        let ahead = pos.saturating_sub(frontier) as f64;
        Some(ahead / rate <= max_wait.as_secs_f64())
    }

    /// The bytes the window holds at most.
    pub(crate) fn window(&self) -> usize {
        self.window
    }

    /// When readers stop waiting for the head (the fill's head timeout from its start).
    pub(crate) fn head_deadline(&self) -> Instant {
        self.head_deadline
    }

    /// Whether the fill has ended in failure (a request for the key starts a new one).
    pub(crate) fn has_failed(&self) -> bool {
        let st = self.lock();
        matches!(st.outcome, Some(Outcome::Failed(_))) && !matches!(st.head, HeadState::NotFound)
    }

    /// How the fill ended, once it has.
    pub(crate) fn ended(&self) -> Option<Ended> {
        let st = self.lock();
        let outcome = st.outcome.as_ref()?;
        Some(match (&st.head, outcome) {
            (HeadState::NotFound, _) => Ended::NotFound,
            (_, Outcome::Committed(_)) => Ended::Stored(st.end),
            (_, Outcome::Unstored(_)) => Ended::NotStored,
            (_, Outcome::Failed(e)) => Ended::Failed(e.clone()),
        })
    }

    /// How the store write was committed, once it was.
    pub(crate) fn committed(&self) -> Option<Committed> {
        match self.lock().outcome {
            Some(Outcome::Committed(committed)) => Some(committed),
            _ => None,
        }
    }

    /// Wait until the fill has ended (stored, failed, or not found).
    pub(crate) async fn wait_ended(&self) {
        loop {
            let notified = self.ended.notified();
            if self.lock().outcome.is_some() {
                return;
            }
            notified.await;
        }
    }

    // ----- the readers' side -----

    /// Register the reader that started the fill (it alone may read a private response).
    pub(crate) fn lead(&self) -> u64 {
        let id = self.join();
        self.lock().leader = Some(id);
        id
    }

    /// Register a reader at byte 0 (demoted at once if byte 0 is gone).
    pub(crate) fn join(&self) -> u64 {
        let mut st = self.lock();
        let id = st.next_id;
        st.next_id += 1;
        let live = st.base() == 0;
        st.readers.insert(
            id,
            Slot {
                pos: 0,
                live,
                waker: None,
            },
        );
        st.had_reader = true;
        id
    }

    /// Move a reader to `pos` (a range's first byte): it reads from the window if `pos` is
    /// in it or ahead of it, else from the spool, else from the store after the commit.
    pub(crate) fn seek(&self, id: u64, pos: u64) {
        let mut st = self.lock();
        let base = st.base();
        if let Some(slot) = st.slot(id) {
            slot.pos = pos;
            slot.live = pos >= base;
        }
        let wake = st.fill_waiting;
        drop(st);
        if wake {
            self.space.notify_one();
        }
    }

    pub(crate) fn leave(&self, id: u64) {
        let mut st = self.lock();
        st.readers.remove(&id);
        st.release_if_done();
        let wake = st.fill_waiting || self.is_abandoned(&st);
        drop(st);
        if wake {
            self.space.notify_one();
        }
    }

    pub(crate) fn poll_head(&self, id: u64, cx: &mut Context<'_>) -> Poll<HeadView> {
        let mut st = self.lock();
        let view = match &st.head {
            HeadState::Ready(head) if !head.shared && st.leader != Some(id) => HeadView::Private,
            HeadState::Ready(head) => HeadView::Ready(head.clone()),
            HeadState::NotFound => HeadView::NotFound,
            HeadState::Failed(e) => HeadView::Failed(e.clone()),
            HeadState::Pending => {
                if let Some(slot) = st.slot(id) {
                    slot.waker = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
        };
        Poll::Ready(view)
    }

    pub(crate) fn poll_read(&self, id: u64, cx: &mut Context<'_>) -> Poll<Read> {
        let mut st = self.lock();
        if let Some(Outcome::Failed(e)) = &st.outcome {
            return Poll::Ready(Read::Failed(e.clone()));
        }
        let base = st.base();
        let end = st.end;
        let fill_waiting = st.fill_waiting;
        let ended = st.outcome.is_some();
        let spooling = st.spool.is_some();
        let Some(slot) = st.readers.get_mut(&id) else {
            return Poll::Ready(Read::Failed(Arc::new(Error::FillAborted {
                key: self.key.clone(),
                reason: "the reader was dropped: it read nothing for the slow-reader grace \
                         and the response is not stored",
            })));
        };
        let pos = slot.pos;
        if slot.live && pos < base {
            slot.live = false;
        }
        if !slot.live && spooling && pos >= base && pos < end {
            // A reader of the spool that caught up with the window reads it again.
            slot.live = true;
        }
        if slot.live {
            if pos < end {
                let index = st.chunks.partition_point(|(offset, _)| *offset <= pos) - 1;
                let (offset, bytes) = &st.chunks[index];
                let data = bytes.slice((pos - offset) as usize..);
                if let Some(slot) = st.readers.get_mut(&id) {
                    slot.pos += data.len() as u64;
                }
                drop(st);
                if fill_waiting {
                    self.space.notify_one();
                }
                return Poll::Ready(Read::Data(data));
            }
            if ended {
                return Poll::Ready(Read::End);
            }
        } else if let Some(read) = self.behind(&mut st, id, pos) {
            return Poll::Ready(read);
        }
        if let Some(slot) = st.readers.get_mut(&id) {
            slot.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// What a reader outside the window reads: the spool, or (once the spool cannot help)
    /// the store after the commit; `None`: wait.
    fn behind(&self, st: &mut State, id: u64, pos: u64) -> Option<Read> {
        if let Some(spool) = st.spool.clone().filter(|_| pos < st.spooled) {
            let len = (st.spooled - pos).min(READ_BUFFER as u64);
            if let Some(slot) = st.readers.get_mut(&id) {
                slot.pos += len;
            }
            return Some(Read::Spool {
                spool,
                offset: pos,
                len: len as usize,
            });
        }
        if st.spool.is_some() && st.spool_open && (st.outcome.is_none() || pos >= st.end) {
            // Every byte up to the end was spooled: the end is the fill's (never a failure:
            // that was answered first).
            return (st.outcome.is_some() && pos >= st.end).then_some(Read::End);
        }
        match &st.outcome {
            Some(Outcome::Unstored(e)) => Some(Read::Failed(e.clone())),
            // This fill's own bytes are the stored version.
            Some(Outcome::Committed(Committed::Written | Committed::Refreshed)) => {
                Some(Read::FromStore {
                    offset: pos,
                    total: st.end,
                })
            }
            Some(Outcome::Committed(Committed::AlreadyExists)) => {
                Some(Read::Failed(Arc::new(Error::FillAborted {
                    key: self.key.clone(),
                    reason: "the reader fell behind and the store holds another version",
                })))
            }
            Some(Outcome::Failed(e)) => Some(Read::Failed(e.clone())),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use tokio::time::Instant;

    use super::Fill;
    use crate::fill::spool::Spools;
    use crate::store::StagingFile;
    use crate::store::local::Staged;

    /// A spool that is the store's staging file is readable only up to what the readers were
    /// handed: the store may have written the held last chunk already, but no reader outside
    /// the window reads it before the fill pushes it (after the commit).
    #[tokio::test]
    async fn a_staging_spool_never_shows_the_held_last_chunk_before_it_is_pushed() {
        let dir = tempfile::tempdir().unwrap();
        let staged = Arc::new(Staged::default());
        let deadline = Instant::now() + Duration::from_secs(5);
        let fill = Fill::new(
            "k".into(),
            None,
            64 * 1024,
            Duration::from_secs(1),
            false,
            deadline,
        );
        let spools = Arc::new(Spools::new(Some(dir.path().into()), 1 << 20));
        fill.attach_spool(Arc::new(spools.of_staging(StagingFile(staged.clone()))));
        fill.push(Bytes::from_static(b"first")).await.unwrap();
        let (first, last): (&[u8], &[u8]) = (b"first", b"last");
        staged
            .append(
                &dir.path().join("object"),
                &[Bytes::from_static(first), Bytes::from_static(last)],
            )
            .unwrap();
        assert_eq!(staged.written(), 9);
        assert!(fill.catch_up_staging());
        assert_eq!(fill.lock().spooled, 5, "only what the readers were handed");
        fill.push(Bytes::from_static(b"last")).await.unwrap();
        fill.flush_spool().await;
        assert_eq!(fill.lock().spooled, 9, "all of it once pushed");
    }
}
