//! `skidder demo` itself: it must start with no setup, and every query it
//! prints must return what it promises. The printed commands run as they
//! are, through `sh`, with `skidder` meaning the binary under test.

use std::process::Command;

use skidder_common::testing::free_port;

use crate::support::{sigterm, Demo, BIN};

#[test]
fn demo_starts_and_its_printed_queries_find_things() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut demo = Demo::start(5000, port, &dir.path().join("data"));
    let (mut trace, mut commands) = (String::new(), Vec::new());
    for line in &demo.printed {
        if let Some(rest) = line.strip_prefix("A trace id that exists: ") {
            trace = rest.split_whitespace().next().unwrap().to_owned();
        }
        if line.starts_with("  curl ") || line.starts_with("  skidder ") {
            commands.push(line.trim().to_owned());
        }
    }
    assert_eq!(trace.len(), 32, "the demo names a trace id");
    assert_eq!(commands.len(), 4, "{commands:?}");

    for cmd in &commands {
        let cmd = cmd.replacen("skidder ", &format!("{BIN} "), 1);
        let out = Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        if cmd.contains(&trace) {
            // The needle: exactly the one record that has it.
            let hits = if cmd.starts_with("curl") {
                let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
                let values: Vec<&serde_json::Value> = v["data"]["result"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|s| s["values"].as_array().unwrap())
                    .collect();
                assert!(values
                    .iter()
                    .all(|e| e[1].as_str().unwrap().contains(&trace)));
                values.len()
            } else {
                assert!(stdout.lines().all(|l| l.contains(&trace)), "{stdout}");
                stdout.lines().count()
            };
            assert_eq!(hits, 1, "{cmd}: {stdout}");
        } else if cmd.starts_with("curl") {
            let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(v["data"]["resultType"], "matrix", "{cmd}");
            let total: f64 = v["data"]["result"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|s| s["values"].as_array().unwrap())
                .map(|p| p[1].as_str().unwrap().parse::<f64>().unwrap())
                .sum();
            assert!(
                total >= 5000.0,
                "{cmd}: every record counted at least once: {total}"
            );
        } else {
            assert!(!stdout.trim().is_empty(), "{cmd} found nothing");
            assert!(stdout.lines().count() <= 5, "{cmd}: --limit 5");
            assert!(
                stdout
                    .lines()
                    .all(|l| l.contains("\"http\":{") && l.contains("\"status\":50")),
                "{stdout}"
            );
        }
    }
    sigterm(demo.process.id());
    assert!(
        demo.process.wait().unwrap().success(),
        "Ctrl-C/SIGTERM stops the demo cleanly"
    );
}
