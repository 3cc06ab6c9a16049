//! [`ResponseFuture`]: waits for the inner response; on a miss, carries out the
//! [`Action`](crate::engine::Action) the engine decided.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures::future::BoxFuture;
use http::header::HeaderValue;
use http::{HeaderMap, Method, Response, Uri};
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::body::ResponseBody;
use crate::engine::{Action, Engine, Join, Miss, Pull};
use crate::fill::reader::Reader;
use crate::fill::registry::Joined;
use crate::fill::shared::{Head, HeadView};
use crate::progress::Outcome;
use crate::serve::range::{self, Decision, Start};
use crate::{Error, respond};

/// What a request leaves behind for a possible pull.
pub(crate) struct Captured {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    /// The request's headers, only when some rule reads them (boxed: the future stays small).
    pub(crate) headers: Option<Box<HeaderMap>>,
    /// The request's `Range` and preconditions (`If-*`), only when it has some (boxed: the
    /// future stays small); the preconditions are evaluated against the origin's
    /// validators as a hit would be.
    pub(crate) conditions: Option<Box<HeaderMap>>,
    pub(crate) engine: Arc<Engine>,
}

pin_project! {
    /// Response future of [`OriginPull`](crate::OriginPull).
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Inner {
            #[pin]
            future: F,
            captured: Option<Captured>,
        },
        Pulling {
            pulling: Box<Pulling<B>>,
        },
        // A hit waiting for its object's revalidation (`Rule::revalidate_before_serve`).
        Revalidating {
            revalidating: Box<Revalidating<B>>,
        },
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn new(future: F, captured: Option<Captured>) -> Self {
        Self {
            state: State::Inner { future, captured },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            let next = match state.as_mut().project() {
                StateProj::Inner { future, captured } => {
                    let response = ready!(future.poll(cx))?;
                    let Some(c) = captured.take() else {
                        return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                    };
                    if c.engine.triggers_on(response.status()) {
                        let status = response.status();
                        match start(c, response, status) {
                            Step::Done(answer) => return Poll::Ready(Ok(answer)),
                            Step::Pull(pulling) => State::Pulling { pulling },
                        }
                    } else {
                        match hit(c, response) {
                            Ok(answer) => return Poll::Ready(Ok(answer)),
                            Err(waiting) => waiting,
                        }
                    }
                }
                StateProj::Pulling { pulling } => return pulling.poll(cx).map(Ok),
                StateProj::Revalidating { revalidating } => {
                    let verdict = ready!(revalidating.verdict.as_mut().poll(cx));
                    let (Some(inner), Some(c)) =
                        (revalidating.inner.take(), revalidating.captured.take())
                    else {
                        panic!("ResponseFuture polled after completion");
                    };
                    match revalidated(c, inner, verdict) {
                        Step::Done(answer) => return Poll::Ready(Ok(answer)),
                        Step::Pull(pulling) => State::Pulling { pulling },
                    }
                }
            };
            state.set(next);
        }
    }
}

/// An inner response that triggers no rule: counted and passed on; a hit on an object a
/// rule refreshes may queue its refresh, or (`revalidate_before_serve`) wait for it first.
#[allow(clippy::result_large_err)]
fn hit<F, B>(c: Captured, response: Response<B>) -> Result<Response<ResponseBody<B>>, State<F, B>> {
    let status = response.status();
    let found = status.is_success() || status == http::StatusCode::NOT_MODIFIED;
    let wait = (c.engine.refresh && found)
        .then(|| crate::refresh::on_hit(&c.engine, &c.method, &c.uri, c.headers.as_deref()))
        .flatten();
    match wait {
        Some(verdict) => Err(State::Revalidating {
            revalidating: Box::new(Revalidating {
                verdict,
                inner: Some(response),
                captured: Some(c),
            }),
        }),
        None => {
            c.engine.counters.request(Outcome::of_inner(status));
            Ok(response.map(ResponseBody::inner))
        }
    }
}

