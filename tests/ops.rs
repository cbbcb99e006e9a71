//! Operations: the metrics, health and readiness endpoints of a running `auditflow`.

use std::time::Duration;

use crate::util::*;

/// The endpoint reports readiness once the group is joined, and its counters move with the
/// records: received per topic, produced per topic, dead letters by code, latency histograms.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_move_with_records_and_ready_reports_the_group() {
    let raw = unique("ops");
    let (alerts, dlq, prefix) = (format!("{raw}.alerts"), format!("{raw}.dlq"), format!("{raw}.siem."));
    let ecs = format!("{prefix}ecs");
    create_topics(&[&raw, &alerts, &dlq, &ecs], 1).await;
    let dir = tempfile::tempdir().unwrap();
    let group = unique("group");
    let config = write_config_with(dir.path(), &group, &raw, &alerts, &dlq, &prefix, "[metrics]\nlisten = \"127.0.0.1:0\"\n");
    let app = Auditflow::start(&config);
    let addr = metrics_addr(&app);
    assert_eq!(get(&addr, "/health").0, 200);
    assert_eq!(get(&addr, "/nope").0, 404);
    await_log(&app.log, "Assignment changed.", Duration::from_secs(30));
    assert_eq!(get(&addr, "/ready"), (200, "ready\n".to_owned()));

    let mut inputs: Vec<Input> = include_str!("data/events/reference.ndjson")
        .lines()
        .map(|l| Input { partition: 0, key: None, value: Some(l.as_bytes().to_vec()), headers: vec![] })
        .collect();
    inputs.push(Input { partition: 0, key: None, value: Some(b"{oops".to_vec()), headers: vec![] });
    produce(&raw, &inputs).await;
    await_committed_to_end(&group, &raw, Duration::from_secs(60));

    let (status, body) = get(&addr, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(sample(&body, "auditflow_records_received_total", &[("topic", &raw)]), Some(3.0), "{body}");
    assert_eq!(sample(&body, "auditflow_records_produced_total", &[("topic", &ecs)]), Some(2.0), "{body}");
    assert_eq!(sample(&body, "auditflow_records_produced_total", &[("topic", &alerts)]), Some(1.0), "{body}");
    assert_eq!(sample(&body, "auditflow_records_dead_lettered_total", &[("code", "decode.invalid_json")]), Some(1.0), "{body}");
    assert_eq!(sample(&body, "auditflow_process_seconds_count", &[]), Some(3.0), "{body}");
    let sequences = format!("{raw}.sequences");
    // The two reference events are 6 minutes apart: with the tests' 1 s gap they are two windows.
    assert_eq!(sample(&body, "auditflow_records_produced_total", &[("topic", &sequences)]), Some(2.0), "two trace summaries: {body}");
    assert_eq!(sample(&body, "auditflow_produce_seconds_count", &[]), Some(6.0), "{body}");
    assert_eq!(sample(&body, "auditflow_open_traces", &[]), Some(0.0), "{body}");
    assert_eq!(sample(&body, "auditflow_assigned_partitions", &[]), Some(1.0), "{body}");
    // Window counters are refreshed by the loop's one-second timer: await the next refresh.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = get(&addr, "/metrics");
        if sample(&body, "auditflow_windows_closed_total", &[]) == Some(2.0) {
            assert_eq!(sample(&body, "auditflow_windows_truncated_total", &[]), Some(0.0), "{body}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "windows_closed_total never reached 2: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, log) = app.stop();
    assert!(status.success(), "{log}");
}

/// Secrets from the config file or the environment appear neither in `check-config` output nor
/// in the logs of a run that fails to authenticate.
#[test]
fn secrets_never_reach_output_or_logs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auditflow.toml");
    std::fs::write(
        &path,
        "[kafka]\nbootstrap_servers = \"127.0.0.1:1\"\n[kafka.properties]\n\"security.protocol\" = \"SASL_PLAINTEXT\"\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"auditflow\"\n\"sasl.password\" = \"${SASL_SECRET}\"\n[registry]\nurl = \"http://127.0.0.1:1\"\nusername = \"reg\"\npassword = \"file-secret-7731\"\n",
    )
    .unwrap();
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_auditflow"))
        .args(["check-config", "--config"])
        .arg(&path)
        .env("SASL_SECRET", "env-secret-4412")
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let shown = String::from_utf8_lossy(&check.stdout);
    assert!(shown.contains("<redacted>") && shown.contains("sasl.username"), "{shown}");
    for secret in ["env-secret-4412", "file-secret-7731"] {
        assert!(!shown.contains(secret), "check-config printed {secret}:\n{shown}");
    }
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_auditflow"))
        .args(["run", "--config"])
        .arg(&path)
        .env("SASL_SECRET", "env-secret-4412")
        .env("AUDITFLOW_LOG", "trace")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let logs = String::from_utf8_lossy(&run.stderr);
    assert!(logs.contains("cannot reach Kafka"), "{logs}");
    for secret in ["env-secret-4412", "file-secret-7731"] {
        assert!(!logs.contains(secret), "the logs show {secret}");
    }
}

