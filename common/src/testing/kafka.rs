//! Apache Kafka for tests: the real broker, in KRaft mode (no ZooKeeper),
//! as separate JVM processes on 127.0.0.1 with free ports.
//!
//! Its jars come from Maven Central once (`scripts/install-kafka`, which
//! `scripts/test-all` runs) into `~/.cache/skidder/kafka/<version>/libs`.
//! Two shapes: one combined broker and controller ([`KafkaBroker::start`]),
//! and a cluster of three with replication factor 3
//! ([`KafkaBroker::start_cluster`]) for failover. Each node keeps its log
//! in a folder of its own, so a node stopped and started again
//! ([`KafkaBroker::restart_node`]) has its topics, records and committed
//! offsets back, as a real broker restart does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, home, wait_for_port};

/// The Kafka release the tests run; `scripts/install-kafka` fetches it.
pub const KAFKA_VERSION: &str = "4.4.0";

/// The folder of the broker's jars: `$SKIDDER_KAFKA_LIBS`, else the cache
/// `scripts/install-kafka` fills. Panics when it holds no Kafka: a
/// missing broker fails the test, it never skips it.
pub fn kafka_libs() -> PathBuf {
    let dir = std::env::var_os("SKIDDER_KAFKA_LIBS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            home()
                .join(".cache/skidder/kafka")
                .join(KAFKA_VERSION)
                .join("libs")
        });
    let jar = dir.join(format!("kafka_2.13-{KAFKA_VERSION}.jar"));
    assert!(
        jar.is_file(),
        "Apache Kafka {KAFKA_VERSION} is not installed ({} is missing): run `bash scripts/install-kafka` \
         (`bash .ci/run` does), or point SKIDDER_KAFKA_LIBS at its jars",
        jar.display()
    );
    dir
}

/// One broker-and-controller process.
#[derive(Debug)]
struct Node {
    port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running Kafka cluster of one or more combined nodes; stopped and its
/// folder removed on drop.
#[derive(Debug)]
pub struct KafkaBroker {
    nodes: Vec<Node>,
    dir: PathBuf,
    libs: PathBuf,
    secure: Option<SecureListener>,
}

/// A SASL_SSL listener (SCRAM-SHA-512 over TLS, with a certificate from a
/// test CA) beside the PLAINTEXT one: see [`KafkaBroker::start_sasl_ssl`].
#[derive(Debug, Clone)]
pub struct SecureListener {
    pub port: u16,
    /// The test CA's certificate, PEM: librdkafka's `ssl.ca.location`.
    pub ca_pem: PathBuf,
    pub username: String,
    pub password: String,
}

impl KafkaBroker {
    /// One combined broker and controller.
    pub fn start() -> Self {
        Self::start_cluster(1)
    }

    /// `n` combined nodes, every internal topic and every new topic
    /// replicated `n` times (at least 2 in sync when `n` > 2).
    pub fn start_cluster(n: u32) -> Self {
        Self::launch(n, false)
    }

    /// One node with a second client listener, SASL_SSL: SCRAM-SHA-512
    /// (one user, made when the log is formatted) over TLS with a broker
    /// certificate for 127.0.0.1 signed by a CA made for the test
    /// (`keytool`, from the same Java). The PLAINTEXT listener stays, for
    /// the producer and the tools.
    pub fn start_sasl_ssl() -> Self {
        Self::launch(1, true)
    }

    /// The SASL_SSL listener, if the broker has one.
    pub fn secure(&self) -> Option<&SecureListener> {
        self.secure.as_ref()
    }

