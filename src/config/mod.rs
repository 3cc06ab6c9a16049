//! The whole layer as data: a serde model read from TOML or JSON.
//!
//! ```
//! use tower_origin_pull::config::Config;
//! use tower_origin_pull::OriginPullLayer;
//!
//! # fn main() -> Result<(), tower_origin_pull::Error> {
//! let config = Config::from_toml(r#"
//!     coalesce_window = "8MiB"
//!     remember_not_found = "30s"
//!
//!     [store]
//!     url = "memory://"
//!
//!     [[rules]]
//!     name = "images"
//!     prefix = "img/"
//!     mode = "sync"
//!     rewrite = { strip_prefix = "img/" }
//!     origin = { hosts = ["http://127.0.0.1:9000/assets"], idle_timeout = "10s" }
//! "#)?;
//! let layer = OriginPullLayer::from_config(&config)?;
//! # Ok(()) }
//! ```
//!
//! Durations are written as `"250ms"`, `"30s"`, `"5m"`, `"1d"`; sizes as `"64MiB"`, `"1GB"`
//! or a number of bytes. Unknown fields are errors. [`Config::validate`] (and `from_config`)
//! report every problem at once, each with where it is (`rules[2].origin.hosts[0]: not a
//! URL`); a document that does not parse (bad syntax, a wrong type, an unknown field) is
//! reported at its first problem, with its location.
//!
//! ## Validation, building, starting
//!
//! [`Config::validate`] only checks: it opens no store, creates no directory, builds no
//! HTTP client or TLS setup and starts nothing, so it can run anywhere (a CI check of a
//! config file). [`OriginPullLayer::from_config`](crate::OriginPullLayer::from_config)
//! validates first, and only a valid configuration is then built: the store opened (a
//! `file://` directory created if missing), the origins' clients built, and the webhook of
//! `[events]` started on the current Tokio runtime (without one, a configuration with a
//! webhook is refused at `events.webhook`). [`Config::build`] does the same and hands back
//! the webhook's handle.
//!
//! ## Limits
//!
//! No value the configuration accepts makes the layer panic: every duration works up to
//! the largest humantime can write (`"18446744073709551615s"`; longer than about 30 years
//! reads as "far future"), every size up to the platform's `usize` (on 64-bit:
//! `18446744073709551615` bytes), and a count or size is refused with its location when
//! it is outside these limits ([`limits`] holds the constants):
//!
//! | field | accepted |
//! |---|---|
//! | `max_fills` | 1 ..= 1,000,000 |
//! | `background_concurrency` | 1 ..= `max_fills` (64 when `max_fills` is not given) |
//! | `background_queue` | 1 ..= 1,000,000 |
//! | `coalesce_window` | 0 ..= `usize::MAX` bytes |
//! | `spool_max_bytes` | any size (`0`: no spools) |
//! | `rules[].on_range_max_wait` | any duration, with `on_range = "join_fill"` only |
//! | `slow_reader_grace`, `remember_not_found`, `fill_queue_timeout`, `retry_after` | any duration (`"0s"`: none) |
//! | `head_timeout`, `stall_timeout` | any duration but `"0s"` |
//! | `store.multipart_threshold`, `store.part_size` | 1 ..= `usize::MAX` bytes; on `s3://` at most 5 GiB, and a part size of at least 5 MiB |
//! | `store.max_concurrent_parts` | 1 ..= 10,000 |
//! | `store.staging_max_age` | `"off"`, or at least `"1m"` |
//! | `store.options`, `origin.bucket_options` durations (`timeout`, ...) | at most `"365d"` |
//! | `rules[].max_object_size` | any size |
//! | `origin.weights[]` | any `u32` (0 reads as 1) |
//! | `origin.connect_timeout`, `first_byte_timeout`, `idle_timeout`, `total_timeout` | any duration but `"0s"` |
//! | `origin.follow_redirects` | 0 ..= 100 |
//! | `origin.retries` | 0 ..= 100 |
//! | `origin.breaker_failures` | any `u32` (0 reads as 1) |
//! | `origin.breaker_cooldown` | any duration |
//! | `events.max_in_flight` | 1 ..= 10,000 |
//! | `events.attempts` | 1 ..= 100 |
//! | `server.header_read_timeout`, `idle_timeout`, `send_timeout` | any duration but `"0s"` |
//! | `server.shutdown_grace` | any duration |
//! | `server.max_connections` | 1 ..= 1,000,000 |
//! | `server.backlog` | 1 ..= 65,535 |
//! | `server.max_header_size` | `"8KiB"` ..= `"16MiB"` |
//! | `server.max_headers` | 1 ..= 10,000 |
//! | `server.http2_max_concurrent_streams` | 1 ..= 100,000 |
//! | `server.admin_token` | at least 16 visible ASCII characters |
//!
//! ## Origins: names, private CAs, private buckets
//!
//! An HTTP origin's `host_header`, `tls_server_name` and `ca_file` (see [`OriginConfig`])
//! give an origin reached by IP address its domain's `Host`, certificate name and private
//! CA; the CA file is read and checked at validation. A `bucket` origin signs its requests
//! with the credentials of `bucket_options` or object_store's `AWS_*` environment; an
//! option written `<option>_env = "VAR"` takes its value from the environment variable
//! `VAR` (checked at validation: set, not empty, not also given inline), which keeps secrets
//! out of the file. `public_url` is where `async` and `redirect` rules send clients for a
//! bucket origin's key; such a rule without it is refused at validation.
//!
//! ```
//! use tower_origin_pull::config::Config;
//!
//! let config = Config::from_toml(r#"
//!     store = { url = "memory://" }
//!     [[rules]]
//!     mode = "redirect"
//!     origin = { bucket = "memory://" }
//! "#).unwrap();
//! let problems = config.validate();
//! assert_eq!(problems[0].at, "rules[0].origin.public_url");
//! ```
//!
//! ## Migrating: `fill_overflow` is gone
//!
//! `fill_overflow` is gone: [`max_fills`](Config::max_fills) now bounds fills of every kind,
//! so a miss past it can no longer be proxied (that would be one more fill). It waits up to
//! `fill_queue_timeout` for a slot, then gets `503` with `Retry-After` (`retry_after`). A
//! configuration that still sets `fill_overflow` is refused with this explanation: delete
//! the line (for `fill_overflow = "unavailable"` with `fill_queue_timeout = "0s"` you get
//! the old behaviour).

