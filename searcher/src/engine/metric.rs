//! The maths of LogQL metric queries, kept pure (no store, no engine, no
//! async) so each rule can be tested with numbers worked out by hand:
//! the evaluation grid and range windows, `count_over_time`, `rate`,
//! `bytes_over_time` and `bytes_rate`, aggregation with `by`/`without`,
//! and `topk`; `binary` holds the operators between scalars and vectors,
//! `unwrapped` the range functions over unwrapped values. `metric_query` feeds it the
//! lines a scan matched. (The searcher's own Prometheus metrics are
//! `crate::metrics`, unrelated.)

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::RangeInclusive;
use std::sync::Arc;

use super::TimeRange;
use crate::logql::eval::Labels;
use crate::logql::{AggOp, Grouping, RangeFn};

/// A metric result: series labels to (step index, value).
pub type Matrix = BTreeMap<Labels, BTreeMap<usize, f64>>;

/// Evaluation times of a metric query: `start + k * step`, `k < steps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Grid {
    pub(super) start: i64,
    pub(super) step: i64,
    pub(super) steps: usize,
}

impl Grid {
    /// Every `start + k * step` at or before `end`, and always `start`.
    pub(super) fn new(start: i64, end: i64, step: i64) -> Grid {
        let steps = (end.saturating_sub(start) / step.max(1)).max(0) as usize + 1;
        Grid { start, step, steps }
    }

    /// The grid `offset_ns` earlier (`offset 1h`): step k's windows end
    /// at `start + k * step - offset`, and its points stay at step k.
    pub(super) fn offset(self, offset_ns: i64) -> Grid {
        Grid {
            start: self.start.saturating_sub(offset_ns),
            ..self
        }
    }

    /// The records a range function over `range_ns` can see: from one
    /// range before the first step to the last step, inclusive.
    pub(super) fn lookback(&self, range_ns: i64) -> TimeRange {
        let last_t = self
            .start
            .saturating_add((self.steps as i64 - 1).saturating_mul(self.step));
        TimeRange {
            start: self.start.saturating_sub(range_ns),
            end: last_t.saturating_add(1),
        }
    }

    /// The steps whose window `(t - range_ns, t]` holds `ts`: those with
    /// `t` in `[ts, ts + range_ns)`, or `None`. Wide arithmetic: times
    /// and steps come from the request.
    pub(super) fn windows_holding(&self, ts: i64, range_ns: i64) -> Option<RangeInclusive<usize>> {
        let (start, step, range) = (self.start as i128, self.step as i128, range_ns as i128);
        let ts = ts as i128;
        let lo = (ts - start + step - 1).div_euclid(step).max(0);
        let hi = (ts + range - 1 - start)
            .div_euclid(step)
            .min(self.steps as i128 - 1);
        (lo <= hi).then_some(lo as usize..=hi as usize)
    }
}

/// What one matching line adds to a range function's windows: 1 for the
/// counting functions, its length in bytes for the byte functions.
pub(super) fn sample(func: RangeFn, line: &str) -> f64 {
    match func {
        RangeFn::CountOverTime | RangeFn::Rate | RangeFn::AbsentOverTime => 1.0,
        RangeFn::BytesOverTime | RangeFn::BytesRate => line.len() as f64,
    }
}

/// The running sums of a range function, per series and step. `cap`,
/// when set, bounds the series: a line of a new series past it is
/// dropped and [`over_cap`](Self::over_cap) is set, so the query can stop.
pub(super) struct RangeSums {
    sums: HashMap<Arc<Labels>, BTreeMap<usize, f64>>,
    cap: Option<usize>,
    over_cap: bool,
}

impl RangeSums {
    pub(super) fn new(cap: Option<usize>) -> Self {
        RangeSums {
            sums: HashMap::new(),
            cap,
            over_cap: false,
        }
    }

    /// Adds `value` to `series` at each of `steps`.
    pub(super) fn add(&mut self, series: Arc<Labels>, steps: RangeInclusive<usize>, value: f64) {
        if self.cap.is_some_and(|c| self.sums.len() >= c) && !self.sums.contains_key(&series) {
            self.over_cap = true;
            return;
        }
        let points = self.sums.entry(series).or_default();
        for k in steps {
            *points.entry(k).or_default() += value;
        }
    }

    /// Whether a line of a series past the cap was dropped.
    pub(super) fn over_cap(&self) -> bool {
        self.over_cap
    }

    /// The result: the sums, or for `rate` and `bytes_rate` the sums per
    /// second of the range.
    pub(super) fn finish(self, func: RangeFn, range_ns: i64) -> Matrix {
        let secs = range_ns as f64 / 1e9;
        let per_sec = matches!(func, RangeFn::Rate | RangeFn::BytesRate);
        self.sums
            .into_iter()
            .map(|(k, mut v)| {
                if per_sec {
                    v.values_mut().for_each(|x| *x /= secs);
                }
                ((*k).clone(), v)
            })
            .collect()
    }
}

/// `absent_over_time`: 1 at each of the `steps` where no series of
/// `present` has a point, as one series labelled `labels`.
pub(super) fn absent(present: &Matrix, steps: usize, labels: Labels) -> Matrix {
    let seen: BTreeSet<usize> = present.values().flat_map(|p| p.keys().copied()).collect();
    let points: BTreeMap<usize, f64> = (0..steps)
        .filter(|k| !seen.contains(k))
        .map(|k| (k, 1.0))
        .collect();
    if points.is_empty() {
        return Matrix::new();
    }
    Matrix::from([(labels, points)])
}

