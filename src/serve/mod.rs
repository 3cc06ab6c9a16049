//! Serving an `object_store` backend over HTTP: [`ServeStore`].
//!
//! The request's path is the key; `GET` and `HEAD` stream the object with its stored
//! metadata, honouring ranges and conditional requests as RFC 9110 defines them. One file
//! per concern: the service and the path of a request (`service.rs`), preconditions
//! (`conditional.rs`), ranges (`range.rs`), the representation's headers (`headers.rs`),
//! the response body (`body.rs`) and future (`future.rs`).

mod body;
pub(crate) mod conditional;
mod future;
pub(crate) mod headers;
mod local;
pub(crate) mod range;
mod service;

pub use self::body::ServeBody;
pub use self::future::ServeFuture;
pub use self::service::ServeStore;
pub(crate) use self::service::StoreChecked;