mod bucket;
mod build;
pub mod import;

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::ObjectStore;
use serde::{Deserialize, Serialize};

use crate::Error;
pub use crate::error::Problem;
use crate::webhook::WebhookHandle;

/// The limits validation enforces on counts and sizes (see the [module docs](self)).
pub mod limits {
    use std::time::Duration;

    /// The largest `max_fills`.
    pub const MAX_FILLS: usize = 1_000_000;
    /// The largest `background_queue`.
    pub const BACKGROUND_QUEUE: usize = 1_000_000;
    /// The largest `store.max_concurrent_parts` (S3's parts per upload).
    pub const CONCURRENT_PARTS: usize = 10_000;
    /// The largest `store.part_size` and `store.multipart_threshold` of an `s3://` store
    /// (S3's largest part and single `PUT`).
    pub const S3_MAX_PART: u64 = 5 * 1024 * 1024 * 1024;
    /// The smallest `store.part_size` of an `s3://` store (S3's smallest part but the last).
    pub const S3_MIN_PART: u64 = 5 * 1024 * 1024;
    /// The shortest `store.staging_max_age` (`"off"` turns the sweep off).
    pub const STAGING_MIN_AGE: Duration = Duration::from_secs(60);
    /// The longest duration among `store.options` and `origin.bucket_options`.
    pub const CLIENT_OPTION_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);
    /// The largest `origin.follow_redirects`.
    pub const REDIRECTS: usize = 100;
    /// The largest `origin.retries`.
    pub const RETRIES: usize = 100;
    /// The largest `events.max_in_flight`.
    pub const WEBHOOK_IN_FLIGHT: usize = 10_000;
    /// The largest `events.attempts`.
    pub const WEBHOOK_ATTEMPTS: usize = 100;
}

