//! Origin-pull for tower: serve a store, and pull what it is missing from an origin.
//!
//! [`OriginPullLayer`] wraps any object-serving tower [`Service`](tower_service::Service)
//! (an axum `Router`, tower-http's `ServeDir`, ...). When the inner service answers a `GET`
//! with `404`, the request is matched against an ordered list of [`Rule`]s; the first match
//! pulls the object from its [`Origin`], streams it to the client as it arrives, and writes
//! it into the [`Store`] at the same time, so the next request is a plain hit.
//!
//! - Hits cost next to nothing: the inner body is passed through unboxed.
//! - An object is visible in the store only complete: a short, long or broken origin body
//!   is never stored, and the client's body then ends in an error, never a clean short body.
//! - The origin's address comes from configuration only, never from the request.
//! - Request paths are decoded once and refused unless they are clean keys (see [`key`]).
//!
//! ```
//! use std::sync::Arc;
//! use axum::Router;
//! use object_store::local::LocalFileSystem;
//! use tower_http::services::ServeDir;
//! use tower_origin_pull::{HttpOrigin, OriginPullBuilder, Rule};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?; let dir = dir.path();
//! let store = Arc::new(LocalFileSystem::new_with_prefix(dir)?);
//! let origin = HttpOrigin::new("http://127.0.0.1:9000/")?;
//! let app: Router = Router::new()
//!     .fallback_service(ServeDir::new(dir))
//!     .layer(OriginPullBuilder::from_object_store(store).rule(Rule::new(origin)).build());
//! # Ok(()) }
//! ```
#![deny(missing_docs, unreachable_pub, unsafe_code)]
#![warn(
    clippy::todo,
    clippy::dbg_macro,
    clippy::await_holding_lock,
    clippy::unwrap_used,
    rust_2018_idioms
)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

#[cfg(feature = "aws")]
mod aws;
mod body;
#[cfg(feature = "config")]
pub mod config;
mod engine;
mod error;
pub mod events;
mod fill;
mod future;
mod handle;
pub mod key;
mod layer;
#[cfg(feature = "monitor")]
pub mod monitor;
pub mod origin;
pub mod progress;
#[cfg(feature = "prometheus")]
pub mod prometheus;
mod refresh;
mod respond;
mod rule;
#[cfg(feature = "s3-front")]
pub mod s3;
mod serve;
pub mod server;
mod service;
pub mod store;
pub mod sweep;
mod time;
pub mod warmup;
pub mod webhook;

#[cfg(feature = "aws")]
pub use crate::aws::HyperConnector;
pub use crate::body::ResponseBody;
pub use crate::error::{BoxError, Error, Problem};
pub use crate::events::FillEvent;
pub use crate::fill::registry::{BackgroundStats, DEFAULT_MAX_FILLS, ShutdownReport};
pub use crate::fill::spool::{DEFAULT_SPOOL_MAX_BYTES, SPOOL_DIR_PREFIX, SpoolStats};
pub use crate::future::ResponseFuture;
pub use crate::handle::OriginPullHandle;
pub use crate::layer::{DEFAULT_HEADER_NAME, OriginPullBuilder, OriginPullLayer};
pub use crate::origin::{
    BucketOrigin, HttpOrigin, HttpOriginBuilder, Origin, OriginRequest, OriginResponse, Origins,
    Protocol,
};
pub use crate::progress::{Outcome, Progress};
pub use crate::rule::{
    Checksum, ClientDisconnect, DEFAULT_MAX_VARIANTS, Glob, HeadMiss, HeaderMatch, HeaderPolicy,
    KeepHeaders, Mode, OriginGone, Oversize, QueryPolicy, RangeMiss, RedirectStatus, Rewrite, Rule,
};
pub use crate::serve::{ServeBody, ServeFuture, ServeStore};
pub use crate::service::OriginPull;
pub use crate::store::{BucketStore, Committed, StagingFile, Store, StoreWrite, StoredObject};
pub use crate::webhook::{Webhook, WebhookHandle, WebhookStats};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
