//! A throwaway Redis Cluster for tests: three masters and three replicas of
//! [`RedisServer`], joined with `redis-cli --cluster create`.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::RedisServer;

/// How long the cluster may take to cover every slot after it was created.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Six `redis-server --cluster-enabled yes` nodes on free loopback ports (three
/// masters, each with a replica), each in a temporary directory of its own.
/// Dropping it kills every node.
#[derive(Debug)]
pub struct RedisCluster {
    /// The nodes, masters first as `--cluster create` was given them.
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the nodes, creates the cluster and waits until every node reports
    /// `cluster_state:ok`.
    ///
    /// # Panics
    /// When a node does not start or the cluster does not come up within 30
    /// seconds (the message includes what `redis-cli` said).
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| {
                RedisServer::builder()
                    .arg("--cluster-enabled")
                    .arg("yes")
                    .arg("--cluster-node-timeout")
                    .arg("2000")
                    .start()
            })
            .collect();
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())).collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("could not run redis-cli (install redis-tools)");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        let cluster = RedisCluster { nodes };
        let deadline = Instant::now() + READY_TIMEOUT;
        while !cluster.nodes.iter().all(|n| cluster_info(n.port()).contains("cluster_state:ok")) {
            assert!(Instant::now() < deadline, "the cluster did not become ready in {READY_TIMEOUT:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// One node's URL, `redis://127.0.0.1:<port>`: enough to reach the whole cluster.
    pub fn seed_url(&self) -> String {
        self.nodes[0].url()
    }

    /// Every node's URL, comma-separated (the seed-list form of a cluster URL).
    pub fn seed_list(&self) -> String {
        self.nodes.iter().map(RedisServer::url).collect::<Vec<_>>().join(",")
    }
}

/// `CLUSTER INFO` of the node on `port`, or an empty string when it does not answer.
fn cluster_info(port: u16) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string(), "cluster", "info"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default()
}
