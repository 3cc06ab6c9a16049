//! Several replicas on one store, as a hash balancer runs them (README "Running more than
//! one replica").
//!
//! `a_replica_killed_mid_fill_leaves_an_error_and_nothing_partial_and_the_next_owner_pulls_once`:
//! two in-process replicas (each an `OriginPullBuilder…build()` layer over `ServeStore`, on
//! its own 127.0.0.1:0 listener and its own tokio runtime) share one `LocalFileSystem`
//! store; a real origin sends a cold object slowly. Replica A is killed (its runtime shut
//! down in the background: its tasks, sockets and fills are dropped as a killed process's
//! would be) while a client reads that object through it: the client gets an error, never a
//! clean short body. The next requests for the key go to replica B (the balancer re-hashed
//! the key): the origin is asked once more, every body is right, and the store holds the
//! whole object and no staging file.
//!
//! `mirror_probes_answer_without_the_token_and_ready_turns_503_while_draining`: the mirror
//! example as a process: `/_origin_pull/health` and `/_origin_pull/ready` answer `200`
//! without the admin token (`status` still wants it); after SIGTERM `ready` answers `503`
//! for `--drain` while everything else is still served, then the process exits cleanly.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use tower_origin_pull::{BucketStore, HttpOrigin, OriginPullBuilder, Rule, ServeStore};

use common::*;

/// A runtime of its own, so the replica on it can be killed alone.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// A replica: the origin-pull layer over `ServeStore`, served on 127.0.0.1:0 on `rt`.
fn replica(rt: &tokio::runtime::Runtime, store: Arc<dyn ObjectStore>, origin: &str) -> String {
    let origin = origin.to_owned();
    rt.block_on(async move {
        let layer = OriginPullBuilder::new(BucketStore::new(store.clone()))
            .rule(Rule::new(HttpOrigin::new(&origin).unwrap()))
            .build();
        let app = axum::Router::new()
            .fallback_service(ServeStore::new(store))
            .layer(layer);
        format!("http://{}/", serve(app).await)
    })
}