/// The whole configuration of an [`OriginPullLayer`](crate::OriginPullLayer).
///
/// Every field but `store` is optional; the [module docs](self) list each number's limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Where pulled objects are written.
    pub store: StoreConfig,
    /// The rules, tried in order; at least one.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// The response header that says what happened (default `x-origin-pull`; `""` for none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_name: Option<String>,
    /// Bytes of a fill kept in memory for the readers that join it late (default `"4MiB"`;
    /// `0` up to the platform's `usize`). See
    /// [`OriginPullBuilder::coalesce_window`](crate::OriginPullBuilder::coalesce_window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coalesce_window: Option<String>,
    /// Where fills spool their bytes for readers outside the window (default: the system
    /// temp dir). See [`OriginPullBuilder::spool_dir`](crate::OriginPullBuilder::spool_dir).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool_dir: Option<String>,
    /// The bound on every spool's bytes together (default `"1GiB"`; `0`: no spools). See
    /// [`OriginPullBuilder::spool_max_bytes`](crate::OriginPullBuilder::spool_max_bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool_max_bytes: Option<String>,
    /// How long a reader that keeps the window full may hold its fill up before it is
    /// demoted (default `"250ms"`; any duration). See
    /// [`OriginPullBuilder::slow_reader_grace`](crate::OriginPullBuilder::slow_reader_grace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_reader_grace: Option<String>,
    /// How long an origin's `404` is remembered (default: not at all; `"0s"`: not at all;
    /// any duration). See
    /// [`OriginPullBuilder::remember_not_found`](crate::OriginPullBuilder::remember_not_found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remember_not_found: Option<String>,
    /// Background fills (async mode, cold `Range` background fills) that may wait to start
    /// (default 1024; 1 ..= 1,000,000). See
    /// [`OriginPullBuilder::background_queue`](crate::OriginPullBuilder::background_queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background_queue: Option<usize>,
    /// The share of `max_fills` that background and warm-up fills may hold at once
    /// (default 4; 1 ..= `max_fills`, which is 64 when not given). See
    /// [`OriginPullBuilder::background_concurrency`](crate::OriginPullBuilder::background_concurrency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background_concurrency: Option<usize>,
    /// The bound on fills of every kind in flight at once (default
    /// [`DEFAULT_MAX_FILLS`](crate::DEFAULT_MAX_FILLS) = 64; 1 ..= 1,000,000). See
    /// [`OriginPullBuilder::max_fills`](crate::OriginPullBuilder::max_fills).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fills: Option<usize>,
    /// How long a miss that would start a fill waits for a slot of `max_fills` before it is
    /// answered `503` (default `"1s"`; `"0s"`: no wait; any duration). See
    /// [`OriginPullBuilder::fill_queue_timeout`](crate::OriginPullBuilder::fill_queue_timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill_queue_timeout: Option<String>,
    /// The `Retry-After` of that `503` (default `"1s"`; sent in whole seconds, at least 1;
    /// any duration). See [`OriginPullBuilder::retry_after`](crate::OriginPullBuilder::retry_after).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<String>,
    /// How long a fill may take to get the origin's head, and its readers wait for it
    /// (default: the rule's origin's attempt budget plus 10 s; any duration but `"0s"`). See
    /// [`OriginPullBuilder::head_timeout`](crate::OriginPullBuilder::head_timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_timeout: Option<String>,
    /// How long one step of a fill after the head (a body chunk, a store write, the commit)
    /// may take (default `"60s"`; any duration but `"0s"`). See
    /// [`OriginPullBuilder::stall_timeout`](crate::OriginPullBuilder::stall_timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_timeout: Option<String>,
    /// Removed (see the CHANGELOG), kept only so that a file setting it gets a clear error rather than
    /// "unknown field": any value is refused with a migration note (see the
    /// [module docs](self#migrating-from-01-fill_overflow)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill_overflow: Option<String>,
    /// Where fill events go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<EventsConfig>,
    /// The server that serves the layer (the mirror example's), and its admin token. The
    /// layer does not read it; it is validated with the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerConfig>,
}