/// SCRAM-SHA-512 on the local broker's SASL listener: the right password processes records, a
/// wrong one exits at start with one line that names the settings to check.
#[tokio::test(flavor = "multi_thread")]
async fn scram_authentication_works_and_bad_credentials_are_named() {
    let sasl = std::env::var("AUDITFLOW_TEST_SASL_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9094".into());
    let user = std::env::var("AUDITFLOW_TEST_SASL_USERNAME").unwrap_or_else(|_| "auditflow".into());
    let password = std::env::var("AUDITFLOW_TEST_SASL_PASSWORD").unwrap_or_else(|_| "auditflow-local-secret".into());
    let raw = unique("scram");
    let (alerts, dlq, prefix) = (format!("{raw}.alerts"), format!("{raw}.dlq"), format!("{raw}.siem."));
    create_topics(&[&raw], 1).await;
    let dir = tempfile::tempdir().unwrap();
    let group = unique("group");
    let config = write_config(dir.path(), &group, &raw, &alerts, &dlq, &prefix);
    let secure = |password_ref: &str| {
        std::fs::read_to_string(&config).unwrap().replace(&format!("bootstrap_servers = \"{}\"", bootstrap()), &format!("bootstrap_servers = \"{sasl}\"")).replace(
            "[kafka.consumer_properties]",
            &format!("[kafka.properties]\n\"security.protocol\" = \"SASL_PLAINTEXT\"\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"{user}\"\n\"sasl.password\" = \"{password_ref}\"\n[kafka.consumer_properties]"),
        )
    };
    std::fs::write(&config, secure("${TEST_SASL_PASSWORD}")).unwrap();

    let stderr = run_expecting_one_line_error(&config, &[("TEST_SASL_PASSWORD", "not-the-password")]);
    assert!(stderr.contains("authentication to Kafka") && stderr.contains("sasl.password"), "{stderr}");

    std::env::set_var("TEST_SASL_PASSWORD", &password);
    let log = process_one_reference_event(&config, &group, &raw).await;
    assert!(!log.contains(&password), "the password is not logged");
    assert_eq!(read_all(&format!("{prefix}ecs")).len(), 1);
}

/// TLS on the local broker's SSL listener (its CA made by `scripts/stack`): with the CA, records
/// flow; without it, start-up fails with one line naming `ssl.ca.location`.
#[tokio::test(flavor = "multi_thread")]
async fn tls_connection_works_and_an_untrusted_certificate_is_named() {
    let ssl = std::env::var("AUDITFLOW_TEST_SSL_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9095".into());
    let ca = std::env::var("AUDITFLOW_TEST_SSL_CA_LOCATION")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.stack/tls/ca.pem").into());
    let raw = unique("tls");
    let (alerts, dlq, prefix) = (format!("{raw}.alerts"), format!("{raw}.dlq"), format!("{raw}.siem."));
    create_topics(&[&raw], 1).await;
    let dir = tempfile::tempdir().unwrap();
    let group = unique("group");
    let config = write_config(dir.path(), &group, &raw, &alerts, &dlq, &prefix);
    let plain = std::fs::read_to_string(&config).unwrap();
    let secure = |ca_line: &str| {
        plain.replace(&format!("bootstrap_servers = \"{}\"", bootstrap()), &format!("bootstrap_servers = \"{ssl}\"")).replace(
            "[kafka.consumer_properties]",
            &format!("[kafka.properties]\n\"security.protocol\" = \"SSL\"\n{ca_line}\n[kafka.consumer_properties]"),
        )
    };
    // No CA: the broker's certificate is signed by the stack's own CA, which nothing trusts.
    std::fs::write(&config, secure("")).unwrap();
    let stderr = run_expecting_one_line_error(&config, &[]);
    assert!(stderr.contains("TLS handshake") && stderr.contains("ssl.ca.location"), "{stderr}");

    std::fs::write(&config, secure(&format!("\"ssl.ca.location\" = \"{ca}\""))).unwrap();
    process_one_reference_event(&config, &group, &raw).await;
    assert_eq!(read_all(&format!("{prefix}ecs")).len(), 1);
}

