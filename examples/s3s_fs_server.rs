//! The in-process S3 server of the tests (s3s-fs over a directory, SigV4 with one key), as
//! a process: the baseline `benches/s3_clients.sh` measures S3 clients against, beside
//! `s3_gateway`. Not a product: no timeouts, no connection cap.
//!
//! ```text
//! cargo run --release --example s3s_fs_server -- ADDR DIR ACCESS_KEY SECRET_KEY
//! ```
//! Buckets are the directories of `DIR`.

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, dir, access, secret] = args.as_slice() else {
        return Err("usage: s3s_fs_server ADDR DIR ACCESS_KEY SECRET_KEY".into());
    };
    let fs = s3s_fs::FileSystem::new(dir).map_err(|e| format!("{dir}: {e:?}"))?;
    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(SimpleAuth::from_single(access.as_str(), secret.as_str()));
    let service = builder.build();
    let listener = TcpListener::bind(addr.as_str()).await?;
    println!("s3s-fs on http://{}/", listener.local_addr()?);
    loop {
        let (socket, _) = listener.accept().await?;
        let service = service.clone();
        tokio::spawn(async move {
            let _ = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}
