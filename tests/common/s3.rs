//! A real S3 protocol server in process: s3s-fs over a temp dir, served by hyper on
//! 127.0.0.1:0 with SigV4 authentication on, and `AmazonS3` clients for it that talk
//! through `HyperConnector` (no reqwest).

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{ObjectStore, RetryConfig};
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tower_origin_pull::HyperConnector;

pub const BUCKET: &str = "mirror";
pub const ACCESS_KEY: &str = "test-access-key";
pub const SECRET_KEY: &str = "test-secret-key";

/// The server; it stops when the test's runtime ends.
pub struct S3Server {
    pub endpoint: String,
    root: TempDir,
}

impl S3Server {
    pub async fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let service = service.clone();
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        Self {
            endpoint: format!("http://{addr}"),
            root,
        }
    }

    /// A client for the bucket, as an application would build one (path-style requests,
    /// plain http allowed for 127.0.0.1, no retries so a failure shows at once).
    pub fn builder(&self) -> AmazonS3Builder {
        AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_region("us-east-1")
            .with_bucket_name(BUCKET)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_retry(RetryConfig {
                max_retries: 0,
                ..RetryConfig::default()
            })
            .with_http_connector(HyperConnector::new())
    }

    pub fn store(&self) -> Arc<dyn ObjectStore> {
        let s3: AmazonS3 = self.builder().build().unwrap();
        Arc::new(s3)
    }

    /// Multipart uploads started and neither completed nor aborted.
    ///
    /// s3s-fs does not implement ListMultipartUploads (it answers NotImplemented), so this
    /// reads its data directory: it keeps a `.upload-<id>.json` per open upload and a
    /// `.upload_id-<id>.part-<n>` per uploaded part, and removes both on complete or abort.
    pub fn open_uploads(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(".upload-") || name.starts_with(".upload_id-"))
            .collect();
        out.sort();
        out
    }
}