/// The store, by URL: `file:///var/data`, `memory://`, or (feature `aws`)
/// `s3://bucket/prefix` with object_store's `AWS_*` environment and [`StoreConfig::options`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StoreConfig {
    /// The store's URL. A `file://` directory is created when the layer is built (never by
    /// validation).
    pub url: String,
    /// Keys are stored below this prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Objects of at least this size are written as multipart uploads (default `"8MiB"`;
    /// 1 byte ..= the platform's `usize`, at most 5 GiB on `s3://`). Smaller objects are
    /// buffered whole in memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipart_threshold: Option<String>,
    /// Multipart part size (default `"8MiB"`; 1 byte ..= the platform's `usize`, 5 MiB ..=
    /// 5 GiB on `s3://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_size: Option<String>,
    /// Parts uploading at once (default 2; 1 ..= 10,000). A write buffers at most
    /// `part_size` × (1 + this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_parts: Option<usize>,
    /// Keep tombstones, so deleted keys are not pulled back (default `false`; see
    /// [`BucketStore::with_tombstones`](crate::BucketStore::with_tombstones)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tombstones: Option<bool>,
    /// For a `file://` store: staging files (`<key>#<n>`) last written longer ago than this
    /// are abandoned writes of a process that died, and a sweep of
    /// [`StoreConfig::staging_sweep`] (run by the mirror example at start) removes them (default `"1d"`; `"off"`, or at least
    /// `"1m"`). See [`sweep`](crate::sweep) for why age keeps live writes safe. Ignored for
    /// other stores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging_max_age: Option<String>,
    /// object_store options for the backend (`region`, `endpoint`, `allow_http`, ...).
    /// Durations among them (`timeout`, `connect_timeout`, ...) may be at most `"365d"`.
    /// As in [`OriginConfig::bucket_options`], `<option>_env = "VAR"` takes the option's
    /// value from the environment variable `VAR`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// Where fill events are delivered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EventsConfig {
    /// POST every event as JSON to this URL (see [`Webhook`](crate::Webhook)). The layer
    /// built from the configuration starts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// Deliveries in flight at once (default 8; 1 ..= 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<usize>,
    /// Attempts per event (default 3; 1 ..= 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<usize>,
}

/// `[server]`: the settings of [`Server`](crate::server::Server) (feature `server`) and the
/// admin token of the `/_origin_pull/*` endpoints; the [`server`](crate::server) module says
/// what each bounds and why its default. Apply it with `Server::with_config` and
/// [`AdminToken::from_config`](crate::server::AdminToken::from_config).
///
/// `Debug` does not show the admin token.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The bearer token every `/_origin_pull/*` endpoint then requires (at least 16 visible
    /// ASCII characters). Without it (and without `admin_token_env`) the status endpoint is
    /// open and there is no endpoint that changes anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    /// The environment variable that holds the admin token, read when the server starts
    /// (keeps the token out of the file). Not with `admin_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token_env: Option<String>,
    /// How long a connection may take to send a complete request head (default `"10s"`;
    /// any duration but `"0s"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_read_timeout: Option<String>,
    /// How long an idle kept-alive connection stays open (default `"60s"`; any duration but
    /// `"0s"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    /// How long a connection whose client reads nothing of its response stays open
    /// (default `"60s"`; any duration but `"0s"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_timeout: Option<String>,
    /// Connections served at once; more wait in the listen queue (default 1024;
    /// 1 ..= 1,000,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// The listen queue's length (default 1024; 1 ..= 65,535).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<u32>,
    /// The largest request head (default `"64KiB"`; `"8KiB"` ..= `"16MiB"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_header_size: Option<String>,
    /// The most header fields in an HTTP/1 request (default 100; 1 ..= 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_headers: Option<usize>,
    /// Requests in flight at once on one HTTP/2 connection (default 200; 1 ..= 100,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_max_concurrent_streams: Option<u32>,
    /// How long connections may take to finish after a shutdown signal (default `"10s"`;
    /// any duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_grace: Option<String>,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("admin_token_env", &self.admin_token_env)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("send_timeout", &self.send_timeout)
            .field("max_connections", &self.max_connections)
            .field("backlog", &self.backlog)
            .field("max_header_size", &self.max_header_size)
            .field("max_headers", &self.max_headers)
            .field(
                "http2_max_concurrent_streams",
                &self.http2_max_concurrent_streams,
            )
            .field("shutdown_grace", &self.shutdown_grace)
            .finish()
    }
}

