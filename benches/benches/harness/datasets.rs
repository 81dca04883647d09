//! The real datasets of `../shared/data`, each indexed as it is.

use super::*;
use crate::index_rows::inproc;

/// Indexes each real dataset as it is, one store each.
pub(crate) fn datasets(o: &Opts, t: &mut Table) -> Result<()> {
    let data = data_dir();
    let sets: Vec<(&str, Vec<PathBuf>)> = vec![
        ("zeek (NDJSON)", glob(&data.join("zeek"), "json")),
        ("suricata (NDJSON)", glob(&data.join("suricata"), "ndjson")),
        (
            "elastic nginx status (NDJSON)",
            vec![data.join("elastic/nginxplus_status.ndjson")],
        ),
        ("loghub (plain text)", glob(&data.join("loghub"), "log")),
        ("elastic apache + auth + kafka (plain text)", {
            let mut v = vec![
                data.join("elastic/apache_access.log"),
                data.join("elastic/auth.log"),
            ];
            v.extend(glob(&data.join("elastic/kafka_broker_logs"), ""));
            v
        }),
    ];
    std::fs::create_dir_all(&o.work)?;
    for (name, files) in sets {
        if files.is_empty() {
            bail!("dataset {name}: no files under {}", data.display());
        }
        let store = o.work.join("store-dataset");
        let cfg = write_config(
            &o.work,
            "bench-dataset.toml",
            &format!(
                "[store]\nurl = \"file://{}\"\n[parse]\ntenant = {{ fixed = \"bench\" }}\n",
                store.display()
            ),
        )?;
        let r = inproc(&cfg, &store, &files, None)?;
        let s = storage::report(&store, 2_000).map_err(anyhow::Error::msg)?;
        t.row(
            "datasets",
            &format!("{name}: indexing"),
            format!(
                "{:.0} MB/s per CPU-s ({:.1} MB, {} records)",
                mb(r.raw_bytes) / r.cpu_s,
                mb(r.raw_bytes),
                r.records
            ),
            "",
            "",
        );
        storage_rows(t, name, r.raw_bytes, &s);
        let _ = std::fs::remove_dir_all(&store);
    }
    Ok(())
}

/// Files directly or recursively under `dir` ending in `ext` (any when empty).
pub(crate) fn glob(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if p.is_dir() {
                stack.push(p);
            } else if !name.starts_with("LICENSE")
                && !name.starts_with("README")
                && (ext.is_empty() || name.ends_with(ext))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