/// A hit waiting for its object's revalidation (boxed: rare, and the future stays small).
struct Revalidating<B> {
    verdict: BoxFuture<'static, crate::refresh::Verdict>,
    inner: Option<Response<B>>,
    captured: Option<Captured>,
}

enum Step<B> {
    Done(Response<ResponseBody<B>>),
    Pull(Box<Pulling<B>>),
}

/// Answer a hit whose object was revalidated before serving: the inner response if it is
/// current; the new version through a fill (which finds it in the store); else `404`/`502`.
fn revalidated<B>(c: Captured, inner: Response<B>, verdict: crate::refresh::Verdict) -> Step<B> {
    use crate::refresh::Verdict;
    let engine = c.engine.clone();
    let made = |response, outcome| Step::Done(finish(&engine, Answer::Made(response, outcome)));
    match verdict {
        Verdict::Current => {
            engine.counters.request(Outcome::of_inner(inner.status()));
            Step::Done(inner.map(ResponseBody::inner))
        }
        // As a miss of the key (with a status its rule pulls on): the fill finds the new
        // version in the store.
        Verdict::Replaced => {
            let key = crate::key::parse(c.uri.path()).unwrap_or_default();
            let status = engine
                .rules
                .iter()
                .find(|r| r.takes(&key, &c.method, c.headers.as_deref()))
                .and_then(|r| r.statuses().first().copied())
                .unwrap_or(http::StatusCode::NOT_FOUND);
            start(c, inner, status)
        }
        Verdict::Gone => made(respond::gone(), Outcome::Missed),
        Verdict::Failed => {
            let e = Error::FillAborted {
                key: c.uri.path().to_owned(),
                reason: "the object could not be revalidated before serving",
            };
            made(
                respond::bad_gateway(c.uri.path(), Some(&e)),
                Outcome::Failed,
            )
        }
    }
}

/// Carry out the engine's decision for a response that triggers a rule.
fn start<B>(c: Captured, mut inner: Response<B>, status: http::StatusCode) -> Step<B> {
    let engine = c.engine.clone();
    // `ServeStore` just looked this key up only if it parsed it from this very path.
    let key = inner
        .extensions_mut()
        .remove::<crate::serve::StoreChecked>()
        .and_then(|checked| checked.key_for(c.uri.path()));
    let store_checked = key.is_some();
    let action = crate::engine::decide(
        &engine,
        Miss {
            uri: &c.uri,
            method: &c.method,
            status,
            headers: c.headers.as_deref(),
            range: c
                .conditions
                .as_deref()
                .and_then(|h| h.get(http::header::RANGE)),
            if_range: c
                .conditions
                .as_deref()
                .and_then(|h| h.get(http::header::IF_RANGE)),
            store_checked,
            key,
        },
    );
    let finish = |answer| Step::Done(finish(&engine, answer));
    match action {
        Action::Untouched => finish(Answer::Inner(inner, Outcome::Missed)),
        Action::CannotRedirect { rule } => {
            let e = Error::config(format!(
                "rule {rule}: its origin has no URL to redirect clients to"
            ));
            tracing::error!(uri = %c.uri, error = %e, "cannot redirect");
            finish(Answer::Made(
                respond::bad_gateway(c.uri.path(), Some(&e)),
                Outcome::Failed,
            ))
        }
        Action::Redirect(redirect) => {
            if let Some(spec) = redirect.background {
                enqueue(&engine, spec, "async fill");
            }
            finish(Answer::Made(
                respond::redirect(redirect.status, redirect.location),
                redirect.outcome,
            ))
        }
        Action::Fill(mut pull) => {
            tracing::debug!(key = %pull.spec.key, rule = %pull.spec.rule, "miss: fill");
            let spec = pull.spec.clone();
            pull.background = None;
            let joined = engine.fills.join_or_start(spec);
            attach(&engine, joined, pull, inner, c.conditions)
        }
        Action::Proxy(mut pull) => {
            tracing::debug!(key = %pull.spec.key, rule = %pull.spec.rule, "miss: proxy");
            if let Some(spec) = pull.background.take() {
                enqueue(&engine, spec, "range miss: background fill");
            }
            let spec = pull.spec.clone();
            attach(
                &engine,
                engine.fills.start_private(spec),
                pull,
                inner,
                c.conditions,
            )
        }
    }
}