/// `label_replace`: each series whose `src` (empty if missing) the
/// anchored `re` matches gets `dst` set to `replacement` expanded (`$1`,
/// `${name}`), or removed if that is empty. Two series that end with the
/// same labels and a point at the same step are an error, as in PromQL.
pub(super) fn label_replace(
    m: Matrix,
    dst: &str,
    replacement: &str,
    src: &str,
    re: &regex::Regex,
) -> Result<Matrix, String> {
    let mut out = Matrix::new();
    for (mut labels, points) in m {
        let value = labels
            .iter()
            .find(|(k, _)| k == src)
            .map_or("", |(_, v)| v.as_str())
            .to_owned();
        if let Some(caps) = re.captures(&value) {
            let mut new = String::new();
            caps.expand(replacement, &mut new);
            labels.retain(|(k, _)| k != dst);
            if !new.is_empty() {
                labels.push((dst.to_owned(), new));
                labels.sort();
            }
        }
        let series = out.entry(labels).or_default();
        for (k, v) in points {
            if series.insert(k, v).is_some() {
                return Err(
                    "label_replace: vector cannot contain metrics with the same labelset".into(),
                );
            }
        }
    }
    Ok(out)
}

/// `vector(v)` or a bare number: one series without labels, `v` at every step.
pub(super) fn constant(grid: Grid, v: f64) -> Matrix {
    let mut m = Matrix::new();
    m.insert(Vec::new(), (0..grid.steps).map(|k| (k, v)).collect());
    m
}

/// The labels a series is grouped by: those `by` names, all but those
/// `without` names, or none without a grouping.
pub(in crate::engine) fn group_key(labels: &Labels, g: Option<&Grouping>) -> Labels {
    match g {
        None => Vec::new(),
        Some(g) if g.without => labels
            .iter()
            .filter(|(k, _)| !g.labels.contains(k))
            .cloned()
            .collect(),
        Some(g) => labels
            .iter()
            .filter(|(k, _)| g.labels.contains(k))
            .cloned()
            .collect(),
    }
}

/// Running aggregates of one group at one step; `mean` and `m2` are
/// Welford's, for the variance.
#[derive(Debug, Clone, Copy)]
struct Moments {
    sum: f64,
    n: f64,
    min: f64,
    max: f64,
    mean: f64,
    m2: f64,
}

/// `op by/without (...) (m)`. Each group's value at a step folds the
/// members that have a point there; `stddev` and `stdvar` are the
/// population's, as in PromQL; `topk` (`bottomk`) keeps, per step and
/// group, the `k` largest (smallest) members with their own labels (ties
/// to the lesser labels).
pub(super) fn aggregate(op: AggOp, g: Option<&Grouping>, m: Matrix) -> Matrix {
    if let AggOp::Sort | AggOp::SortDesc = op {
        return m;
    }
    if let AggOp::Topk(k) | AggOp::Bottomk(k) | AggOp::ApproxTopk(k) = op {
        let largest = !matches!(op, AggOp::Bottomk(_));
        // Per step, keep the k largest (smallest) series of each group.
        let mut out = Matrix::new();
        let steps: BTreeSet<usize> = m.values().flat_map(|p| p.keys().copied()).collect();
        for step in steps {
            let mut groups: BTreeMap<Labels, Vec<(&Labels, f64)>> = BTreeMap::new();
            for (labels, pts) in &m {
                if let Some(v) = pts.get(&step) {
                    groups
                        .entry(group_key(labels, g))
                        .or_default()
                        .push((labels, *v));
                }
            }
            for (_, mut members) in groups {
                members.sort_by(|a, b| {
                    let by_value = if largest {
                        b.1.total_cmp(&a.1)
                    } else {
                        a.1.total_cmp(&b.1)
                    };
                    by_value.then_with(|| a.0.cmp(b.0))
                });
                for (labels, v) in members.into_iter().take(k) {
                    out.entry(labels.clone()).or_default().insert(step, v);
                }
            }
        }
        return out;
    }
    let mut acc: BTreeMap<Labels, BTreeMap<usize, Moments>> = BTreeMap::new();
    for (labels, pts) in m {
        let key = group_key(&labels, g);
        let series = acc.entry(key).or_default();
        for (k, v) in pts {
            let e = series.entry(k).or_insert(Moments {
                sum: 0.0,
                n: 0.0,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                mean: 0.0,
                m2: 0.0,
            });
            e.sum += v;
            e.n += 1.0;
            e.min = e.min.min(v);
            e.max = e.max.max(v);
            let delta = v - e.mean;
            e.mean += delta / e.n;
            e.m2 += delta * (v - e.mean);
        }
    }
    acc.into_iter()
        .map(|(labels, pts)| {
            let pts = pts
                .into_iter()
                .map(|(k, m)| {
                    let v = match op {
                        AggOp::Sum => m.sum,
                        AggOp::Count => m.n,
                        AggOp::Min => m.min,
                        AggOp::Max => m.max,
                        AggOp::Avg => m.sum / m.n,
                        AggOp::Stdvar => m.m2 / m.n,
                        AggOp::Stddev => (m.m2 / m.n).sqrt(),
                        AggOp::Topk(_)
                        | AggOp::Bottomk(_)
                        | AggOp::ApproxTopk(_)
                        | AggOp::Sort
                        | AggOp::SortDesc => m.sum,
                    };
                    (k, v)
                })
                .collect();
            (labels, pts)
        })
        .collect()
}

mod binary;
mod unwrapped;

pub(super) use binary::{binary, Operand};
pub(super) use unwrapped::{sample_series, Samples};

#[cfg(test)]
mod tests;