    fn launch(n: u32, sasl_ssl: bool) -> Self {
        let libs = kafka_libs();
        let dir = std::env::temp_dir().join(format!(
            "skidder-kafka-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("create the broker folder");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let secure = sasl_ssl.then(|| SecureListener {
            port: free_port(),
            ca_pem: dir.join("ca.pem"),
            username: "skidder".into(),
            password: "skidder-test-secret".into(),
        });
        let keystore = secure.as_ref().map(|_| make_certificates(&dir));
        let scram: Vec<String> = secure
            .iter()
            .flat_map(|sec| {
                [
                    "--add-scram".to_owned(),
                    format!(
                        "SCRAM-SHA-512=[name={},password={}]",
                        sec.username, sec.password
                    ),
                ]
            })
            .collect();
        let voters = ports
            .iter()
            .enumerate()
            .map(|(i, (_, c))| format!("{}@127.0.0.1:{c}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let min_isr = if n > 2 { 2 } else { 1 };
        // Retention off: the tests produce records stamped in 2023, which
        // the default 7 days would delete 30 s after start. Messages up to
        // 200 MB: the hostile test sends 100 MB ones.
        let cluster_id = java_output(&libs, &["kafka.tools.StorageTool", "random-uuid"]);
        let mut nodes = Vec::new();
        for (i, &(port, controller_port)) in ports.iter().enumerate() {
            let id = i as u32 + 1;
            let data = dir.join(format!("node-{id}"));
            let config = dir.join(format!("node-{id}.properties"));
            std::fs::write(
                &config,
                format!(
                    "process.roles=broker,controller\n\
                     node.id={id}\n\
                     controller.quorum.voters={voters}\n\
                     {}\
                     controller.listener.names=CONTROLLER\n\
                     inter.broker.listener.name=PLAINTEXT\n\
                     log.dirs={}\n\
                     num.partitions=1\n\
                     default.replication.factor={n}\n\
                     min.insync.replicas={min_isr}\n\
                     offsets.topic.replication.factor={n}\n\
                     offsets.topic.num.partitions=8\n\
                     transaction.state.log.replication.factor={n}\n\
                     transaction.state.log.min.isr={min_isr}\n\
                     transaction.state.log.num.partitions=4\n\
                     group.initial.rebalance.delay.ms=0\n\
                     log.retention.ms=-1\n\
                     message.max.bytes=209715200\n\
                     replica.fetch.max.bytes=209715200\n\
                     socket.request.max.bytes=262144000\n",
                    listener_lines(
                        port,
                        controller_port,
                        secure.as_ref().zip(keystore.as_deref())
                    ),
                    data.display()
                ),
            )
            .expect("write the broker config");
            let config_arg = config.to_string_lossy();
            let mut format = vec![
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id.trim(),
                "-c",
                &config_arg,
            ];
            format.extend(scram.iter().map(String::as_str));
            java_output(&libs, &format);
            nodes.push(Node {
                port,
                config,
                log: dir.join(format!("node-{id}.log")),
                child: None,
            });
        }
        let mut k = KafkaBroker {
            nodes,
            dir,
            libs,
            secure,
        };
        for i in 0..k.nodes.len() {
            k.spawn(i);
        }
        for i in 0..k.nodes.len() {
            let node = &mut k.nodes[i];
            if let Some(child) = node.child.as_mut() {
                wait_for_port(node.port, child, "kafka");
            }
        }
        k.wait_ready();
        k
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("open the broker log");
        let child = Command::new("java")
            .args([
                "-Xms128m",
                "-Xmx512m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
            ])
            .arg("-cp")
            .arg(format!("{}/*", self.libs.display()))
            .args(["kafka.Kafka", &node.config.to_string_lossy()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting java for Kafka (Java 17 is required): {e}"));
        node.child = Some(child);
    }

    /// Waits until the cluster answers a metadata request (the topic
    /// list), not just until its ports accept connections.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let ok = self
                .tool(&["org.apache.kafka.tools.TopicCommand", "--list"])
                .is_ok();
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Kafka did not answer within 90 s; its log: {}",
                self.nodes[0].log.display()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Runs a Kafka command-line tool against the cluster.
    fn tool(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("java")
            .args(["-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp"])
            .arg(format!("{}/*", self.libs.display()))
            .args(&args[..1])
            .args(["--bootstrap-server", &self.bootstrap()])
            .args(&args[1..])
            .output()
            .map_err(|e| format!("running java: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Every node's client address, comma-separated.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The client port of node `i` (from 0).
    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].port
    }

    /// Creates a topic with `partitions` partitions, replicated to every node.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let n = self.nodes.len().to_string();
        let p = partitions.to_string();
        let args = [
            "org.apache.kafka.tools.TopicCommand",
            "--create",
            "--topic",
            name,
            "--partitions",
            &p,
            "--replication-factor",
            &n,
        ];
        if let Err(e) = self.tool(&args) {
            panic!("creating topic {name}: {e}");
        }
    }

    /// Deletes the records of `partition` below `before`, as retention
    /// would (`kafka-delete-records`): the log then starts at `before`.
    pub fn delete_records(&self, topic: &str, partition: i32, before: i64) {
        let file = self.dir.join(format!("delete-{topic}-{partition}.json"));
        std::fs::write(
            &file,
            format!(
                r#"{{"version":1,"partitions":[{{"topic":"{topic}","partition":{partition},"offset":{before}}}]}}"#
            ),
        )
        .expect("write the delete-records file");
        let path = file.to_string_lossy();
        let args = [
            "org.apache.kafka.tools.DeleteRecordsCommand",
            "--offset-json-file",
            &path,
        ];
        if let Err(e) = self.tool(&args) {
            panic!("deleting records of {topic}/{partition}: {e}");
        }
    }

    /// Deletes a topic and waits until the cluster no longer lists it.
    pub fn delete_topic(&self, name: &str) {
        let args = [
            "org.apache.kafka.tools.TopicCommand",
            "--delete",
            "--topic",
            name,
        ];
        if let Err(e) = self.tool(&args) {
            panic!("deleting topic {name}: {e}");
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while self
            .tool(&["org.apache.kafka.tools.TopicCommand", "--list"])
            .is_ok_and(|l| l.lines().any(|t| t.trim() == name))
        {
            assert!(Instant::now() < deadline, "topic {name} never went away");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The node (from 0) that leads `partition` of `topic`, from
    /// `kafka-topics --describe`; `None` while it has no leader.
    pub fn leader_of(&self, topic: &str, partition: i32) -> Option<usize> {
        let out = self
            .tool(&[
                "org.apache.kafka.tools.TopicCommand",
                "--describe",
                "--topic",
                topic,
            ])
            .ok()?;
        // "Topic: t\tTopicId: ..\tPartition: 0\tLeader: 2\tReplicas: 2,3,1\t.."
        out.lines().find_map(|l| {
            let field = |name: &str| {
                l.split('\t')
                    .find_map(|f| f.trim().strip_prefix(name))
                    .map(str::trim)
            };
            if field("Partition:")?.parse::<i32>().ok()? != partition {
                return None;
            }
            let id: usize = field("Leader:")?.parse().ok()?;
            (1..=self.nodes.len()).contains(&id).then(|| id - 1)
        })
    }

    /// Runs `kafka-consumer-groups --describe` for `group`: Kafka's own
    /// view of its committed offsets and lag.
    pub fn describe_group(&self, group: &str) -> String {
        self.tool(&[
            "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
            "--describe",
            "--group",
            group,
        ])
        .unwrap_or_else(|e| panic!("describing group {group}: {e}"))
    }

    /// Stops node `i`: SIGKILL when `hard` (a crash), else SIGTERM (a
    /// controlled shutdown, waited for up to 30 s).
    pub fn stop_node(&mut self, i: usize, hard: bool) {
        let Some(mut child) = self.nodes[i].child.take() else {
            return;
        };
        if !hard {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts node `i` again on its ports, with its log as it was.
    pub fn start_node(&mut self, i: usize) {
        self.spawn(i);
        let node = &mut self.nodes[i];
        if let Some(child) = node.child.as_mut() {
            wait_for_port(node.port, child, "kafka");
        }
        self.wait_ready();
    }

    /// Stops node `i`, keeps it down for `down`, and starts it again.
    pub fn restart_node(&mut self, i: usize, hard: bool, down: Duration) {
        self.stop_node(i, hard);
        std::thread::sleep(down);
        self.start_node(i);
    }

    /// [`Self::restart_node`] for the first node: a single broker's restart.
    pub fn restart(&mut self, hard: bool, down: Duration) {
        self.restart_node(0, hard, down);
    }

    /// The process ids of the running nodes: a benchmark reads the
    /// broker's CPU time from them.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| n.child.as_ref().map(Child::id))
            .collect()
    }

    /// Node `i`'s log file (its standard error), for a post-mortem.
    pub fn log_of(&self, i: usize) -> &Path {
        &self.nodes[i].log
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop_node(i, true);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A node's listener settings: PLAINTEXT for clients and brokers, the
/// controller's own, and with `secure` a SASL_SSL one too.
fn listener_lines(port: u16, controller: u16, secure: Option<(&SecureListener, &Path)>) -> String {
    let Some((sec, keystore)) = secure else {
        return format!(
            "listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n"
        );
    };
    let sp = sec.port;
    format!(
        "listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller},SASL_SSL://127.0.0.1:{sp}\n\
         advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{sp}\n\
         listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL\n\
         sasl.enabled.mechanisms=SCRAM-SHA-512\n\
         listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
         ssl.keystore.type=PKCS12\n\
         ssl.keystore.location={}\n\
         ssl.keystore.password={KEY_PASS}\n\
         ssl.key.password={KEY_PASS}\n",
        keystore.display()
    )
}

/// The password of the test CA's and the broker's key stores.
const KEY_PASS: &str = "skidder-test";

/// Makes a CA and a broker certificate for 127.0.0.1 signed by it, with
/// Java's `keytool`, in `dir`: writes `ca.pem` and returns the broker's
/// PKCS12 key store.
fn make_certificates(dir: &Path) -> PathBuf {
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let (ca, broker) = (path("ca.p12"), path("broker.p12"));
    let (csr, crt, pem) = (path("broker.csr"), path("broker.crt"), path("ca.pem"));
    let steps: [&[&str]; 7] = [
        &[
            "-genkeypair",
            "-alias",
            "ca",
            "-dname",
            "CN=skidder-test-ca",
            "-ext",
            "bc:c",
            "-keyalg",
            "RSA",
            "-validity",
            "2",
            "-keystore",
            &ca,
        ],
        &[
            "-genkeypair",
            "-alias",
            "broker",
            "-dname",
            "CN=127.0.0.1",
            "-keyalg",
            "RSA",
            "-validity",
            "2",
            "-keystore",
            &broker,
        ],
        &[
            "-certreq",
            "-alias",
            "broker",
            "-keystore",
            &broker,
            "-file",
            &csr,
        ],
        &[
            "-gencert",
            "-alias",
            "ca",
            "-keystore",
            &ca,
            "-infile",
            &csr,
            "-outfile",
            &crt,
            "-ext",
            "san=ip:127.0.0.1",
            "-validity",
            "2",
            "-rfc",
        ],
        &[
            "-exportcert",
            "-alias",
            "ca",
            "-keystore",
            &ca,
            "-rfc",
            "-file",
            &pem,
        ],
        &[
            "-importcert",
            "-alias",
            "ca",
            "-keystore",
            &broker,
            "-file",
            &pem,
            "-noprompt",
        ],
        &[
            "-importcert",
            "-alias",
            "broker",
            "-keystore",
            &broker,
            "-file",
            &crt,
        ],
    ];
    for args in steps {
        let out = Command::new("keytool")
            .args(args)
            .args([
                "-storetype",
                "PKCS12",
                "-storepass",
                KEY_PASS,
                "-keypass",
                KEY_PASS,
            ])
            .output()
            .unwrap_or_else(|e| panic!("running keytool (Java 17 ships it): {e}"));
        assert!(
            out.status.success(),
            "keytool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    PathBuf::from(broker)
}

/// Runs a Kafka class with `args` and returns its standard output.
fn java_output(libs: &Path, args: &[&str]) -> String {
    let out = Command::new("java")
        .args(["-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp"])
        .arg(format!("{}/*", libs.display()))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running java (Java 17 is required): {e}"));
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