/// A request attached to a fill (or waiting for a slot to start one).
/// Queue a background fill, logged at debug level (the key is copied for the log only
/// when that level is on).
fn enqueue(engine: &Engine, spec: crate::fill::FillSpec, what: &'static str) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        let key = spec.key.clone();
        let enqueued = engine.fills.enqueue(spec);
        tracing::debug!(%key, ?enqueued, "{what}");
    } else {
        engine.fills.enqueue(spec);
    }
}

fn attach<B>(
    engine: &Arc<Engine>,
    joined: Joined,
    pull: Pull,
    inner: Response<B>,
    conditions: Option<Box<HeaderMap>>,
) -> Step<B> {
    // Should the fill's response turn out to be its first requester's alone, a request that
    // joined it fetches its own with this.
    let mut own = pull.spec.clone();
    own.store = None;
    own.pinned = false;
    own.report = false;
    let mut pulling = Box::new(Pulling {
        engine: engine.clone(),
        own: Some(own),
        key: pull.spec.key,
        reader: None,
        admit: None,
        head_timer: None,
        inner: Some(inner),
        range: pull.range,
        conditions,
        head_only: pull.head_only,
        outcome: pull.outcome,
        join: pull.join,
        probe: None,
        probed: false,
        speculative: None,
    });
    // Only a range that starts the fill right away speculates: one that queued for a slot
    // would find none free for its speculative fill either.
    let leader = matches!(joined, Joined::Leader(_));
    match pulling.admitted(joined) {
        Some(answer) => Step::Done(finish(engine, answer)),
        None => {
            if leader {
                pulling.speculate();
            }
            Step::Pull(pulling)
        }
    }
}

/// An answer, before it is counted and tagged.
enum Answer<B> {
    /// The inner response, untouched.
    Inner(Response<B>, Outcome),
    /// A response the layer made.
    Made(Response<ResponseBody<B>>, Outcome),
}

/// Count the answer and tag a made one with its outcome: the one place both happen.
fn finish<B>(engine: &Engine, answer: Answer<B>) -> Response<ResponseBody<B>> {
    match answer {
        Answer::Inner(response, outcome) => {
            engine.counters.request(outcome);
            response.map(ResponseBody::inner)
        }
        Answer::Made(mut response, outcome) => {
            engine.counters.request(outcome);
            respond::tag(&mut response, engine.header_name.as_ref(), outcome);
            response
        }
    }
}

/// A request waiting on a fill: for a slot of the bound, then for the fill's head (a cold
/// range under `RangeMiss::JoinFill` may be decided on its speculative fill's head first).
struct Pulling<B> {
    engine: Arc<Engine>,
    /// The spec of a private fill of its own, for when the shared one's response is private.
    own: Option<crate::fill::FillSpec>,
    key: String,
    reader: Option<Reader>,
    /// Waiting for a slot of the fill bound; resolves to the reader (or a refusal).
    admit: Option<BoxFuture<'static, Joined>>,
    /// Bounds the wait for the fill's head (the fill's head deadline).
    head_timer: Option<Pin<Box<Sleep>>>,
    inner: Option<Response<B>>,
    range: Option<HeaderValue>,
    conditions: Option<Box<HeaderMap>>,
    head_only: bool,
    outcome: Outcome,
    /// A range under `RangeMiss::JoinFill`, decided once the head is there.
    join: Option<Join>,
    /// Waiting for the fill's rate to be known before deciding `join`.
    probe: Option<Pin<Box<Sleep>>>,
    /// The probe has run.
    probed: bool,
    /// Under `RangeMiss::JoinFill`, a cold range's private fill started alongside the fill
    /// it leads ([`speculate`](Self::speculate)), so that a range the head shows to be out
    /// of reach needs no second origin round trip. Taken when the range is proxied;
    /// dropped when it is not, which cancels it (its only reader gone, a fill that stores
    /// nothing stops, before or after its head).
    speculative: Option<Reader>,
}