/// A schema registry that is down at start (nothing listens at its URL) stops `run` before any
/// record is read, with one line naming `registry.url`.
#[tokio::test(flavor = "multi_thread")]
async fn registry_down_at_start_is_one_line_naming_the_url() {
    let raw = unique("regdown");
    create_topics(&[&raw], 1).await;
    let dir = tempfile::tempdir().unwrap();
    let more = "[registry]\nurl = \"http://127.0.0.1:9/apis/ccompat/v7\"\n";
    let config = write_config_with(
        dir.path(),
        &unique("group"),
        &raw,
        &format!("{raw}.alerts"),
        &format!("{raw}.dlq"),
        &format!("{raw}.siem."),
        more,
    );
    let stderr = run_expecting_one_line_error(&config, &[]);
    assert!(stderr.contains("schema registry unavailable") && stderr.contains("registry.url"), "{stderr}");
}

/// Basic auth to a registry that enforces it (the stack's second Apicurio, with embedded users):
/// the client's credentials are sent (register, fetch), Avro input decodes through it end to end,
/// and a wrong password stops `run` at start with one line naming `registry.username/password`.
#[tokio::test(flavor = "multi_thread")]
async fn registry_basic_auth_is_sent_and_a_wrong_password_is_named() {
    use auditflow::config::RegistryConfig;
    use auditflow::kafka::registry::Registry;
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let url = env("AUDITFLOW_TEST_REGISTRY_AUTH_URL", "http://127.0.0.1:8082/apis/ccompat/v7");
    let user = env("AUDITFLOW_TEST_REGISTRY_AUTH_USERNAME", "auditflow-registry");
    let password = env("AUDITFLOW_TEST_REGISTRY_AUTH_PASSWORD", "registry-local-secret");
    let raw = unique("regauth");
    let secured = RegistryConfig { url: Some(url.clone()), username: Some(user.clone()), password: Some(password.clone()) };
    let registry = Registry::from_config(&secured).unwrap().unwrap();
    let id = registry.register_avro(&format!("{raw}-value"), auditflow::schemas::AUDIT_EVENT).await.expect("registers with credentials");
    assert!(registry.fetch(id).await.is_ok());
    let anonymous = Registry::from_config(&RegistryConfig { url: Some(url.clone()), ..Default::default() }).unwrap().unwrap();
    let refused = anonymous.fetch(id).await.expect_err("the registry refuses requests without credentials");
    assert!(refused.to_string().contains("401"), "{refused}");

    create_topics(&[&raw], 1).await;
    let dir = tempfile::tempdir().unwrap();
    let group = unique("group");
    let config_with_password = |password: &str| {
        let registry = format!("[registry]\nurl = \"{url}\"\nusername = \"{user}\"\npassword = \"{password}\"\n");
        write_config_with(dir.path(), &group, &raw, &format!("{raw}.alerts"), &format!("{raw}.dlq"), &format!("{raw}.siem."), &registry)
    };
    let config = config_with_password("not-the-password");
    let stderr = run_expecting_one_line_error(&config, &[]);
    assert!(stderr.contains("registry.username/password") && !stderr.contains("not-the-password"), "{stderr}");

    let config = config_with_password(&password);
    let value = confluent(id, &crate::avro::datum(auditflow::schemas::AUDIT_EVENT, &crate::avro::canonical("tr-regauth", "denied")));
    let app = Auditflow::start(&config);
    produce(&raw, &[Input { partition: 0, key: None, value: Some(value), headers: vec![] }]).await;
    await_committed_to_end(&group, &raw, Duration::from_secs(60));
    let (status, log) = app.stop();
    assert!(status.success(), "{log}");
    assert!(!log.contains(&password), "the password is not logged");
    assert_eq!(read_all(&format!("{raw}.siem.ecs")).len(), 1, "the Avro record decoded with the secured registry's schema");
    assert!(read_all(&format!("{raw}.dlq")).is_empty());
}

/// Runs auditflow with `config` over the first reference event published to `raw`, waits until
/// `group` committed it, stops it (asserting exit 0) and returns its log.
async fn process_one_reference_event(config: &std::path::Path, group: &str, raw: &str) -> String {
    let app = Auditflow::start(config);
    let event = include_str!("data/events/reference.ndjson").lines().next().unwrap().as_bytes().to_vec();
    produce(raw, &[Input { partition: 0, key: None, value: Some(event), headers: vec![] }]).await;
    await_committed_to_end(group, raw, Duration::from_secs(60));
    let (status, log) = app.stop();
    assert!(status.success(), "{log}");
    log
}
