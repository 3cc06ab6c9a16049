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
//! Durations are written as `"250ms"`, `"30s"`, `"5m"`; sizes as `"64MiB"`, `"1GB"` or a
//! number of bytes. Unknown fields are errors. [`Config::validate`] (and `from_config`)
//! report every problem at once, each with where it is (`rules[2].origin.hosts[0]: not a
//! URL`); a document that does not parse (bad syntax, a wrong type, an unknown field) is
//! reported at its first problem, with its location.

mod build;
pub mod import;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Error;
pub use crate::error::Problem;

/// The whole configuration of an [`OriginPullLayer`](crate::OriginPullLayer).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Where pulled objects are written.
    pub store: StoreConfig,
    /// The rules, tried in order.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// The response header that says what happened (default `x-origin-pull`; `""` for none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_name: Option<String>,
    /// See [`OriginPullLayer::coalesce_window`](crate::OriginPullLayer::coalesce_window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coalesce_window: Option<String>,
    /// See [`OriginPullLayer::slow_reader_grace`](crate::OriginPullLayer::slow_reader_grace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_reader_grace: Option<String>,
    /// See [`OriginPullLayer::remember_not_found`](crate::OriginPullLayer::remember_not_found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remember_not_found: Option<String>,
    /// See [`OriginPullLayer::background_queue`](crate::OriginPullLayer::background_queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background_queue: Option<usize>,
    /// See [`OriginPullLayer::background_concurrency`](crate::OriginPullLayer::background_concurrency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background_concurrency: Option<usize>,
    /// See [`OriginPullLayer::max_fills`](crate::OriginPullLayer::max_fills).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fills: Option<usize>,
    /// Past `max_fills`: `proxy` (default) or `unavailable` (`503` + `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill_overflow: Option<String>,
    /// The `Retry-After` of `fill_overflow = "unavailable"` (default `"5s"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<String>,
    /// Where fill events go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<EventsConfig>,
}

/// The store, by URL: `file:///var/data`, `memory://`, or (feature `aws`)
/// `s3://bucket/prefix` with object_store's `AWS_*` environment and [`StoreConfig::options`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StoreConfig {
    /// The store's URL.
    pub url: String,
    /// Keys are stored below this prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Objects of at least this size are written as multipart uploads (default `"8MiB"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipart_threshold: Option<String>,
    /// Multipart part size (default `"8MiB"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_size: Option<String>,
    /// Parts uploading at once (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_parts: Option<usize>,
    /// Keep tombstones, so deleted keys are not pulled back (default `false`; see
    /// [`BucketStore::with_tombstones`](crate::BucketStore::with_tombstones)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tombstones: Option<bool>,
    /// object_store options for the backend (`region`, `endpoint`, `allow_http`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// Where fill events are delivered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EventsConfig {
    /// POST every event as JSON to this URL (see [`Webhook`](crate::Webhook)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// Deliveries in flight at once (default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<usize>,
    /// Attempts per event (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<usize>,
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
    /// `ignore` (default), `origin_head` or `fill`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_head: Option<String>,
    /// `serve_range_and_fill` (default), `fill_then_serve` or `proxy_range`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_range: Option<String>,
    /// `finish` (default) or `cancel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_client_disconnect: Option<String>,
    /// 301, 302 (default) or 307, for `async` and `redirect`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_status: Option<u16>,
    /// `content-md5` (default), `etag-md5`, `sha256:<header>`; `[]` for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksums: Option<Vec<String>>,
    /// Larger objects are not stored.
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

/// An origin: HTTP hosts (primaries, weights, standbys) or a bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct OriginConfig {
    /// Primary hosts, as base URLs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Relative weights of `hosts` (default all 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<u32>,
    /// Standby hosts, asked when every primary failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standby: Vec<String>,
    /// A bucket URL (`file:///`, `memory://`, `s3://`) instead of hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// object_store options for `bucket`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bucket_options: BTreeMap<String, String>,
    /// `http`, `https` or `same` (as the request); default: each URL's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Connect timeout (default `"5s"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<String>,
    /// Time to the response head (default `"30s"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte_timeout: Option<String>,
    /// Longest pause in the body (default `"30s"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    /// Cap on the whole fetch (default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_timeout: Option<String>,
    /// Redirect hops followed (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_redirects: Option<usize>,
    /// Other hosts redirects may lead to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_redirect_to: Vec<String>,
    /// Statuses that fail over besides 5xx.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fail_over_on: Vec<u16>,
    /// Consecutive failures that open a host's breaker (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker_failures: Option<u32>,
    /// How long an open breaker skips the host (default `"30s"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker_cooldown: Option<String>,
    /// Retries of the whole walk before the first byte (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<usize>,
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
    pub fn validate(&self) -> Vec<Problem> {
        match build::build(self, None) {
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        }
    }
}

impl crate::OriginPullLayer {
    /// Build the layer a [`Config`] describes, or report every problem in it at once.
    pub fn from_config(config: &Config) -> Result<Self, Error> {
        build::build(config, None).map_err(|problems| Error::InvalidConfig { problems })
    }

    /// [`OriginPullLayer::from_config`](crate::OriginPullLayer::from_config), writing into `store` (opened with
    /// [`StoreConfig::open`], say, to share it with the service that reads it) instead of
    /// opening `config.store.url` again; the other store settings still apply.
    pub fn from_config_with(
        config: &Config,
        store: std::sync::Arc<dyn object_store::ObjectStore>,
    ) -> Result<Self, Error> {
        build::build(config, Some(store)).map_err(|problems| Error::InvalidConfig { problems })
    }
}
