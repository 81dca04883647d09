//! The fault proxy (`skidder_common::testing::fault_proxy`) against a
//! real moto: each fault does what it says.

use std::io::{Read, Write};
use std::time::Duration;

use skidder_common::testing::fault_proxy::{Fault, FaultProxy, ALL_FAULTS};
use skidder_common::testing::MotoServer;

/// Each fault, alone and on every request, does what its doc says, seen
/// from a raw HTTP/1.1 client in front of a real moto.
#[test]
fn each_fault_does_what_it_says() {
    let moto = MotoServer::start();
    let proxy = FaultProxy::start(&format!("127.0.0.1:{}", moto.process.port), 7);
    // Raw bytes of one request: whatever arrived before EOF, or the error.
    let get = |method: &str, path: &str| -> (Vec<u8>, Option<std::io::ErrorKind>) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = Vec::new();
        let err = s.read_to_end(&mut out).err().map(|e| e.kind());
        (out, err)
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (out, _) = get("PUT", "/logs");
    assert!(text(&out).starts_with("HTTP/1.1 200"), "{}", text(&out));
    let (out, _) = get("GET", "/logs?list-type=2");
    let whole = text(&out);
    assert!(whole.starts_with("HTTP/1.1 200") && whole.contains("</ListBucketResult>"));

    let only = |f: Fault| proxy.set(1.0, &[(f, 1)]);
    only(Fault::Error500);
    let (out, _) = get("GET", "/logs?list-type=2");
    assert!(text(&out).starts_with("HTTP/1.1 500") && text(&out).contains("InternalError"));
    only(Fault::Unavailable503);
    let (out, _) = get("GET", "/logs?list-type=2");
    assert!(text(&out).starts_with("HTTP/1.1 503") && text(&out).contains("ServiceUnavailable"));
    only(Fault::SlowDown);
    let (out, _) = get("GET", "/logs?list-type=2");
    assert!(text(&out).starts_with("HTTP/1.1 503") && text(&out).contains("<Code>SlowDown</Code>"));
    only(Fault::Drop);
    let (out, _) = get("GET", "/logs?list-type=2");
    assert!(
        out.is_empty(),
        "a dropped connection answered: {}",
        text(&out)
    );
    only(Fault::Truncate);
    let (out, _) = get("GET", "/logs?list-type=2");
    let cut = text(&out);
    let (head, body) = cut
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {cut:?}"));
    let promised: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !body.is_empty() && body.len() < promised,
        "{} of {promised} bytes",
        body.len()
    );
    only(Fault::Latency);
    let (out, _) = get("GET", "/logs?list-type=2");
    let body_of = |r: &str| r.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    assert!(text(&out).starts_with("HTTP/1.1 200"));
    assert_eq!(
        body_of(&text(&out)),
        body_of(&whole),
        "a delayed answer is whole"
    );
    only(Fault::Stall);
    let (out, err) = get("GET", "/logs?list-type=2");
    assert!(out.is_empty(), "a stalled request answered: {}", text(&out));
    assert!(
        matches!(
            err,
            Some(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
        ),
        "{err:?}"
    );
    proxy.off();
    let (out, _) = get("GET", "/logs?list-type=2");
    assert!(text(&out).starts_with("HTTP/1.1 200"));

    let got = proxy.injected();
    assert_eq!(got.requests, 10);
    for f in ALL_FAULTS {
        assert_eq!(got.of(f), 1, "{got}");
    }
}
