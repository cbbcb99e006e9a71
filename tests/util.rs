//! Helpers shared by the integration tests.

use auditflow::config::Config;

/// The configuration of the worked examples: defaults plus the example product identity.
pub fn golden_config() -> Config {
    Config::parse(include_str!("data/config/golden.toml")).expect("golden config parses")
}

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// The local broker started by `scripts/stack up`.
pub fn bootstrap() -> String {
    std::env::var("AUDITFLOW_TEST_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// The local registry's Confluent-compatible API.
pub fn registry_url() -> String {
    std::env::var("AUDITFLOW_TEST_REGISTRY").unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v7".into())
}

/// A name unique to this test run, so tests never share topics or groups.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{nanos:x}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Creates topics with `partitions` partitions each; fails the test if the broker refuses.
pub async fn create_topics(names: &[&str], partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap()).create().expect("admin client");
    let topics: Vec<NewTopic> = names.iter().map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1))).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&topics, &options).await.expect("create_topics request") {
        result.unwrap_or_else(|(name, code)| panic!("creating topic {name}: {code:?} (is `scripts/stack up` running?)"));
    }
}

/// Creates one topic with one partition and the topic configuration `configs`.
pub async fn create_topic_with(name: &str, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap()).create().expect("admin client");
    let mut topic = NewTopic::new(name, 1, TopicReplication::Fixed(1));
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics([&topic], &options).await.expect("create_topics request") {
        result.unwrap_or_else(|(name, code)| panic!("creating topic {name}: {code:?}"));
    }
}

/// Sets dynamic configs of topic `name` (non-incremental: those not named return to their defaults).
pub async fn alter_topic(name: &str, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap()).create().expect("admin client");
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
    for (key, value) in configs {
        alter = alter.set(key, value);
    }
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    for result in admin.alter_configs([&alter], &options).await.expect("alter_configs request") {
        result.unwrap_or_else(|(resource, code)| panic!("altering {resource:?}: {code:?}"));
    }
}

/// One record to publish.
pub struct Input {
    /// Target partition.
    pub partition: i32,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(&'static str, &'static [u8])>,
}

/// Publishes records in order and waits for every acknowledgement; returns (partition, offset) each.
/// Sends are pipelined (the idempotent producer keeps their order within a partition).
pub async fn produce(topic: &str, inputs: &[Input]) -> Vec<(i32, i64)> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let mut out = Vec::with_capacity(inputs.len());
    for chunk in inputs.chunks(10_000) {
        let mut deliveries = Vec::with_capacity(chunk.len());
        for input in chunk {
            let mut headers = OwnedHeaders::new();
            for (key, value) in &input.headers {
                headers = headers.insert(Header { key, value: Some(*value) });
            }
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).partition(input.partition).headers(headers);
            if let Some(key) = input.key.as_deref() {
                record = record.key(key);
            }
            if let Some(value) = input.value.as_deref() {
                record = record.payload(value);
            }
            deliveries.push(producer.send_result(record).map_err(|(e, _)| e).expect("enqueue"));
        }
        for delivery in futures::future::join_all(deliveries).await {
            let delivery = delivery.expect("delivery answered").map_err(|(e, _)| e).expect("delivered");
            out.push((delivery.partition, delivery.offset));
        }
    }
    out
}

/// Every record of `topic` from the beginning to its high watermark, in partition then offset order.
pub fn read_all(topic: &str) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .expect("reader");
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    let partitions: Vec<i32> = metadata.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut out = Vec::new();
    for partition in partitions {
        // Right after a broker outage leadership may be briefly unknown: ask again for up to 60 s.
        let asked = Instant::now();
        let (low, high) = loop {
            match consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
                Ok(watermarks) => break watermarks,
                Err(error) => {
                    assert!(asked.elapsed() < Duration::from_secs(60), "watermarks of {topic}/{partition}: {error}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        };
        if high <= low {
            continue;
        }
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, partition, Offset::Offset(low)).unwrap();
        consumer.assign(&list).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut next = low;
        while next < high {
            assert!(Instant::now() < deadline, "timed out reading {topic}/{partition} at {next} of {high}");
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => {
                    next = message.offset() + 1;
                    out.push(message.detach());
                }
                // Transactional topics end with a commit marker, which is never delivered.
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
                Some(Err(error)) => panic!("reading {topic}/{partition}: {error}"),
                None => {}
            }
        }
    }
    out
}

