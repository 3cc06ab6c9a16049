//! The crate's one error type.

use std::time::Duration;

use http::StatusCode;

/// One problem in a configuration, and where it is (`rules[2].origin.hosts[0]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where the problem is, as a path into the document.
    pub at: String,
    /// What is wrong.
    pub message: String,
}

/// A boxed error, as used for bodies and pluggable sources.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything that can go wrong while pulling an object from an origin and writing it back.
///
/// The middleware never returns this to the inner service's caller as an `Err`: a failure
/// before the first byte becomes a `502 Bad Gateway` response, a failure after it ends the
/// response body in an error (never a clean, short body).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is unusable; `what` says which setting and why.
    #[error("invalid configuration: {what}")]
    Config {
        /// The setting and what is wrong with it.
        what: String,
    },

    /// The request to the origin could not be sent or got no response.
    #[error("origin request to {url} failed: {source}")]
    OriginRequest {
        /// The origin URL that was requested (without query string).
        url: String,
        /// What failed.
        #[source]
        source: BoxError,
    },

    /// The origin did not send response headers in time.
    #[error("origin {url} sent no response headers within {timeout:?}")]
    OriginTimeout {
        /// The origin URL that was requested (without query string).
        url: String,
        /// The first-byte timeout that expired.
        timeout: Duration,
    },

    /// The origin redirected somewhere configuration does not allow, too often, or without
    /// a usable `Location`; the target was not contacted.
    #[error("origin {url} answered with {reason}")]
    OriginRedirect {
        /// The origin URL that redirected (without query string).
        url: String,
        /// What was wrong with the redirect.
        reason: String,
    },

    /// The origin sent no body bytes for longer than the idle timeout.
    #[error("origin {url} body stalled for {timeout:?} after {received} bytes")]
    OriginStalled {
        /// The origin URL that was requested (without query string).
        url: String,
        /// The idle timeout that expired.
        timeout: Duration,
        /// Bytes received before the stall.
        received: u64,
    },

    /// The origin's body broke off (connection reset, truncated chunked encoding, ...).
    #[error("origin {url} body failed after {received} bytes: {source}")]
    OriginBody {
        /// The origin URL that was requested (without query string).
        url: String,
        /// Bytes received before the failure.
        received: u64,
        /// What failed.
        #[source]
        source: BoxError,
    },

    /// The origin answered with a status that cannot be stored.
    #[error("origin answered {status} for key {key}")]
    OriginStatus {
        /// The store key being pulled.
        key: String,
        /// The origin's status.
        status: StatusCode,
    },

    /// A configuration has problems; each says where it is.
    #[error("invalid configuration:\n{}", problems.iter().map(|p| format!("  {}: {}", p.at, p.message)).collect::<Vec<_>>().join("\n"))]
    InvalidConfig {
        /// Every problem found.
        problems: Vec<Problem>,
    },

    /// The origin's body length differs from its `Content-Length`.
    #[error("origin body for key {key} has {received} bytes, Content-Length announced {expected}")]
    LengthMismatch {
        /// The store key being pulled.
        key: String,
        /// The announced length.
        expected: u64,
        /// The bytes received (a longer body stops counting at the first excess chunk).
        received: u64,
    },

    /// The object's bytes do not match a checksum the origin sent.
    #[error("{algorithm} of key {key} is {actual}, the origin announced {expected}")]
    ChecksumMismatch {
        /// The store key being pulled.
        key: String,
        /// Which checksum (`Content-MD5`, `x-amz-checksum-sha256`, ...).
        algorithm: String,
        /// What the origin announced.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },

    /// The origin sent a checksum header that cannot be read.
    #[error("the origin's {algorithm} for key {key} is not a valid digest: {value:?}")]
    BadChecksum {
        /// The store key being pulled.
        key: String,
        /// Which checksum.
        algorithm: String,
        /// The header's value.
        value: String,
    },

    /// The object is larger than the rule allows and the rule refuses such objects.
    #[error("key {key} is larger than the {limit} bytes its rule allows")]
    TooLarge {
        /// The store key being pulled.
        key: String,
        /// The rule's limit.
        limit: u64,
    },

    /// Reading from the store failed (looking for an object, reading its bytes, reading a
    /// tombstone).
    #[error("store read for key {key} failed: {source}")]
    StoreRead {
        /// The store key being read.
        key: String,
        /// What the store reported.
        #[source]
        source: BoxError,
    },

    /// Writing to the store failed (an object, or a tombstone); an object's upload was
    /// aborted and nothing is visible.
    #[error("store write for key {key} failed: {source}")]
    StoreWrite {
        /// The store key being written.
        key: String,
        /// What the store reported.
        #[source]
        source: BoxError,
    },

    /// The store cannot hold an object at this key (on a local disk: a key that is a
    /// directory of other keys, or under a key that is a file; a name the store reserves).
    /// The fill streams the object to its readers without storing it.
    #[error("the store cannot hold key {key}: {reason}")]
    Unstorable {
        /// The store key.
        key: String,
        /// Why not.
        reason: String,
    },

    /// The fill stopped before it finished (cancelled by policy or shutdown, or a reader was
    /// dropped for not reading).
    #[error("fill of key {key} stopped before it finished: {reason}")]
    FillAborted {
        /// The store key being pulled.
        key: String,
        /// Why it stopped.
        reason: &'static str,
    },

    /// A reader could not read the fill's spool (its local temporary file).
    #[error("reading the spool of key {key} failed: {source}")]
    SpoolRead {
        /// The store key being pulled.
        key: String,
        /// The file system's error.
        #[source]
        source: std::io::Error,
    },

    /// User code or ours panicked while filling the key (an [`Origin`](crate::Origin), its
    /// body stream, a [`Store`](crate::Store)), or the fill's task was dropped before it
    /// ended (aborted, runtime shut down). The fill was settled: every reader got this
    /// error, nothing partial was stored, its slot was released.
    #[error("fill of key {key} died: {message}")]
    FillDied {
        /// The store key being pulled.
        key: String,
        /// The panic's message, or how the task went away.
        message: String,
    },

    /// The fill got no head from the origin (store re-check, every origin attempt, the
    /// start of the store write) within the head timeout.
    #[error("fill of key {key} got no response head within {timeout:?}")]
    HeadTimeout {
        /// The store key being pulled.
        key: String,
        /// The head timeout that expired.
        timeout: Duration,
    },

    /// One step of a fill after its head (the origin's next body chunk, a store write, the
    /// commit) took longer than the stall timeout.
    #[error("fill of key {key} stalled for {timeout:?} waiting for {step}")]
    FillStalled {
        /// The store key being pulled.
        key: String,
        /// What it waited for.
        step: &'static str,
        /// The stall timeout that expired.
        timeout: Duration,
    },

    /// The error of the fill a response was reading, shared by every reader of that fill
    /// (a body error of a pulled response downcasts to `Error` and is this variant); see
    /// [`Error::root`].
    #[error(transparent)]
    Shared(std::sync::Arc<Error>),

    /// A webhook delivery failed.
    #[error("webhook delivery to {url} failed: {source}")]
    Webhook {
        /// The webhook URL.
        url: String,
        /// What failed.
        #[source]
        source: BoxError,
    },
}

impl Error {
    pub(crate) fn config(what: impl Into<String>) -> Self {
        Self::Config { what: what.into() }
    }

    pub(crate) fn store_read(key: &str, source: impl Into<BoxError>) -> Self {
        Self::StoreRead {
            key: key.to_owned(),
            source: source.into(),
        }
    }

    pub(crate) fn store_write(key: &str, source: impl Into<BoxError>) -> Self {
        Self::StoreWrite {
            key: key.to_owned(),
            source: source.into(),
        }
    }

    /// The error itself, or for [`Error::Shared`] the fill's error it carries.
    ///
    /// ```
    /// # use tower_origin_pull::Error;
    /// # fn check(body_error: &(dyn std::error::Error + 'static)) {
    /// if let Some(e) = body_error.downcast_ref::<Error>() {
    ///     if let Error::LengthMismatch { .. } = e.root() { /* the origin's body was short */ }
    /// }
    /// # }
    /// ```
    pub fn root(&self) -> &Error {
        match self {
            Self::Shared(inner) => inner.root(),
            other => other,
        }
    }
}