/// One rule; see [`Rule`](crate::Rule) for what each field means.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RuleConfig {
    /// The rule's name in logs, errors and events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `sync` (default), `async`, `redirect` or `proxy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Where objects come from.
    pub origin: OriginConfig,
    /// Key prefix condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Key suffix condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// Key glob condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glob: Option<String>,
    /// Request header conditions, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when_headers: Vec<HeaderConditionConfig>,
    /// Only these request hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_hosts: Vec<String>,
    /// Never these request hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_hosts: Vec<String>,
    /// Inner statuses that trigger (default `[404]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statuses: Option<Vec<u16>>,
    /// Key → origin path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<RewriteConfig>,
    /// `drop` (default) or `forward`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Forward only these query parameters (implies `query = "forward"` for them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<String>,
    /// Which request headers go to the origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_headers: Option<HeaderPolicyConfig>,
    /// Query parameters put in the key: each combination of values is a variant of the key,
    /// sent to the origin and stored on its own (see [`Rule::key_query`](crate::Rule::key_query)).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_query: Vec<String>,
    /// Request headers put in the key (see [`Rule::key_headers`](crate::Rule::key_headers)).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_headers: Vec<String>,
    /// At most this many variants of one key are stored (default 32; 1 ..= 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_variants: Option<usize>,
    /// Store and share responses although the rule forwards the query or client headers,
    /// which are not part of the key (default `false`; a rule that forwards them without
    /// this is refused: see [`Rule::unkeyed_forwarding`](crate::Rule::unkeyed_forwarding)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unkeyed_forwarding: Option<bool>,
    /// Store and share private responses and responses to requests that forward the
    /// client's credentials (default `false`; see
    /// [`Rule::store_private`](crate::Rule::store_private) for the risk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_private: Option<bool>,
    /// Store objects a file server would type differently where the store cannot keep
    /// their type (default `false`; see [`Rule::store_mistyped`](crate::Rule::store_mistyped)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_mistyped: Option<bool>,
    /// Origin response headers kept with the object and sent on every hit: `"all"` (every
    /// end-to-end header but those never kept) or a list of names (see
    /// [`KeepHeaders`](crate::KeepHeaders)). Default: none beyond the representation's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_response_headers: Option<KeepHeadersConfig>,
    /// Refresh stored objects older than this (`"10m"`; default never; see
    /// [`Rule::revalidate_after`](crate::Rule::revalidate_after)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revalidate_after: Option<String>,
    /// Revalidate a due object before answering its hit (default `false`; needs
    /// `revalidate_after`; see [`Rule::revalidate_before_serve`](crate::Rule::revalidate_before_serve)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revalidate_before_serve: Option<bool>,
    /// `keep` (default) or `delete`: what a refresh does when the origin answers `404`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_origin_gone: Option<String>,
    /// `ignore` (default), `origin_head` or `fill`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_head: Option<String>,
    /// `join_fill` (default), `serve_range_and_fill`, `fill_then_serve` or `proxy_range`
    /// ([`RangeMiss`](crate::RangeMiss)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_range: Option<String>,
    /// For `on_range = "join_fill"`: its `max_wait` (default `"2s"`,
    /// [`RangeMiss::DEFAULT_MAX_WAIT`](crate::RangeMiss::DEFAULT_MAX_WAIT); any duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_range_max_wait: Option<String>,
    /// `finish` (default) or `cancel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_client_disconnect: Option<String>,
    /// 301, 302 (default) or 307, for `async` and `redirect`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_status: Option<u16>,
    /// `content-md5` (default), `etag-md5`, `sha256:<header>`; `[]` for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksums: Option<Vec<String>>,
    /// Larger objects are not stored (any size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_object_size: Option<String>,
    /// `proxy` (default) or `refuse`, for objects over `max_object_size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oversize: Option<String>,
    /// Origin statuses answered as they are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pass_through: Vec<u16>,
}

/// A request header condition: exactly one of `equals`, `starts_with`, `ends_with`, `present`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HeaderConditionConfig {
    /// The header's name.
    pub name: String,
    /// The value equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    /// The value starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_with: Option<String>,
    /// The value ends with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_with: Option<String>,
    /// The header is present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
}

/// Key → origin path: the steps apply in this order: `replace_prefix` (or `strip_prefix`),
/// `replace_suffix`, `add_suffix`, `template`; `fixed` replaces everything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RewriteConfig {
    /// Remove this prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strip_prefix: Option<String>,
    /// Replace `from` at the start with `to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_prefix: Option<ReplacePrefix>,
    /// Replace `from` at the end with `to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_suffix: Option<ReplacePrefix>,
    /// Append this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_suffix: Option<String>,
    /// `${key}` is replaced with the key so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Every key maps to this path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
}

/// A prefix (or suffix) replacement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ReplacePrefix {
    /// The prefix to replace.
    pub from: String,
    /// What replaces it.
    pub to: String,
}

/// Which request headers go to the origin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HeaderPolicyConfig {
    /// `none` (default) or `all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<String>,
    /// Pass only these (instead of `pass`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pass_only: Vec<String>,
    /// With `pass = "all"`: not these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
    /// Always send these.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
}