/// The object's length as a ranged origin response gives it: the `Content-Range` of a
/// `206`, or the length of a `200` (the origin sent the whole object).
fn object_length(head: &Head) -> Option<u64> {
    match head.status {
        http::StatusCode::OK => head.content_length,
        http::StatusCode::PARTIAL_CONTENT => {
            let value = head
                .headers
                .get(http::header::CONTENT_RANGE)?
                .to_str()
                .ok()?;
            value.rsplit_once('/')?.1.trim().parse().ok()
        }
        _ => None,
    }
}

/// How long a range that joins a young fill waits for the fill's rate to be measured.
const RATE_PROBE: std::time::Duration = std::time::Duration::from_millis(25);

/// What `JoinFill` decided for a range.
enum JoinCheck {
    Join,
    Proxy(Box<crate::fill::FillSpec>),
    Later,
}

impl<B> Pulling<B> {
    /// Under `RangeMiss::JoinFill`, on the fill's head: whether the range joins the fill,
    /// is proxied (the spec of the private fill that serves it), or waits one probe for the
    /// fill's rate. Before the rate is known, a range that started the fill itself (a cold
    /// range) is proxied at once when it is beyond the first window, by the speculative
    /// fill started with the fill when there is one ([`speculate`](Self::speculate)); one
    /// that found the fill in flight (a parallel downloader's segment) waits
    /// [`RATE_PROBE`] once for the rate. Counted once decided (here, or in
    /// [`proxied_early`](Self::proxied_early) when the speculative fill's head came
    /// first).
    fn join_check(&mut self, head: &Head) -> JoinCheck {
        let Some(join) = self.join.take() else {
            return JoinCheck::Join;
        };
        let (Some(range), Some(len)) = (self.range.as_ref(), head.content_length) else {
            return JoinCheck::Join;
        };
        let Decision::Partial(bytes) = range::decide(range, len) else {
            return JoinCheck::Join;
        };
        if head.status != http::StatusCode::OK {
            return JoinCheck::Join;
        }
        let reach = self
            .reader
            .as_ref()
            .map_or(Some(false), |r| r.reaches(bytes.start, join.max_wait));
        let joined = match reach {
            Some(joined) => joined,
            None if self.outcome != Outcome::Coalesced || self.probed => false,
            None => {
                self.join = Some(join);
                self.probe = Some(Box::pin(tokio::time::sleep(RATE_PROBE)));
                return JoinCheck::Later;
            }
        };
        self.engine.fills.spools.counted_range(joined);
        if joined {
            JoinCheck::Join
        } else {
            JoinCheck::Proxy(Box::new(join.proxy))
        }
    }

