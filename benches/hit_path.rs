//! The cost of the layer on a hit: the same in-process service, bare and wrapped.
//!
//! ```text
//! cargo bench --bench hit_path
//! ```
//!
//! The inner service always answers `200` at once, so the layer never pulls; the difference
//! between `bare` and `layered` is what every hit pays. Both build the same request each
//! iteration, so request construction is common cost.
//!
//! `rules_100_no_match` is rule matching: the inner service answers `404` and the layer
//! parses the key and tries 100 prefix rules, none of which matches, so it hands the inner
//! `404` back (no fill); compare with `bare_404`.
//!
//! The sample size is fixed: left to itself, divan may settle on one iteration per sample
//! where reading the clock is slow (some VMs), and then mostly measures the clock.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use divan::{Bencher, black_box};
use futures::FutureExt;
use http::{Request, Response};
use http_body_util::Full;
use object_store::memory::InMemory;
use tower::Layer;
use tower_origin_pull::{HttpOrigin, OriginPullBuilder, Rule};
use tower_service::Service;

fn main() {
    divan::main();
}

/// Iterations per sample (see the module docs).
const SAMPLE_SIZE: u32 = 1000;

/// An inner service that always has the object.
fn inner() -> impl Service<Request<()>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone
{
    tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
    })
}

fn request() -> Request<()> {
    Request::get("/some/key.txt")
        .body(())
        .expect("a valid request")
}

/// Call `svc` once per iteration; the future is ready at once, so no runtime is needed.
/// (`service_fn` and `OriginPull` over it are always ready, so `poll_ready` is skipped.)
fn bench_calls<S>(bencher: Bencher<'_, '_>, mut svc: S)
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    bencher.bench_local(move || {
        let response = svc
            .call(black_box(request()))
            .now_or_never()
            .expect("a hit is ready at once")
            .expect("infallible");
        black_box(response)
    });
}

#[divan::bench(sample_size = SAMPLE_SIZE)]
fn bare(bencher: Bencher<'_, '_>) {
    bench_calls(bencher, inner());
}

#[divan::bench(sample_size = SAMPLE_SIZE)]
fn layered(bencher: Bencher<'_, '_>) {
    let origin = HttpOrigin::new("http://127.0.0.1:9/").expect("a valid origin URL");
    let layer = OriginPullBuilder::from_object_store(Arc::new(InMemory::new()))
        .rule(Rule::new(origin))
        .build();
    bench_calls(bencher, layer.layer(inner()));
}

/// An inner service that never has the object.
fn inner_404()
-> impl Service<Request<()>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone {
    tower::service_fn(|_req: Request<()>| async {
        let mut res = Response::new(Full::new(Bytes::from_static(b"no such object")));
        *res.status_mut() = http::StatusCode::NOT_FOUND;
        Ok::<_, Infallible>(res)
    })
}

#[divan::bench(sample_size = SAMPLE_SIZE)]
fn bare_404(bencher: Bencher<'_, '_>) {
    bench_calls(bencher, inner_404());
}

/// A miss tried against 100 rules (prefixes `p0/` … `p99/`), none matching.
#[divan::bench(sample_size = SAMPLE_SIZE)]
fn rules_100_no_match(bencher: Bencher<'_, '_>) {
    let origin = HttpOrigin::new("http://127.0.0.1:9/").expect("a valid origin URL");
    let mut builder = OriginPullBuilder::from_object_store(Arc::new(InMemory::new()));
    for i in 0..100 {
        builder = builder.rule(Rule::new(origin.clone()).prefix(format!("p{i}/")));
    }
    bench_calls(bencher, builder.build().layer(inner_404()));
}

/// Request path → store key, for a realistic path with an escape.
#[divan::bench(sample_size = SAMPLE_SIZE)]
fn key_parse() -> Option<String> {
    tower_origin_pull::key::parse(black_box("/images/2024/05/cat%20photo.webp"))
}
