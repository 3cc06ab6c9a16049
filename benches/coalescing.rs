//! 200 concurrent cold GETs for one key: how many origin fetches, and how long after the
//! leader each waiter gets its first byte.
//!
//! ```text
//! cargo bench --bench coalescing
//! ```
//!
//! Each round uses a fresh key on a real loopback origin that sends 1 MiB in 4 pieces over
//! 300 ms (first piece at once), with the layer over `InMemory` in front of a store-serving
//! router. The 200 client connections are opened before the round, so handshakes are not
//! measured. Prints per-round figures and the medians over the rounds.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use tower_origin_pull::{HttpOrigin, OriginPullBuilder, Rule};

use common::*;

const CLIENTS: usize = 200;
const ROUNDS: usize = 7;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let origin = TestOrigin::start().await;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layer = OriginPullBuilder::from_object_store(store.clone())
        .rule(Rule::new(HttpOrigin::new(&origin.url).expect("origin")))
        .build();
    let addr = serve(store_service(store).layer(layer)).await;
    let c = client();
    // Open the connections once: a path that is not a key goes straight through.
    let warm: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (c, url) = (c.clone(), format!("http://{addr}/"));
            tokio::spawn(async move { get(&c, &url).await })
        })
        .collect();
    for w in warm {
        w.await.expect("warm-up");
    }

    let object = random_bytes(1024 * 1024, 1);
    let mut lag_p50 = Vec::new();
    let mut lag_max = Vec::new();
    println!("round  origin_gets  leader_ttfb  waiter_lag_p50  waiter_lag_p99  waiter_lag_max");
    for round in 0..ROUNDS {
        let key = format!("bench/{round}.bin");
        let chunks = object
            .chunks(256 * 1024)
            .map(Bytes::copy_from_slice)
            .collect();
        origin.put(
            &key,
            Behaviour::Chunked {
                chunks,
                pause: Duration::from_millis(100),
            },
        );
        let url = format!("http://{addr}/{key}");
        let start = Instant::now();
        let gets: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (c, url) = (c.clone(), url.clone());
                tokio::spawn(async move {
                    let req = http::Request::get(url)
                        .body(Empty::<Bytes>::new())
                        .expect("req");
                    let res = c.request(req).await.expect("response");
                    let leader = res.headers()["x-origin-pull"] == "pulled";
                    let mut body = res.into_body();
                    let mut first = None;
                    let mut len = 0;
                    while let Some(frame) = body.frame().await {
                        if let Ok(data) = frame.expect("frame").into_data() {
                            first.get_or_insert_with(|| start.elapsed());
                            len += data.len();
                        }
                    }
                    assert_eq!(len, 1024 * 1024);
                    (leader, first.expect("a byte"))
                })
            })
            .collect();
        let mut leader_ttfb = Duration::ZERO;
        let mut waiters = Vec::new();
        for g in gets {
            let (leader, ttfb) = g.await.expect("get");
            if leader {
                leader_ttfb = ttfb;
            } else {
                waiters.push(ttfb);
            }
        }
        let mut lags: Vec<Duration> = waiters
            .iter()
            .map(|w| w.saturating_sub(leader_ttfb))
            .collect();
        lags.sort();
        let pct = |p: f64| lags[((lags.len() - 1) as f64 * p) as usize];
        println!(
            "{round:>5}  {:>11}  {:>11.3?}  {:>14.3?}  {:>14.3?}  {:>14.3?}",
            origin.hits(&key),
            leader_ttfb,
            pct(0.5),
            pct(0.99),
            pct(1.0)
        );
        lag_p50.push(pct(0.5));
        lag_max.push(pct(1.0));
    }
    lag_p50.sort();
    lag_max.sort();
    println!(
        "median over {ROUNDS} rounds: waiter lag p50 {:.3?}, max {:.3?}",
        lag_p50[ROUNDS / 2],
        lag_max[ROUNDS / 2]
    );
}
