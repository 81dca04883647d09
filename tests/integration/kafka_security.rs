//! Security settings pass through: the real indexer reads a SASL_SSL
//! listener of Apache Kafka (SCRAM-SHA-512 over TLS, a test CA) with only
//! what the README says to put in `[kafka.properties]`, and finds every
//! record once; with a wrong password it reads nothing.

use std::time::Duration;

use skidder_common::testing::{free_port, seed_from_env, KafkaBroker};

use crate::exactly_once::{produce, wait_stored, LocalRun, Pace, Searcher};
use crate::kafka_faults::assert_each_once;
use crate::support::{http_get, metric, stop_clean};

const READ: &str = "skidder_indexer_stage_records_in_total{stage=\"kafka_reader\"}";

/// An indexer config reading over SASL_SSL as `password`.
fn config(kafka: &KafkaBroker, password: &str) -> String {
    let sec = kafka.secure().expect("a SASL_SSL listener");
    format!(
        r#"
[kafka]
commit_interval_ms = 200
[kafka.properties]
"security.protocol" = "SASL_SSL"
"sasl.mechanisms" = "SCRAM-SHA-512"
"sasl.username" = "{}"
"sasl.password" = "{password}"
"ssl.ca.location" = "{}"
[blocks]
flush_interval_secs = 1
[upload]
checkpoint_interval_secs = 1
"#,
        sec.username,
        sec.ca_pem.display()
    )
}

#[test]
fn sasl_ssl_settings_in_kafka_properties_pass_through() {
    let seed = seed_from_env("SKIDDER_CRASH_SEED");
    let kafka = KafkaBroker::start_sasl_ssl();
    kafka.create_topic("secure", 2);
    let sec = kafka.secure().unwrap().clone();
    let secure_bootstrap = format!("127.0.0.1:{}", sec.port);
    let pace = Pace {
        every: 0,
        pause_ms: 0,
    };
    // Produced over PLAINTEXT; read over SASL_SSL only.
    let (ends, produced) = produce(kafka.bootstrap(), "secure", seed, 1, 3_000, pace)
        .join()
        .unwrap();

    // A wrong password: the broker refuses it, and nothing is read.
    let wrong = LocalRun::new(&config(&kafka, "not-the-password"));
    let wrong_port = free_port();
    let mut refused = wrong.run(&secure_bootstrap, "secure", "wrong").start(
        wrong_port,
        &wrong.logs.path().join("indexer.log"),
        &[],
    );
    // librdkafka retries the handshake; ten seconds is many tries.
    std::thread::sleep(Duration::from_secs(10));
    let m = http_get(wrong_port, "/metrics").unwrap_or_default();
    let log = std::fs::read_to_string(wrong.logs.path().join("indexer.log")).unwrap_or_default();
    let _ = refused.kill();
    assert_eq!(metric(&m, READ), 0, "read with a wrong password");
    assert!(
        log.contains("Authentication") || log.contains("SASL"),
        "the log must say why nothing is read:\n{log}"
    );

    // The right one: everything, once.
    let local = LocalRun::new(&config(&kafka, &sec.password));
    let run = local.run(&secure_bootstrap, "secure", "secure");
    let mut indexer = run.start(free_port(), &local.logs.path().join("indexer.log"), &[]);
    wait_stored(
        local.dir.path(),
        "secure",
        &ends,
        &mut [&mut indexer],
        local.logs.path(),
        Duration::from_secs(120),
    );
    stop_clean(&mut indexer);
    let seen = Searcher::start(&local.store).count_ids();
    assert_each_once(&seen, produced, local.dir.path(), seed, local.logs.path());
}
