//! The one table the harness prints, also written to
//! `<work>/results.md` for `docs/BENCHMARKS.md`.

use std::path::Path;

use anyhow::Result;

use crate::Opts;

pub struct Table {
    notes: Vec<String>,
    rows: Vec<[String; 5]>,
    started: std::time::Instant,
    command: String,
}

impl Table {
    pub fn new(_o: &Opts) -> Self {
        let args: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| a != "--bench")
            .collect();
        Table {
            notes: Vec::new(),
            rows: Vec::new(),
            started: std::time::Instant::now(),
            command: format!(
                "cargo bench -p skidder-benches --bench harness -- {}",
                args.join(" ")
            ),
        }
    }

    pub fn note(&mut self, n: String) {
        eprintln!("# {n}");
        self.notes.push(n);
    }

    pub fn row(
        &mut self,
        section: &str,
        what: &str,
        value: String,
        baseline: impl Into<String>,
        target: &str,
    ) {
        let r = [
            section.into(),
            what.into(),
            value,
            baseline.into(),
            target.into(),
        ];
        eprintln!("{}", r.join(" | "));
        self.rows.push(r);
    }

    pub fn finish(self, work: &Path) -> Result<()> {
        let mut out = String::new();
        out.push_str(&format!("command: `{}`\n\n", self.command));
        out.push_str(&format!("machine: {}\n\n", machine()));
        for n in &self.notes {
            out.push_str(&format!("- {n}\n"));
        }
        out.push_str("\n| section | measure | result | baseline (same run) | target |\n|---|---|---|---|---|\n");
        for r in &self.rows {
            out.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        out.push_str(&format!(
            "\nharness wall time: {:.0} s\n",
            self.started.elapsed().as_secs_f64()
        ));
        println!("{out}");
        std::fs::create_dir_all(work)?;
        std::fs::write(work.join("results.md"), &out)?;
        Ok(())
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .unwrap_or(0);
    format!(
        "{cpu}, {cores} cores, {:.0} GiB RAM",
        mem as f64 / (1u64 << 20) as f64
    )
}
