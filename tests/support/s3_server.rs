//! The S3-compatible server the tests share (`scripts/s3.sh start DIR` prints its `S3_*`
//! variables; `scripts/test.sh` sets them), store URLs for it, and a TCP relay of the test's
//! own in front of it that a fault test takes down and brings back (moto keeps its objects,
//! bucket and keys in memory, so killing the server itself would not let it come back).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The server from the environment; `None` (the test is skipped) without `S3_ENDPOINT`,
/// except under `CI=true`, where that is a failure.
pub(crate) struct S3 {
    pub(crate) endpoint: String,
    bucket: String,
    region: String,
    key_id: String,
    secret: String,
}

impl S3 {
    pub(crate) fn from_env() -> Option<S3> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let Some(endpoint) = var("S3_ENDPOINT") else {
            assert!(
                std::env::var("CI").map_or(true, |ci| ci != "true"),
                "S3_ENDPOINT is not set under CI (scripts/test.sh starts a server)"
            );
            println!("skipped: S3_ENDPOINT not set (scripts/s3.sh starts a server)");
            return None;
        };
        Some(S3 {
            endpoint,
            bucket: var("S3_BUCKET").unwrap_or_else(|| "http-cache-tests".into()),
            region: var("S3_REGION").unwrap_or_else(|| "us-east-1".into()),
            key_id: var("S3_ACCESS_KEY_ID").unwrap_or_default(),
            secret: var("S3_SECRET_ACCESS_KEY").unwrap_or_default(),
        })
    }

    /// The store URL of `prefix` in the bucket, reached through `endpoint`.
    pub(crate) fn url_via(&self, endpoint: &str, prefix: &str) -> String {
        format!(
            "s3://{}/{prefix}?endpoint={}&region={}&access_key_id={}&secret_access_key={}",
            self.bucket,
            encode(endpoint),
            self.region,
            encode(&self.key_id),
            encode(&self.secret)
        )
    }

    pub(crate) fn url(&self, prefix: &str) -> String {
        self.url_via(&self.endpoint, prefix)
    }
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A TCP relay to `upstream` on a fixed loopback port: `down` refuses connections and cuts
/// the open ones, as a killed server would; `up` serves again on the same port.
pub(crate) struct Relay {
    port: u16,
    upstream: Arc<str>,
    task: Option<JoinHandle<()>>,
}

impl Relay {
    pub(crate) async fn start(endpoint: &str) -> Relay {
        let upstream = endpoint.trim_start_matches("http://").trim_end_matches('/');
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let mut relay = Relay {
            port,
            upstream: upstream.into(),
            task: None,
        };
        relay.serve(listener);
        relay
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn serve(&mut self, listener: TcpListener) {
        let upstream = self.upstream.clone();
        self.task = Some(tokio::spawn(async move {
            // Dropping the set (when the task is aborted) cuts every relayed connection.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                connections.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&*upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        }));
    }

    pub(crate) fn down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    pub(crate) async fn up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("rebinding port {}: {e}", self.port),
            }
        };
        self.serve(listener);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.down();
    }
}
