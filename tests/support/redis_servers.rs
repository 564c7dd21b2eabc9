//! Throwaway Redis servers for the fault tests: a standalone server and a cluster of three
//! masters, each node a `redis-server` child of the test on 127.0.0.1, on a free port, with
//! its data in a temporary directory, killed when dropped. A node can be killed (SIGKILL) and
//! started again on the same port and directory, so a cluster node rejoins with its
//! `nodes.conf` (its id and slots) and an empty memory.
//!
//! `redis-server` and `redis-cli` come from PATH (`scripts/redis.sh` installs them); without
//! them the tests say they are skipped, except under `CI=true`, where that is a failure.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// `name` on PATH; `None` (the test is skipped) when it is not there, except under CI.
pub(crate) fn binary(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    match found {
        Some(path) => Some(path),
        None if under_ci() => {
            panic!("{name} is not on PATH under CI (scripts/redis.sh installs it)")
        }
        None => {
            println!("skipped: {name} not on PATH (scripts/redis.sh installs it)");
            None
        }
    }
}

/// A free port whose cluster bus port (+10 000) is free too.
fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        if port <= 55_535 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// One `redis-server` child process.
pub(crate) struct Node {
    binary: PathBuf,
    pub(crate) port: u16,
    dir: tempfile::TempDir,
    cluster: bool,
    child: Option<Child>,
}

impl Node {
    fn new(binary: PathBuf, cluster: bool) -> Node {
        Node {
            binary,
            port: free_port(),
            dir: tempfile::tempdir().expect("temporary directory"),
            cluster,
            child: None,
        }
    }

    /// Starts (or starts again) the server and waits until it accepts connections.
    pub(crate) async fn start(&mut self) {
        let mut command = Command::new(&self.binary);
        command
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path());
        if self.cluster {
            command.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1000",
            ]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no goodbye to clients, the data in memory is gone.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A standalone server.
pub(crate) struct Standalone {
    pub(crate) node: Node,
}

impl Standalone {
    pub(crate) async fn start() -> Option<Standalone> {
        let mut node = Node::new(binary("redis-server")?, false);
        node.start().await;
        Some(Standalone { node })
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.node.port)
    }
}

/// A cluster of three masters without replicas.
pub(crate) struct Cluster {
    pub(crate) nodes: Vec<Node>,
    cli: PathBuf,
}

impl Cluster {
    pub(crate) async fn start() -> Option<Cluster> {
        let server = binary("redis-server")?;
        let cli = binary("redis-cli")?;
        let mut nodes: Vec<Node> = (0..3).map(|_| Node::new(server.clone(), true)).collect();
        for node in &mut nodes {
            node.start().await;
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let status = Command::new(&cli)
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli --cluster create");
        assert!(status.success(), "redis-cli --cluster create failed");
        let cluster = Cluster { nodes, cli };
        cluster.wait_until_ok().await;
        Some(cluster)
    }

    pub(crate) fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// Waits (up to 30 s) until every node reports `cluster_state:ok`.
    pub(crate) async fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let all_ok = self.nodes.iter().all(|node| {
                Command::new(&self.cli)
                    .args(["-p", &node.port.to_string(), "cluster", "info"])
                    .output()
                    .is_ok_and(|out| {
                        String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok")
                    })
            });
            if all_ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach state ok"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Runs `redis-cli -p PORT ARGS...` and returns its standard output.
pub(crate) fn cli(port: u16, args: &[&str]) -> String {
    let cli = binary("redis-cli").expect("redis-cli");
    let out = Command::new(cli)
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
