//! A throwaway Redis Cluster for tests: three masters and three replicas of
//! [`RedisServer`], joined with `redis-cli --cluster create`.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::{RedisServer, RedisServerBuilder};

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
    /// `cluster_state:ok` and every replica is in sync with its master.
    ///
    /// # Panics
    /// When a node does not start or the cluster does not come up within 30
    /// seconds (the message includes what `redis-cli` said).
    pub fn start() -> RedisCluster {
        RedisCluster::start_with(|node| node)
    }

    /// [`start`](Self::start), each node also serving TLS with the server
    /// certificate of `files`, and the nodes talking TLS to each other (the
    /// cluster bus and replication); [`tls_seed_url`](Self::tls_seed_url)
    /// reaches it. The plain ports stay open for the kit's own commands.
    ///
    /// # Panics
    /// As [`start`](Self::start), or when no free port is left.
    pub fn start_tls(files: &crate::TlsFiles) -> RedisCluster {
        RedisCluster::start_with(|node| {
            node.tls(files)
                .expect("a free port for TLS")
                .arg("--tls-cluster")
                .arg("yes")
                .arg("--tls-replication")
                .arg("yes")
        })
    }

    /// Starts six nodes, each configured by `configure`, and joins them.
    fn start_with(configure: impl Fn(RedisServerBuilder) -> RedisServerBuilder) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| {
                let node = RedisServer::builder()
                    .arg("--cluster-enabled")
                    .arg("yes")
                    .arg("--cluster-node-timeout")
                    .arg("2000");
                configure(node).start()
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
        // Ready: every slot served, and every replica in sync with its master
        // (so that WAIT counts it and it can take over).
        let ready = |port: u16| {
            let info = redis_cli(port, &["info", "replication"]);
            cluster_info(port).contains("cluster_state:ok")
                && (info.contains("role:master") && info.contains("state=online")
                    || info.contains("master_link_status:up") && info.contains("master_sync_in_progress:0"))
        };
        while !cluster.nodes.iter().all(|n| ready(n.port())) {
            assert!(Instant::now() < deadline, "the cluster did not become ready in {READY_TIMEOUT:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// One node's URL, `redis://127.0.0.1:<port>`: enough to reach the whole cluster.
    pub fn seed_url(&self) -> String {
        self.nodes[0].url()
    }

    /// One node's TLS URL, `rediss://localhost:<tls-port>`, for a cluster
    /// started with [`start_tls`](Self::start_tls).
    pub fn tls_seed_url(&self) -> String {
        self.nodes[0].tls_url()
    }

    /// Creates the user `name` with `password` and the ACL `rules` on every
    /// node (a cluster does not share users), as
    /// [`RedisServer::acl_user`] does; returns the seed list with the
    /// credentials in each URL.
    ///
    /// # Panics
    /// When a node refuses the rules.
    pub fn acl_user(&self, name: &str, password: &str, rules: &[&str]) -> String {
        let mut setuser = vec!["acl", "setuser", name, "reset", "on"];
        let password = format!(">{password}");
        setuser.push(&password);
        setuser.extend(rules);
        for node in &self.nodes {
            let answer = redis_cli(node.port(), &setuser);
            assert_eq!(answer, "OK", "ACL SETUSER on {}", node.port());
        }
        let credentials = format!("redis://{name}:{}@", &password[1..]);
        self.seed_list().replace("redis://", &credentials)
    }

    /// Every node's URL, comma-separated (the seed-list form of a cluster URL).
    pub fn seed_list(&self) -> String {
        self.nodes.iter().map(RedisServer::url).collect::<Vec<_>>().join(",")
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`).
    pub fn key_slot(&self, key: &str) -> u16 {
        let port = self.live_port();
        let slot = redis_cli(port, &["cluster", "keyslot", key]);
        slot.parse().unwrap_or_else(|_| panic!("CLUSTER KEYSLOT {key} answered {slot:?}"))
    }

    /// The port of the live master that serves `key`'s slot, as the live
    /// nodes see it.
    ///
    /// # Panics
    /// When no live master serves it.
    pub fn master_port_for(&self, key: &str) -> u16 {
        let slot = self.key_slot(key);
        self.cluster_nodes()
            .into_iter()
            .find(|node| node.serves(slot))
            .unwrap_or_else(|| panic!("no live master serves slot {slot}"))
            .port
    }

    /// Waits until the replicas of the master that serves `key` have every
    /// write it has (`INFO replication`: each replica's offset reached the
    /// master's), so that a failover loses nothing.
    ///
    /// # Panics
    /// When that does not happen within 30 seconds.
    pub fn wait_for_replicas_of(&self, key: &str) {
        let port = self.master_port_for(key);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let info = redis_cli(port, &["info", "replication"]);
            let master =
                info.lines().find_map(|l| l.strip_prefix("master_repl_offset:")?.trim().parse::<u64>().ok());
            let replicas: Vec<u64> = replica_fields(&info, "offset");
            if master.is_some() && !replicas.is_empty() && replicas.iter().all(|&r| Some(r) == master) {
                return;
            }
            assert!(Instant::now() < deadline, "the replicas of {port} did not catch up:\n{info}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills (SIGKILL) the master that serves `key`, as a crash would, and
    /// returns its port; [`wait_for_failover`](Self::wait_for_failover) waits
    /// for a replica to take over.
    pub fn kill_master_for(&mut self, key: &str) -> u16 {
        let old = self.master_port_for(key);
        self.nodes.iter_mut().find(|n| n.port() == old).expect("the master is one of the nodes").kill();
        old
    }

    /// Waits until a master other than the one on `old` serves `key`'s slot
    /// and every live node says `cluster_state:ok`; returns the new master's port.
    ///
    /// # Panics
    /// When that does not happen within 30 seconds.
    pub fn wait_for_failover(&self, key: &str, old: u16) -> u16 {
        let slot = self.key_slot(key);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let promoted = self.cluster_nodes().into_iter().find(|n| n.serves(slot)).map(|n| n.port);
            let all_ok = self
                .nodes
                .iter()
                .filter(|n| n.port() != old)
                .all(|n| cluster_info(n.port()).contains("cluster_state:ok"));
            match promoted {
                Some(port) if port != old && all_ok => return port,
                _ => assert!(
                    Instant::now() < deadline,
                    "no replica took over slot {slot} within {READY_TIMEOUT:?}"
                ),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Freezes (SIGSTOP) the replicas of the master that serves `key` and cuts
    /// their replication links, so they miss every later write of the master
    /// (until they reconnect, after [`resume`](Self::resume)); returns their
    /// ports. Every other method needs them resumed first.
    pub fn freeze_replicas_of(&self, key: &str) -> Vec<u16> {
        let shard = self.shard_ports_for(key);
        for &port in &shard[1..] {
            self.signal(port, "-STOP");
        }
        redis_cli(shard[0], &["client", "kill", "type", "replica"]);
        shard[1..].to_vec()
    }

    /// Lets frozen nodes run again.
    pub fn resume(&self, ports: &[u16]) {
        for &port in ports {
            self.signal(port, "-CONT");
        }
    }

    /// The ports of every node.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisServer::port).collect()
    }

    /// The ports of the shard that serves `key`: its master first, then the
    /// master's replicas.
    pub fn shard_ports_for(&self, key: &str) -> Vec<u16> {
        let master = self.master_port_for(key);
        let mut ports = vec![master];
        ports.extend(replica_fields::<u16>(&redis_cli(master, &["info", "replication"]), "port"));
        ports
    }

    /// The process id of the node on `port`.
    ///
    /// # Panics
    /// When no running node of this cluster listens there.
    pub fn pid_of(&self, port: u16) -> u32 {
        let node = self.nodes.iter().find(|n| n.port() == port).expect("a node of this cluster");
        node.pid().expect("the node runs")
    }

    /// Sends `signal` (`-STOP`, `-CONT`) to the node on `port`.
    fn signal(&self, port: u16, signal: &str) {
        let pid = self.pid_of(port).to_string();
        let status = Command::new("kill").arg(signal).arg(&pid).status().expect("kill runs");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Moves the slot of `key`, with its keys, from its master to another
    /// master (`CLUSTER SETSLOT … IMPORTING/MIGRATING`, `MIGRATE`, `SETSLOT …
    /// NODE`), as `redis-cli --cluster reshard` does. Returns the port of the
    /// new master.
    ///
    /// # Panics
    /// When a step is refused.
    pub fn migrate_slot_of(&self, key: &str) -> u16 {
        let slot = self.key_slot(key);
        let slot_arg = slot.to_string();
        let nodes = self.cluster_nodes();
        let from = nodes.iter().find(|n| n.serves(slot)).expect("a master serves the slot");
        // A master with slots: right after the cluster was created, a node's
        // view may still show a new replica as a master without any.
        let to = nodes
            .iter()
            .find(|n| n.live_master && !n.slots.is_empty() && n.id != from.id)
            .expect("another master");
        let ok = |port: u16, args: &[&str]| {
            let answer = redis_cli(port, args);
            assert_eq!(answer, "OK", "{args:?} on {port}");
        };
        ok(to.port, &["cluster", "setslot", &slot_arg, "importing", &from.id]);
        ok(from.port, &["cluster", "setslot", &slot_arg, "migrating", &to.id]);
        loop {
            let keys = redis_cli(from.port, &["cluster", "getkeysinslot", &slot_arg, "100"]);
            if keys.is_empty() {
                break;
            }
            let to_port = to.port.to_string();
            let mut args = vec!["migrate", "127.0.0.1", &to_port, "", "0", "5000", "keys"];
            args.extend(keys.lines());
            ok(from.port, &args);
        }
        for node in [to, from].into_iter().chain(
            nodes.iter().filter(|n| n.live_master && !n.slots.is_empty() && n.id != from.id && n.id != to.id),
        ) {
            ok(node.port, &["cluster", "setslot", &slot_arg, "node", &to.id]);
        }
        to.port
    }

    /// Any node that answers.
    fn live_port(&self) -> u16 {
        self.nodes
            .iter()
            .map(RedisServer::port)
            .find(|&port| redis_cli(port, &["ping"]) == "PONG")
            .expect("a live node")
    }

    /// `CLUSTER NODES` as a live node sees it.
    fn cluster_nodes(&self) -> Vec<NodeLine> {
        redis_cli(self.live_port(), &["cluster", "nodes"]).lines().filter_map(NodeLine::parse).collect()
    }
}

/// `CLUSTER INFO` of the node on `port`, or an empty string when it does not answer.
fn cluster_info(port: u16) -> String {
    redis_cli(port, &["cluster", "info"])
}

/// What `redis-cli -p <port> <args>` printed, or an empty string when it could not run.
fn redis_cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// The field `name` (`port`, `offset`, …) of each replica line of `INFO
/// replication` (`slave0:ip=…,port=…,state=online,offset=…,lag=0`).
fn replica_fields<T: std::str::FromStr>(info: &str, name: &str) -> Vec<T> {
    info.lines()
        .filter_map(|line| line.strip_prefix("slave")?.split_once(':'))
        .filter_map(|(_, fields)| {
            fields.split(',').find_map(|f| f.strip_prefix(name)?.strip_prefix('='))?.trim().parse().ok()
        })
        .collect()
}

/// One line of `CLUSTER NODES`.
#[derive(Debug)]
struct NodeLine {
    /// The node id.
    id: String,
    /// The node's port.
    port: u16,
    /// Whether it is a master that has not failed.
    live_master: bool,
    /// The slot ranges it serves, inclusive.
    slots: Vec<(u16, u16)>,
}

impl NodeLine {
    fn parse(line: &str) -> Option<NodeLine> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let address = fields.get(1)?.split('@').next()?;
        let port = address.rsplit(':').next()?.parse().ok()?;
        let flags = fields.get(2)?;
        let slots = fields
            .iter()
            .skip(8)
            .filter(|range| !range.starts_with('['))
            .filter_map(|range| match range.split_once('-') {
                Some((from, to)) => Some((from.parse().ok()?, to.parse().ok()?)),
                None => range.parse().ok().map(|slot| (slot, slot)),
            })
            .collect();
        let live_master = flags.contains("master") && !flags.contains("fail");
        Some(NodeLine { id: fields[0].to_owned(), port, live_master, slots })
    }

    fn serves(&self, slot: u16) -> bool {
        self.live_master && self.slots.iter().any(|&(from, to)| (from..=to).contains(&slot))
    }
}