#[test]
fn a_replica_killed_mid_fill_leaves_an_error_and_nothing_partial_and_the_next_owner_pulls_once() {
    // The test's own runtime: the origin and the clients.
    let main = runtime();
    let origin = main.block_on(TestOrigin::start());
    // 24 chunks of 32 KiB, 50 ms apart: about 1.2 s per pull.
    let chunks: Vec<Bytes> = (0..24)
        .map(|i| random_bytes(32 * 1024, 1_000 + i))
        .collect();
    let whole: Bytes = chunks.concat().into();
    origin.put(
        "slow/cold.bin",
        Behaviour::Chunked {
            chunks,
            pause: Duration::from_millis(50),
        },
    );

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let rt_a = runtime();
    let rt_b = runtime();
    let a = replica(&rt_a, store.clone(), &origin.url);
    let b = replica(&rt_b, store.clone(), &origin.url);

    let started = Instant::now();
    main.block_on(async {
        // A client reads the cold object through A; after its first bytes, A dies.
        let http = client();
        let res = http
            .request(
                http::Request::get(format!("{a}slow/cold.bin"))
                    .body(Empty::<Bytes>::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let mut body = res.into_body();
        let mut received = Vec::new();
        let first = body.frame().await.unwrap().unwrap();
        received.extend_from_slice(first.data_ref().unwrap());
        assert!(received.len() < whole.len(), "the object came in one frame");

        rt_a.shutdown_background();

        let rest = tokio::time::timeout(Duration::from_secs(5), body.collect())
            .await
            .expect("the dead replica's connection stays open");
        match rest {
            Err(_) => {}
            Ok(rest) => {
                received.extend_from_slice(&rest.to_bytes());
                panic!(
                    "a clean body of {} bytes from a killed replica (object: {})",
                    received.len(),
                    whole.len()
                );
            }
        }
        assert_eq!(origin.hits("slow/cold.bin"), 1);
        // Nothing at the key: the killed fill never completed its write.
        assert_eq!(stored(store.as_ref(), "slow/cold.bin").await, None);

        // The balancer now hashes the key to B: three concurrent clients, one pull.
        let gets = (0..3).map(|_| {
            let http = http.clone();
            let url = format!("{b}slow/cold.bin");
            async move { get(&http, &url).await }
        });
        for got in futures::future::join_all(gets).await {
            assert_eq!(got.status, 200);
            assert!(got.body() == whole, "B served a wrong body");
        }
        assert_eq!(
            origin.hits("slow/cold.bin"),
            2,
            "the new owner pulls the key once"
        );
        assert!(
            eventually(Duration::from_secs(3), || async {
                stored(store.as_ref(), "slow/cold.bin").await.as_deref() == Some(&whole[..])
            })
            .await,
            "the whole object is stored"
        );
        let listed = listing(store.as_ref()).await;
        assert!(
            listed
                .iter()
                .all(|k| !k.contains("cold.bin") || k == "slow/cold.bin"),
            "something beside the object: {listed:?}"
        );
        assert_eq!(staging_files(dir.path()), Vec::<String>::new());
        // A is gone for good: a new connection to it is refused.
        assert!(body_of(&http, &format!("{a}slow/cold.bin")).await.is_err());
    });
    drop(rt_b);
    let took = started.elapsed();
    println!("killed replica, re-hashed key: {took:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[cfg(all(feature = "config", feature = "server", unix))]
mod mirror_process {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// One GET on a fresh connection: the status code, or `None` if nothing answers.
    fn status(addr: SocketAddr, path: &str) -> Option<u16> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.split(' ').nth(1)?.parse().ok()
    }

    #[test]
    fn mirror_probes_answer_without_the_token_and_ready_turns_503_while_draining() {
        let store = tempfile::tempdir().unwrap();
        std::fs::write(store.path().join("hello.txt"), b"hello").unwrap();
        let mut child = Command::new(crate::common::mirror_binary())
            .args(["--origin", "http://127.0.0.1:9/", "--listen", "127.0.0.1:0"])
            .arg("--store")
            .arg(format!("file://{}", store.path().display()))
            .args([
                "--admin-token",
                "probe-test-token-0123456789",
                "--drain",
                "1.5",
            ])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr: SocketAddr = loop {
            let line = lines.next().expect("the mirror did not start").unwrap();
            if let Some(at) = line.find("listen=") {
                let addr: String = line[at + 7..]
                    .chars()
                    .take_while(|c| !c.is_whitespace())
                    .collect();
                break addr.parse().unwrap();
            }
        };
        // Drain the rest of the log so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});

        assert_eq!(status(addr, "/_origin_pull/health"), Some(200));
        assert_eq!(status(addr, "/_origin_pull/ready"), Some(200));
        assert_eq!(status(addr, "/_origin_pull/status"), Some(401));
        assert_eq!(status(addr, "/_origin_pull/other"), Some(401));
        assert_eq!(status(addr, "/hello.txt"), Some(200));

        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let signalled = Instant::now();
        // Draining: not ready, still alive and still serving.
        let deadline = signalled + Duration::from_secs(1);
        let mut saw_draining = false;
        while Instant::now() < deadline {
            if status(addr, "/_origin_pull/ready") == Some(503) {
                saw_draining = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(saw_draining, "ready never answered 503 after SIGTERM");
        assert_eq!(status(addr, "/_origin_pull/health"), Some(200));
        assert_eq!(status(addr, "/hello.txt"), Some(200));
        // Then the process stops accepting and exits cleanly.
        let exit = loop {
            if let Some(exit) = child.try_wait().unwrap() {
                break exit;
            }
            assert!(
                signalled.elapsed() < Duration::from_secs(15),
                "the mirror did not exit"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(exit.success(), "exit: {exit:?}");
        assert!(
            signalled.elapsed() >= Duration::from_millis(1400),
            "exited before the drain delay: {:?}",
            signalled.elapsed()
        );
        assert_eq!(status(addr, "/_origin_pull/health"), None);
    }
}