/// Waits until `group` has committed, for every partition of `topic`, the partition's end offset.
pub fn await_committed_to_end(group: &str, topic: &str, timeout: Duration) -> Vec<(i32, i64)> {
    let reader = || -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap())
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("offset reader")
    };
    let deadline = Instant::now() + timeout;
    // Right after a broker outage the topic's metadata can come back without its partitions, and
    // a client keeps what it got: a new client and new metadata until they are complete.
    let (mut consumer, partitions) = loop {
        let consumer = reader();
        if let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)) {
            let partitions: Vec<i32> = metadata.topics()[0].partitions().iter().map(|p| p.id()).collect();
            if metadata.topics()[0].error().is_none() && !partitions.is_empty() {
                break (consumer, partitions);
            }
        }
        assert!(Instant::now() < deadline, "group {group}: no metadata for {topic}");
        std::thread::sleep(Duration::from_millis(200));
    };
    loop {
        let mut list = TopicPartitionList::new();
        let mut ends = Vec::new();
        let mut transient = None;
        for &p in &partitions {
            list.add_partition(topic, p);
            match consumer.fetch_watermarks(topic, p, Duration::from_secs(10)) {
                Ok((_, high)) => ends.push((p, high)),
                Err(error) => transient = Some(error),
            }
        }
        let committed = match transient {
            None => consumer.committed_offsets(list, Duration::from_secs(10)),
            Some(error) => Err(error),
        };
        // Right after a broker restart, leadership is briefly unknown: ask again until the deadline.
        let committed = match committed {
            Ok(committed) => committed,
            Err(error) => {
                assert!(Instant::now() < deadline, "group {group}: reading offsets of {topic} still fails: {error}");
                std::thread::sleep(Duration::from_millis(100));
                // A client that saw the topic without its partitions may keep failing: start over.
                consumer = reader();
                continue;
            }
        };
        let got: Vec<(i32, i64)> = partitions
            .iter()
            .map(|&p| {
                let offset = committed.find_partition(topic, p).map(|e| e.offset());
                (
                    p,
                    match offset {
                        Some(Offset::Offset(o)) => o,
                        _ => -1,
                    },
                )
            })
            .collect();
        if got == ends {
            return got;
        }
        assert!(Instant::now() < deadline, "group {group} committed {got:?}, end offsets {ends:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running `auditflow` process, killed if the test fails before stopping it.
pub struct Auditflow {
    child: Option<Child>,
    /// Its stderr log file.
    pub log: PathBuf,
}

impl Auditflow {
    /// Starts `auditflow run` with the given config file; its logs go to a file beside it.
    pub fn start(config: &Path) -> Auditflow {
        static RUNS: AtomicU32 = AtomicU32::new(0);
        let log = config.with_extension(format!("{}.log", RUNS.fetch_add(1, Ordering::Relaxed)));
        let child = Command::new(env!("CARGO_BIN_EXE_auditflow"))
            .args(["run", "--config"])
            .arg(config)
            .env("AUDITFLOW_LOG", "info,auditflow=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn auditflow");
        Auditflow { child: Some(child), log }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends SIGTERM and waits for exit; returns the exit status and the log.
    pub fn stop(self) -> (std::process::ExitStatus, String) {
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        self.wait(Duration::from_secs(40))
    }

    /// The exit status, once the process has exited by itself.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().unwrap().try_wait().unwrap()
    }

    /// Waits up to `timeout` for the process to exit by itself; returns the exit status and the
    /// log. Kills it and panics when it is still running then.
    pub fn wait(mut self, timeout: Duration) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("auditflow did not exit within {timeout:?}:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        (status, std::fs::read_to_string(&self.log).unwrap_or_default())
    }
}

impl Auditflow {
    /// Kills the process with SIGKILL (no shutdown at all) and waits for it.
    pub fn kill(mut self) -> String {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Auditflow {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
            // A test failing while the process runs: show what it logged last, since its
            // temporary folder (and the log) goes with the test.
            if std::thread::panicking() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let lines = collapse_repeats(&log);
                eprintln!("--- last lines of {} ---\n{}", self.log.display(), lines[lines.len().saturating_sub(80)..].join("\n"));
                if let Ok(dir) = std::env::var("AUDITFLOW_TEST_KEEP_LOGS") {
                    let _ = std::fs::create_dir_all(&dir);
                    let name = format!("{}-{}", std::process::id(), self.log.file_name().unwrap_or_default().to_string_lossy());
                    let _ = std::fs::write(std::path::Path::new(&dir).join(name), &log);
                }
            }
        }
    }
}

/// The lines of a log with runs of the same message (timestamps aside) folded into their first
/// line and a count: a failing test's last lines show what happened, not 80 copies of one retry.
fn collapse_repeats(log: &str) -> Vec<String> {
    let message = |line: &str| line.split_once(' ').map_or(line, |(_, rest)| rest).to_owned();
    let mut out: Vec<String> = Vec::new();
    let (mut last, mut repeats) = (String::new(), 0);
    for line in log.lines() {
        if message(line) == last {
            repeats += 1;
            continue;
        }
        if repeats > 0 {
            out.push(format!("    (the line above {repeats} more times)"));
        }
        last = message(line);
        repeats = 0;
        out.push(line.to_owned());
    }
    if repeats > 0 {
        out.push(format!("    (the line above {repeats} more times)"));
    }
    out
}

/// The text of the test config at `config` with the TOML lines `kafka` added to its `[kafka]`
/// table and `consumer` to its `[kafka.consumer_properties]`.
pub fn with_kafka_settings(config: &Path, kafka: &str, consumer: &str) -> String {
    const HEADER: &str = "[kafka.consumer_properties]\n";
    let text = std::fs::read_to_string(config).unwrap();
    assert!(text.contains(HEADER), "the test config changed shape");
    text.replace(HEADER, &format!("{kafka}{HEADER}{consumer}"))
}

/// Writes a config file for a test: the given topics and group, fast commits, golden product.
pub fn write_config(dir: &Path, group: &str, input: &str, alerts: &str, dlq: &str, siem_prefix: &str) -> PathBuf {
    write_config_with(dir, group, input, alerts, dlq, siem_prefix, "")
}

/// [`write_config`] plus extra TOML sections (e.g. `[registry]`).
pub fn write_config_with(dir: &Path, group: &str, input: &str, alerts: &str, dlq: &str, siem_prefix: &str, more: &str) -> PathBuf {
    let text = format!(
        r#"{more}
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{group}"
[kafka.consumer_properties]
# The broker's minimum: a killed instance's partitions move on within seconds.
"session.timeout.ms" = "6000"
[topics]
input = ["{input}"]
alerts = "{alerts}"
dead_letter = "{dlq}"
siem_prefix = "{siem_prefix}"
sequences = "{input}.sequences"
[delivery]
commit_interval_ms = 100
[window]
# Short windows: tests end within seconds of their last event.
gap_ms = 1000
allowed_lateness_ms = 100
idle_timeout_ms = 1000
{golden}"#,
        bootstrap = bootstrap(),
        golden = include_str!("data/config/golden.toml"),
    );
    let path = dir.join("auditflow.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Tests that use the registry hold this for reading; the outage test, which stops and restarts
/// the registry, holds it for writing, so no other registry test runs meanwhile.
pub static REGISTRY_LOCK: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// A value in the Confluent wire format: magic byte 0, big-endian schema id, the datum.
pub fn confluent(schema_id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}

/// Runs `scripts/stack ARGS` and fails the test if it fails.
pub fn stack(args: &[&str]) {
    let status = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack")).args(args).status().expect("scripts/stack");
    assert!(status.success(), "scripts/stack {args:?} failed");
}

/// Waits until the broker answers a metadata request, for up to `timeout`; returns how long that
/// took. After a freeze the broker has answered at once on a quiet machine but not within 10 s in
/// one CI run, so a test that starts a process after a thaw waits for this first.
pub fn await_broker_answers(timeout: Duration) -> Duration {
    let started = Instant::now();
    let client: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap()).create().expect("metadata client");
    loop {
        match client.fetch_metadata(None, Duration::from_secs(5)) {
            Ok(_) => return started.elapsed(),
            Err(error) => {
                assert!(started.elapsed() < timeout, "the broker did not answer within {timeout:?}: {error}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// How many members `group` has now, as the broker reports them. Right after a broker freeze the
/// group coordinator can take longer than the request's 10 s to answer: an error, not a count.
pub fn group_members(group: &str) -> rdkafka::error::KafkaResult<usize> {
    let client: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap()).create().expect("group reader");
    let groups = client.fetch_group_list(Some(group), Duration::from_secs(10))?;
    Ok(groups.groups().first().map_or(0, |g| g.members().len()))
}

/// Waits until `group` has no members (the last one left or its session expired), asking again
/// when the broker does not answer, or fails after `timeout`; returns how long that took.
pub fn await_group_empty(group: &str, timeout: Duration) -> Duration {
    let started = Instant::now();
    loop {
        match group_members(group) {
            Ok(0) => return started.elapsed(),
            Ok(n) => assert!(started.elapsed() < timeout, "group {group} still had {n} members after {timeout:?}"),
            Err(error) => assert!(started.elapsed() < timeout, "group {group}: no member list within {timeout:?}: {error}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `path` contains `needle`, or fails after `timeout`.
pub fn await_log(path: &Path, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        assert!(Instant::now() < deadline, "log {} never said {needle:?}:\n{text}", path.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Committed offsets of `group` on `topic`, by partition (-1 when none).
pub fn committed(group: &str, topic: &str, partitions: i32) -> Vec<(i32, i64)> {
    try_committed(group, topic, partitions).expect("committed offsets")
}

/// [`committed`], or the error (e.g. while the broker restarts).
pub fn try_committed(group: &str, topic: &str, partitions: i32) -> rdkafka::error::KafkaResult<Vec<(i32, i64)>> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap()).set("group.id", group).create().expect("offset reader");
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let got = consumer.committed_offsets(list, Duration::from_secs(10))?;
    Ok((0..partitions)
        .map(|p| {
            (
                p,
                match got.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => -1,
                },
            )
        })
        .collect())
}

/// The sum over partitions of `group`'s committed offsets on `topic` (0 for none).
pub fn committed_total(group: &str, topic: &str, partitions: i32) -> i64 {
    committed(group, topic, partitions).iter().map(|(_, o)| (*o).max(0)).sum()
}

/// Waits until `group` has committed at least `at_least` records of `topic` in total.
pub fn await_committed_total(group: &str, topic: &str, partitions: i32, at_least: i64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let total = committed_total(group, topic, partitions);
        if total >= at_least {
            return;
        }
        assert!(Instant::now() < deadline, "group {group} committed {total} of {topic}, waiting for {at_least}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A plain HTTP/1.0 GET; returns (status code, body).
pub fn get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// The value of one sample line `name{labels} value` in a Prometheus text exposition.
pub fn sample(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        (metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))).then(|| value.parse().ok())?
    })
}

/// The metrics address a running auditflow logged (`metrics.listen` with port 0).
pub fn metrics_addr(app: &Auditflow) -> String {
    await_log(&app.log, "Serving /metrics", Duration::from_secs(30));
    let log = std::fs::read_to_string(&app.log).unwrap();
    regex::Regex::new(r"addr=(127\.0\.0\.1:\d+)").unwrap().captures(&log).unwrap()[1].to_owned()
}

/// Peak resident memory of a process in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap().trim().trim_end_matches(" kB").trim().parse().unwrap()
}

/// Runs `auditflow run` with `config` (and extra environment) expecting it to fail at start:
/// asserts exit code 1 and a single line on stderr, and returns that line.
pub fn run_expecting_one_line_error(config: &Path, env: &[(&str, &str)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_auditflow"))
        .args(["run", "--config"])
        .arg(config)
        .envs(env.iter().copied())
        .env("AUDITFLOW_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}

/// Switches a test config (from [`write_config`]) to exactly-once mode with its own
/// `transactional.id`.
pub fn make_exactly_once(config: &Path, transactional_id: &str) {
    let text = std::fs::read_to_string(config)
        .unwrap()
        .replace("[delivery]\n", &format!("[delivery]\nmode = \"exactly_once\"\ntransactional_id = \"{transactional_id}\"\n"));
    std::fs::write(config, text).unwrap();
}

/// Waits until `group` has committed, on every partition of `topic` (with `partitions`
/// partitions), past the last record it holds. For topics written in transactions, whose end
/// offset is a commit marker that consumers never see (so a finished group commits end − 1).
pub fn await_committed_past_records(group: &str, topic: &str, partitions: i32, timeout: Duration) {
    let mut last = vec![0i64; partitions as usize];
    for message in read_all(topic) {
        let slot = &mut last[message.partition() as usize];
        *slot = (*slot).max(message.offset() + 1);
    }
    let deadline = Instant::now() + timeout;
    loop {
        let got = committed(group, topic, partitions);
        if got.iter().all(|&(p, offset)| offset >= last[p as usize]) {
            return;
        }
        assert!(Instant::now() < deadline, "group {group} committed {got:?}, records end at {last:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