/// `keep_response_headers`: `"all"` or a list of header names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum KeepHeadersConfig {
    /// `"all"`.
    All(String),
    /// These names.
    Names(Vec<String>),
}

/// An origin: HTTP hosts (primaries, weights, standbys) or a bucket.
///
/// The timeouts apply to every host. Problems with them are reported once, at
/// `rules[i].origin.<field>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct OriginConfig {
    /// Primary hosts, as base URLs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Relative weights of `hosts` (default all 1; one per host; any `u32`, 0 reads as 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<u32>,
    /// Standby hosts, asked when every primary failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standby: Vec<String>,
    /// A bucket URL (`file:///`, `memory://`, `s3://`) instead of hosts. A `file://` bucket
    /// must exist when the layer is built. An `s3://` bucket's requests are signed (SigV4)
    /// with the credentials of `bucket_options`, else of object_store's `AWS_*` environment
    /// variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// object_store options for `bucket` (`endpoint`, `region`, `access_key_id`, ...).
    /// Durations among them may be at most `"365d"`; `timeout` is also the bucket's attempt
    /// budget (default 60 s).
    ///
    /// An option named with `_env` after it takes its value from the environment variable
    /// it names: `secret_access_key_env = "ORIGIN_SECRET"` sets `secret_access_key` to
    /// `$ORIGIN_SECRET`. This is the recommended way to give credentials (secrets stay out
    /// of the file, and the origin's can differ from the store's `AWS_*`); inline values
    /// (`secret_access_key = "..."`) are accepted too. Validation refuses a variable that is
    /// not set or empty, and an option given both ways, naming the option (never printing a
    /// value).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bucket_options: BTreeMap<String, String>,
    /// For a bucket origin: the URL clients are redirected to for a key (`public_url` +
    /// the key), which `async` and `redirect` rules need (validation refuses such a rule
    /// whose bucket origin has none). An `http` or `https` URL; it should point at the
    /// bucket's prefix. See [`BucketOrigin::with_public_url`](crate::BucketOrigin::with_public_url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// `http`, `https` or `same` (as the request); default: each URL's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Connect timeout (default `"5s"`; any duration but `"0s"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<String>,
    /// Time to the response head, connecting included (default `"30s"`; any duration but
    /// `"0s"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte_timeout: Option<String>,
    /// Longest pause in the body (default `"30s"`; any duration but `"0s"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    /// Cap on the whole fetch, head and body (default none; any duration but `"0s"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_timeout: Option<String>,
    /// Redirect hops followed (default 3; 0 ..= 100; 0 makes a redirect a failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_redirects: Option<usize>,
    /// Other authorities redirects may lead to: `host:port`, or `host` for the default port
    /// of the redirect's scheme (80 for `http`, 443 for `https`). They get no forwarded
    /// credentials nor configured headers. `https` → `http` and a `Location` with
    /// credentials are never followed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_redirect_to: Vec<String>,
    /// Authorities (`host:port`, or `host` as in `allow_redirect_to`) redirects may lead to
    /// with every request header, forwarded credentials and configured headers included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_redirect_credentials: Vec<String>,
    /// Statuses that fail over besides 5xx.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fail_over_on: Vec<u16>,
    /// Consecutive failures that open a host's breaker (default 3; any `u32`, 0 reads as 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker_failures: Option<u32>,
    /// How long an open breaker skips the host (default `"30s"`; any duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker_cooldown: Option<String>,
    /// Retries of the whole walk before the first byte (default 0; 0 ..= 100), 100 ms
    /// apart and doubling up to 60 s, with jitter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<usize>,
    /// The `Host` header sent to every host (`host` or `host:port`; default: each URL's
    /// own). See [`HttpOriginBuilder::host_header`](crate::HttpOriginBuilder::host_header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_header: Option<String>,
    /// The name every `https` host's certificate is checked against, and sent as SNI (a
    /// DNS name or an IP address; default: each URL's host). See
    /// [`HttpOriginBuilder::tls_server_name`](crate::HttpOriginBuilder::tls_server_name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    /// A PEM file of root certificates trusted beside the webpki roots, for a private CA (a
    /// path relative to the working directory, or absolute; read at validation: unreadable,
    /// not PEM or no usable certificate is an error). See
    /// [`HttpOriginBuilder::ca_file`](crate::HttpOriginBuilder::ca_file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