    /// Under `RangeMiss::JoinFill`, for a range that started the fill (`Joined::Leader`):
    /// start now the private fill that would serve it if it is proxied, unless it is known
    /// to join.
    ///
    /// Why: [`join_check`](Self::join_check) needs the fill's head (the object's length
    /// places a suffix range, and says whether the range is satisfiable), and it proxies a
    /// leader's range that starts beyond the first window. Asking the origin for that range
    /// only then cost a cold far range two origin round trips in series (BENCHMARKS.md,
    /// M7); started here, the two requests run at once.
    ///
    /// Known to join, so never an extra origin request: a range that starts within the
    /// first window (the fill reaches it at once: [`Reader::reaches`] with no byte in yet),
    /// every range under a `max_wait` of `Duration::MAX` (always join), and a header that is
    /// not one range. A suffix range (`bytes=-n`) starts where the length puts it: it
    /// speculates. The speculative fill takes a slot of the bound: with none free at once,
    /// there is no speculation (nothing is queued) and a proxied range starts its private
    /// fill once decided, as without speculation.
    fn speculate(&mut self) {
        let (Some(join), Some(range), Some(reader)) = (&self.join, &self.range, &self.reader)
        else {
            return;
        };
        let joins = match range::start(range) {
            Some(Start::At(first)) => reader.reaches(first, join.max_wait) == Some(true),
            Some(Start::FromEnd) => join.max_wait == std::time::Duration::MAX,
            None => true,
        };
        if joins {
            return;
        }
        // A `Queued` wait is dropped unpolled: it holds nothing and starts nothing.
        if let Joined::Leader(speculative) = self.engine.fills.start_private(join.proxy.clone()) {
            // The range goes out first, on the connection the pool has idle.
            reader.defer_fetch();
            self.speculative = Some(speculative);
        }
    }

    /// With the fill's head still pending: whether the speculative fill's head, come first,
    /// proxies the range now (then it is counted, and its fill answers). It does when the
    /// object's length it gives puts the range's first byte out of the fill's reach, which
    /// is what [`join_check`](Self::join_check) would decide on a fill head arriving now: a
    /// fill with no head has no bytes, so it reaches the first window only, and a leader
    /// does not wait for a rate. So a range beyond the first window does not wait for the
    /// fill's head at all. Anything else waits for the fill's head, which alone decides a
    /// join: a range within reach, and a head that gives no length (a failure, a `416`).
    fn proxied_early(&mut self, cx: &mut Context<'_>) -> bool {
        let (Some(speculative), Some(join), Some(range), Some(reader)) = (
            self.speculative.as_mut(),
            self.join.as_ref(),
            self.range.as_ref(),
            self.reader.as_ref(),
        ) else {
            return false;
        };
        let Poll::Ready(HeadView::Ready(head)) = speculative.poll_head(cx) else {
            return false;
        };
        let Some(len) = object_length(&head) else {
            return false;
        };
        let Decision::Partial(bytes) = range::decide(range, len) else {
            return false;
        };
        if reader.reaches(bytes.start, join.max_wait) == Some(true) {
            return false;
        }
        // The fill goes on (it is pinned); this range is the speculative fill's.
        self.engine.fills.spools.counted_range(false);
        self.join = None;
        self.reader = self.speculative.take();
        self.head_timer = None;
        self.own = None;
        self.outcome = Outcome::Proxied;
        true
    }

    /// Take what the registry said; `Some` when that already answers the request.
    fn admitted(&mut self, joined: Joined) -> Option<Answer<B>> {
        match joined {
            Joined::Leader(reader) => self.reader = Some(reader),
            Joined::Waiter(reader) => {
                self.reader = Some(reader);
                self.outcome = Outcome::Coalesced;
            }
            Joined::Queued(wait) => self.admit = Some(wait),
            Joined::Full => {
                let after = self.engine.fills.retry_after();
                return Some(Answer::Made(
                    respond::unavailable(after),
                    Outcome::Unavailable,
                ));
            }
            Joined::KnownMissing | Joined::Refused => return Some(self.untouched()),
        }
        None
    }

