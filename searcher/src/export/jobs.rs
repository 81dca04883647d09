//! Export jobs started over HTTP (`POST /skidder/api/v1/exports`): each runs
//! in the background, at most `max_jobs` at once, and reports its progress
//! until it ends. A job writes under `<export url>/<tenant>/<job id>/`,
//! never where a request says, so a client cannot make the searcher write
//! into another tenant's data or another bucket.
//!
//! Jobs live in the searcher's memory: a restarted searcher forgets them,
//! and an export it was running is left without a manifest, which marks it
//! unfinished. Only the newest `KEPT` jobs are remembered.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use skidder_common::storage::{open_store, S3Config, StoreUrl};
use tokio::sync::Semaphore;

use super::{export, ExportManifest, ExportRequest, Progress};
use crate::engine::{Engine, TimeRange};

/// Jobs remembered, finished or not; the oldest finished one is forgotten
/// first.
const KEPT: usize = 256;
/// Jobs waiting or running at once; more are refused (429).
const MAX_UNFINISHED: usize = 32;

/// Where and how jobs write: `[export]` in the searcher's config.
#[derive(Debug, Clone)]
pub struct ExportTarget {
    /// `s3://bucket/prefix` or `file:///path`.
    pub url: String,
    pub s3: S3Config,
    pub part_bytes: usize,
    pub max_jobs: usize,
}

#[derive(Debug, Clone)]
enum State {
    Queued,
    Running,
    Done(Box<ExportManifest>),
    Failed(String),
}

pub struct Job {
    pub id: String,
    pub tenant: String,
    pub query: String,
    pub range: TimeRange,
    pub destination: String,
    created_at: String,
    progress: Progress,
    state: Mutex<State>,
}

impl Job {
    fn set(&self, s: State) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }

    fn state(&self) -> State {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn finished(&self) -> bool {
        matches!(self.state(), State::Done(_) | State::Failed(_))
    }

    /// The job as the API shows it.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "query": self.query,
            "start": self.range.start.to_string(),
            "end": self.range.end.to_string(),
            "destination": self.destination,
            "created_at": self.created_at,
            "progress": self.progress.snapshot(),
        });
        let (status, extra) = match self.state() {
            State::Queued => ("queued", None),
            State::Running => ("running", None),
            State::Done(m) => (
                "done",
                Some(json!({
                    "lines": m.lines,
                    "parts": m.parts.len(),
                    "finished_at": m.finished_at,
                    "warnings": m.warnings,
                })),
            ),
            State::Failed(e) => ("failed", Some(json!({ "error": e }))),
        };
        v["status"] = json!(status);
        if let Some(Value::Object(extra)) = extra {
            for (k, x) in extra {
                v[k] = x;
            }
        }
        v
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("exports are off: set [export] url in the searcher's config")]
    Off,
    #[error("{0} exports are waiting or running; try again later")]
    Busy(usize),
    #[error("invalid export url {0:?}: {1}")]
    Url(String, String),
}

/// The searcher's export jobs.
pub struct Jobs {
    target: Option<ExportTarget>,
    jobs: Mutex<VecDeque<Arc<Job>>>,
    running: Arc<Semaphore>,
}

impl Jobs {
    pub fn new(target: Option<ExportTarget>) -> Self {
        let max = target.as_ref().map_or(1, |t| t.max_jobs.max(1));
        Jobs {
            target,
            jobs: Mutex::new(VecDeque::new()),
            running: Arc::new(Semaphore::new(max)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Job>>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts exporting `query` over `range` for `tenant`, in the
    /// background. The query must already have been checked to be a log
    /// query.
    pub fn start(
        &self,
        engine: Arc<Engine>,
        tenant: &str,
        query: &str,
        range: TimeRange,
    ) -> Result<Arc<Job>, JobError> {
        let target = self.target.clone().ok_or(JobError::Off)?;
        let id = format!("{:016x}", rand::random::<u64>());
        let destination = format!("{}/{tenant}/{id}", target.url.trim_end_matches('/'));
        let url: StoreUrl = destination
            .parse()
            .map_err(|e| JobError::Url(destination.clone(), e))?;
        let job = Arc::new(Job {
            id,
            tenant: tenant.to_owned(),
            query: query.to_owned(),
            range,
            destination,
            created_at: crate::time::rfc3339(
                skidder_common::format::layout::now_ns(),
                chrono::SecondsFormat::Millis,
            ),
            progress: Progress::default(),
            state: Mutex::new(State::Queued),
        });
        {
            let mut jobs = self.lock();
            let unfinished = jobs.iter().filter(|j| !j.finished()).count();
            if unfinished >= MAX_UNFINISHED {
                return Err(JobError::Busy(unfinished));
            }
            jobs.push_back(job.clone());
            while jobs.len() > KEPT {
                match jobs.iter().position(|j| j.finished()) {
                    Some(i) => drop(jobs.remove(i)),
                    None => break,
                }
            }
        }
        let running = self.running.clone();
        let j = job.clone();
        tokio::spawn(async move {
            let Ok(_permit) = running.acquire_owned().await else {
                return;
            };
            j.set(State::Running);
            let metrics = engine.metrics().clone();
            let req = ExportRequest {
                tenant: j.tenant.clone(),
                query: j.query.clone(),
                range: j.range,
                part_bytes: target.part_bytes,
            };
            let result = match open_store(&url, &target.s3).await {
                Ok(dest) => export(&engine, &metrics, &*dest, &req, &j.progress)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(format!("opening {}: {e}", j.destination)),
            };
            match result {
                Ok(m) => {
                    metrics.exports.with_label_values(&["ok"]).inc();
                    tracing::info!(id = %j.id, lines = m.lines, parts = m.parts.len(), "export done");
                    j.set(State::Done(Box::new(m)));
                }
                Err(e) => {
                    metrics.exports.with_label_values(&["failed"]).inc();
                    tracing::warn!(id = %j.id, error = %e, "export failed");
                    j.set(State::Failed(e));
                }
            }
        });
        Ok(job)
    }

    /// The tenant's job `id`; another tenant's job is not found.
    pub fn get(&self, tenant: &str, id: &str) -> Option<Arc<Job>> {
        self.lock()
            .iter()
            .find(|j| j.id == id && j.tenant == tenant)
            .cloned()
    }

    /// The tenant's jobs, oldest first.
    pub fn list(&self, tenant: &str) -> Vec<Arc<Job>> {
        self.lock()
            .iter()
            .filter(|j| j.tenant == tenant)
            .cloned()
            .collect()
    }
}
