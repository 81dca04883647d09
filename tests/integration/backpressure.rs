//! A store that stops accepting uploads must stop Kafka intake, not grow
//! memory. The real indexer process reads ~400 MB from Apache Kafka while its S3
//! endpoint answers reads but never answers a PUT; its resident memory must
//! stay under the configured limit, and it must pause fetching.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skidder_common::testing::{free_port, KafkaBroker};

use crate::support::{http_get, metric, rss_bytes, Guard, TestProducer, BIN};

const LIMIT: u64 = 256 << 20;
const MESSAGES: usize = 1600;
const MESSAGE_BYTES: usize = 256 << 10;

/// An S3 endpoint on a free port that stores nothing: listings are
/// empty, GETs are 404, and PUTs hang for as long as the connection lives,
/// but for the epoch claims an indexer makes when given a partition, which
/// it accepts (and forgets), so that the indexer reads from Kafka at all.
/// Returns its port.
pub(crate) fn stalled_s3() -> u16 {
    let s3 = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = s3.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in s3.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    port
}

/// Answers the requests of one connection to [`stalled_s3`].
fn serve(stream: TcpStream) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut out = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut header = String::new();
        let mut content_length = 0usize;
        while reader.read_line(&mut header).unwrap_or(0) > 0 && header != "\r\n" {
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse().unwrap_or(0);
                }
            }
            header.clear();
        }
        let (status, body) = if request_line.starts_with("PUT") && request_line.contains("/epoch.")
        {
            let mut body = vec![0u8; content_length];
            if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
                return;
            }
            ("200 OK", "")
        } else if request_line.starts_with("PUT") {
            // Never answer: the upload stalls.
            std::thread::sleep(Duration::from_secs(3600));
            return;
        } else if request_line.contains("list-type=2") {
            (
                "200 OK",
                r#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>logs</Name><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>"#,
            )
        } else {
            (
                "404 Not Found",
                r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>none</Message></Error>"#,
            )
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn a_stalled_store_pauses_kafka_and_holds_rss_under_the_limit() {
    let kafka = KafkaBroker::start();
    kafka.create_topic("bp", 2);
    let mut producer = TestProducer::new(&kafka.bootstrap());
    let mut payload = String::with_capacity(MESSAGE_BYTES);
    for i in 0..MESSAGES {
        payload.clear();
        let mut n = 0;
        while payload.len() < MESSAGE_BYTES {
            n += 1;
            payload.push_str(&format!(
                r#"{{"level":"info","service":"api","msg":"request {i}-{n} served","trace_id":"{i:08x}{n:08x}"}}"#
            ));
            payload.push('\n');
        }
        producer.send("bp", &i.to_string(), payload.as_bytes(), 1_700_000_000_000);
    }
    producer.finish();

    let s3_port = stalled_s3();

    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!("[memory]\nlimit_bytes = {LIMIT}\nqueue_bytes = 16777216\n[blocks]\ntarget_bytes = 4194304\n"),
    )
    .unwrap();
    let metrics_port = free_port();
    let mut indexer = Guard(
        Command::new(BIN)
            .args(["indexer", "--config", config.path().to_str().unwrap()])
            .args([
                "--kafka-brokers",
                &kafka.bootstrap(),
                "--topics",
                "bp",
                "--group-id",
                "bp",
            ])
            .args([
                "--store",
                "s3://logs/bp",
                "--s3-endpoint",
                &format!("http://127.0.0.1:{s3_port}"),
            ])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("SKIDDER_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let mut peak = 0;
    let started = Instant::now();
    let mut metrics = String::new();
    while started.elapsed() < Duration::from_secs(30) {
        assert!(indexer.try_wait().unwrap().is_none(), "indexer exited");
        peak = peak.max(rss_bytes(indexer.id()).unwrap_or(0));
        if let Ok(m) = http_get(metrics_port, "/metrics") {
            metrics = m;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let read = metric(
        &metrics,
        "skidder_indexer_stage_bytes_in_total{stage=\"kafka_reader\"}",
    );
    let pauses = metric(&metrics, "skidder_indexer_kafka_pauses_total");
    let stored = metric(&metrics, "skidder_indexer_blocks_written_total");
    eprintln!(
        "stalled store: peak RSS {} MiB (limit {} MiB), {} MiB read of {} MiB offered, {pauses} pauses",
        peak >> 20,
        LIMIT >> 20,
        read >> 20,
        (MESSAGES * MESSAGE_BYTES) >> 20
    );
    let _ = indexer.kill();
    let _ = indexer.wait();
    assert_eq!(
        stored, 0,
        "the store accepted nothing, so nothing can be stored"
    );
    assert!(pauses >= 1, "Kafka fetching never paused:\n{metrics}");
    assert!(
        read < (MESSAGES * MESSAGE_BYTES) as u64,
        "intake did not stop"
    );
    assert!(
        peak > 0 && peak < LIMIT,
        "peak RSS {peak} over the limit {LIMIT}"
    );
}