    fn untouched(&mut self) -> Answer<B> {
        match self.inner.take() {
            Some(response) => Answer::Inner(response, Outcome::Missed),
            None => Answer::Made(respond::bad_gateway(&self.key, None), Outcome::Failed),
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Response<ResponseBody<B>>> {
        let answer = ready!(self.poll_answer(cx));
        Poll::Ready(finish(&self.engine, answer))
    }

    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<Answer<B>> {
        loop {
            if let Some(wait) = self.admit.as_mut() {
                let joined = ready!(wait.as_mut().poll(cx));
                self.admit = None;
                let joined = match joined {
                    // A queued wait resolves to a decision, never to another wait.
                    Joined::Queued(_) => Joined::Full,
                    joined => joined,
                };
                if let Some(answer) = self.admitted(joined) {
                    return Poll::Ready(answer);
                }
            }
            let view = match self.poll_head(cx) {
                Poll::Ready(view) => view,
                Poll::Pending if self.proxied_early(cx) => continue,
                Poll::Pending => return Poll::Pending,
            };
            if let Some(probe) = self.probe.as_mut() {
                ready!(probe.as_mut().poll(cx));
                self.probe = None;
                self.probed = true;
            }
            if let HeadView::Ready(head) = &view {
                let check = self.join_check(head);
                if matches!(check, JoinCheck::Later) {
                    continue;
                }
                if let JoinCheck::Proxy(spec) = check {
                    // The fill goes on (it is pinned); this range is the origin's.
                    self.reader = None;
                    self.head_timer = None;
                    self.own = None;
                    self.outcome = Outcome::Proxied;
                    // The speculative fill was started with this very spec: no second wait
                    // for the origin. One that has failed already is not used; a fresh one
                    // gets the chance it would have had without speculation.
                    let joined = match self.speculative.take().filter(|r| !r.has_failed()) {
                        Some(reader) => Joined::Leader(reader),
                        None => self.engine.fills.start_private(*spec),
                    };
                    if let Some(answer) = self.admitted(joined) {
                        return Poll::Ready(answer);
                    }
                    continue;
                }
            }
            // The range joins, or the fill's head answers by itself (a failure, a `404`):
            // the speculative fill is not needed, and dropping its only reader cancels it.
            self.speculative = None;
            return Poll::Ready(match view {
                // The origin does not have it either: the inner response, untouched.
                HeadView::NotFound => self.untouched(),
                HeadView::Failed(e) => {
                    Answer::Made(respond::bad_gateway(&self.key, Some(&e)), Outcome::Failed)
                }
                // The fill's response is its first requester's alone: fetch our own.
                HeadView::Private => match self.own.take() {
                    Some(spec) => {
                        self.reader = None;
                        self.head_timer = None;
                        self.outcome = Outcome::Proxied;
                        let joined = self.engine.fills.start_private(spec);
                        match self.admitted(joined) {
                            Some(answer) => answer,
                            None => continue,
                        }
                    }
                    None => Answer::Made(respond::bad_gateway(&self.key, None), Outcome::Failed),
                },
                HeadView::Ready(head) => {
                    let decided = self.conditions.as_deref().and_then(|c| {
                        let response = respond::preconditions(&head, c)?;
                        Some(Answer::Made(response, self.outcome))
                    });
                    if let Some(answer) = decided {
                        // The fill goes on: the next request is a hit all the same.
                        return Poll::Ready(answer);
                    }
                    let range = self
                        .range
                        .as_ref()
                        .filter(|_| respond::if_range_holds(&head, self.conditions.as_deref()));
                    let (response, outcome) = respond::pulled(
                        &head,
                        self.reader.take(),
                        range,
                        self.head_only,
                        self.outcome,
                    );
                    Answer::Made(response, outcome)
                }
            });
        }
    }

    /// The fill's head, waited for at most until the fill's head deadline.
    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<HeadView> {
        let Some(reader) = self.reader.as_mut() else {
            return Poll::Ready(HeadView::NotFound);
        };
        let deadline = reader.head_deadline();
        let timer = self
            .head_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match reader.poll_head(cx) {
            Poll::Ready(view) => Poll::Ready(view),
            Poll::Pending => {
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(HeadView::Failed(Arc::new(Error::FillAborted {
                    key: self.key.clone(),
                    reason: "no response head from the origin within the head timeout",
                })))
            }
        }
    }
}