impl Config {
    /// Parse a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        toml::from_str(text).map_err(|e| Error::config(format!("TOML: {}", e.to_string().trim())))
    }

    /// Parse a JSON document.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        serde_json::from_str(text).map_err(|e| Error::config(format!("JSON: {e}")))
    }

    /// Read a file: JSON if its name ends in `.json`, TOML otherwise.
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config(format!("{}: {e}", path.display())))?;
        let parsed = if path.extension().is_some_and(|e| e == "json") {
            Self::from_json(&text)
        } else {
            Self::from_toml(&text)
        };
        parsed.map_err(|e| Error::config(format!("{}: {e}", path.display())))
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> Result<String, Error> {
        toml::to_string(self).map_err(|e| Error::config(format!("TOML: {e}")))
    }

    /// Every problem in the configuration, each with its location; empty when it is usable.
    ///
    /// Only checks: no store is opened, no directory created, no HTTP client or TLS setup
    /// built, nothing started.
    pub fn validate(&self) -> Vec<Problem> {
        build::validate(self, false)
    }

    /// Validate, then build the layer and start the webhook of `[events]` on the current
    /// Tokio runtime, handing back its handle (to read its counters; dropping the handle
    /// stops the webhook, [`WebhookHandle::detach`] lets it run).
    ///
    /// `store`: write into this store (opened with [`StoreConfig::open`], say, to share it
    /// with the service that reads it) instead of opening `store.url`; the other store
    /// settings still apply. Without it, `store.url` is opened (a `file://` directory is
    /// created if missing).
    ///
    /// A configuration with a webhook is refused (at `events.webhook`) outside a Tokio
    /// runtime, rather than built with its events silently going nowhere.
    pub fn build(&self, store: Option<Arc<dyn ObjectStore>>) -> Result<Built, Error> {
        let invalid = |problems| Error::InvalidConfig { problems };
        let problems = build::validate(self, store.is_some());
        if !problems.is_empty() {
            return Err(invalid(problems));
        }
        let wants_webhook = self.events.as_ref().is_some_and(|e| e.webhook.is_some());
        let runtime = tokio::runtime::Handle::try_current();
        if wants_webhook && runtime.is_err() {
            return Err(invalid(vec![Problem {
                at: "events.webhook".to_owned(),
                message: "a webhook runs on a Tokio runtime, and there is none here: build \
                          the layer inside one (or drop `events.webhook` and spawn \
                          `Config::webhook()` yourself)"
                    .to_owned(),
            }]));
        }
        let (layer, webhook) = build::build(self, store).map_err(invalid)?;
        let webhook = match (webhook, runtime) {
            (Some(webhook), Ok(runtime)) => {
                let _inside = runtime.enter();
                Some(webhook.spawn(layer.handle().subscribe()))
            }
            _ => None,
        };
        Ok(Built { layer, webhook })
    }
}

/// What [`Config::build`] made: the layer, and the webhook it started.
#[derive(Debug)]
#[non_exhaustive]
pub struct Built {
    /// The layer.
    pub layer: crate::OriginPullLayer,
    /// The running webhook of `[events]`, if the configuration names one. Dropping it stops
    /// the deliveries.
    pub webhook: Option<WebhookHandle>,
}

impl crate::OriginPullLayer {
    /// Build the layer a [`Config`] describes, or report every problem in it at once.
    ///
    /// The configuration is validated first ([`Config::validate`]); only a valid one opens
    /// its store (creating a `file://` directory if missing) and builds its clients. The
    /// webhook of `[events]`, if any, is started on the current Tokio runtime and runs until
    /// the layer and every service made from it are dropped; outside a runtime such a
    /// configuration is refused at `events.webhook`. Use [`Config::build`] to keep the
    /// webhook's handle.
    pub fn from_config(config: &Config) -> Result<Self, Error> {
        config.build(None).map(Built::detach)
    }

    /// [`OriginPullLayer::from_config`](crate::OriginPullLayer::from_config), writing into `store` (opened with
    /// [`StoreConfig::open`], say, to share it with the service that reads it) instead of
    /// opening `config.store.url` again; the other store settings still apply.
    pub fn from_config_with(config: &Config, store: Arc<dyn ObjectStore>) -> Result<Self, Error> {
        config.build(Some(store)).map(Built::detach)
    }
}

impl Built {
    /// The layer, with the webhook (if any) left running on its own.
    fn detach(self) -> crate::OriginPullLayer {
        if let Some(webhook) = self.webhook {
            webhook.detach();
        }
        self.layer
    }
}
