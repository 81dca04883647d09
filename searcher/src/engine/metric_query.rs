//! Step 8 for a metric query: evaluate the expression tree over the
//! store. Range functions scan their candidates once and drop each
//! matching line into the windows that hold it; the maths on the
//! resulting series lives in [`super::metric`]. The series limit is
//! enforced here, where a range over too many series can stop early.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::metric::{
    absent, aggregate, binary, constant, group_key, label_replace, sample, sample_series, Grid,
    Matrix, Operand, RangeSums, Samples,
};
use super::prune::raw_bytes;
use super::scan::Scan;
use super::{Engine, SearchError, Stats};
use crate::logql::eval::{Labels, LinePipeline};
use crate::logql::label_names;
use crate::logql::{AggOp, Grouping, LogQuery, MatchOp, MetricExpr, RangeFn, UnwrapFn};

impl Engine {
    /// A metric query evaluated at `start + k * step` for every k with the
    /// time at or before `end`.
    pub async fn metric(
        &self,
        tenant: &str,
        expr: &MetricExpr,
        start: i64,
        end: i64,
        step: i64,
        prune: bool,
    ) -> Result<(Matrix, Stats), SearchError> {
        let mut stats = Stats::default();
        let grid = Grid::new(start, end, step);
        let cap = self.cfg.max_series;
        let m = self
            .eval_metric(tenant, expr, grid, prune, Some(cap), None, &mut stats)
            .await?;
        if m.values().filter(|p| !p.is_empty()).count() > cap {
            return Err(SearchError::Series { limit: cap });
        }
        Ok((m, stats))
    }

    /// `cap`, when set, bounds the series of this sub-expression's result,
    /// so a range over too many series stops early. Under an aggregation
    /// it is `None`: the inner series may be many when the result is few,
    /// and only the final result is limited, as in Loki.
    ///
    /// `push` is the grouping of a `sum` right above a range function whose
    /// sums add up (see [`pushes_down`]): the range then keeps one series
    /// per group rather than one per label set, as Loki does. The answer is
    /// the same; `sum by (level) (count_over_time({…} | json [5m]))` over
    /// lines with unique ids no longer holds a series per line.
    #[allow(clippy::too_many_arguments)]
    async fn eval_metric(
        &self,
        tenant: &str,
        expr: &MetricExpr,
        grid: Grid,
        prune: bool,
        cap: Option<usize>,
        push: Option<&Grouping>,
        stats: &mut Stats,
    ) -> Result<Matrix, SearchError> {
        match expr {
            MetricExpr::Const(v) | MetricExpr::Vector(v) => Ok(constant(grid, *v)),
            MetricExpr::Binary {
                op,
                lhs,
                rhs,
                return_bool,
                matching,
            } => {
                let (l, r) = (
                    Box::pin(self.eval_metric(tenant, lhs, grid, prune, cap, None, stats)).await?,
                    Box::pin(self.eval_metric(tenant, rhs, grid, prune, cap, None, stats)).await?,
                );
                let operand = |e: &MetricExpr, m| {
                    if e.is_scalar() {
                        Operand::Constant(m)
                    } else {
                        Operand::Series(m)
                    }
                };
                binary(
                    *op,
                    *return_bool,
                    matching,
                    operand(lhs, l),
                    operand(rhs, r),
                )
                .map_err(SearchError::Matching)
            }
            MetricExpr::Agg {
                op,
                grouping,
                inner,
            } => {
                // `sum(…)` without `by` groups everything into one.
                let all = Grouping {
                    without: false,
                    labels: Vec::new(),
                };
                let push = (*op == AggOp::Sum && pushes_down(inner))
                    .then(|| grouping.as_ref().unwrap_or(&all));
                let m = Box::pin(self.eval_metric(tenant, inner, grid, prune, None, push, stats))
                    .await?;
                Ok(aggregate(*op, grouping.as_ref(), m))
            }
            MetricExpr::Range {
                func,
                query,
                range_ns,
                offset_ns,
            } => {
                let grid = grid.offset(*offset_ns);
                // A `by` pushed down: the only labels a series keeps, sorted.
                let by = push.and_then(by_names);
                // The sums, and the first series marked `__error__`.
                let mut acc = (RangeSums::new(cap), None);
                let each = |acc: &mut (RangeSums, Option<Arc<Labels>>),
                            p: &LinePipeline,
                            ts: i64,
                            labels: &Arc<Labels>,
                            extracted: &Labels,
                            line: &str| {
                    if let Some(steps) = grid.windows_holding(ts, *range_ns) {
                        if acc.1.is_none() && p.has_error(labels, extracted) {
                            acc.1 = Some(p.result_labels(labels, extracted));
                        }
                        let series = match (push, &by) {
                            (_, Some(names)) => Arc::new(p.grouped(labels, extracted, names)),
                            (Some(g), None) => {
                                Arc::new(group_key(&p.result_labels(labels, extracted), Some(g)))
                            }
                            (None, None) => p.result_labels(labels, extracted),
                        };
                        acc.0.add(series, steps, sample(*func, line));
                    }
                };
                let check = |acc: &(RangeSums, Option<Arc<Labels>>)| match (acc.0.over_cap(), cap) {
                    (true, Some(limit)) => Err(SearchError::Series { limit }),
                    _ => acc.1.as_deref().map_or(Ok(()), |s| Err(pipeline_error(s))),
                };
                // Absence needs no label of the line: Loki never parses
                // it for `absent_over_time` (only filters read fields).
                let wanted = match func {
                    RangeFn::AbsentOverTime => Some(BTreeSet::new()),
                    _ => push.and_then(wanted_labels),
                };
                self.scan_range(
                    tenant, query, grid, *range_ns, prune, stats, wanted, &mut acc, each, check,
                )
                .await?;
                let sums = acc.0;
                let m = sums.finish(*func, *range_ns);
                if *func != RangeFn::AbsentOverTime {
                    return Ok(m);
                }
                // Labelled by the selector's equality matchers, as in Loki.
                let mut labels: Labels = query
                    .matchers
                    .iter()
                    .filter(|m| m.op == MatchOp::Eq)
                    .map(|m| (m.name.clone(), m.value.clone()))
                    .collect();
                labels.sort();
                labels.dedup_by(|a, b| a.0 == b.0);
                Ok(absent(&m, grid.steps, labels))
            }
            MetricExpr::LabelReplace {
                inner,
                dst,
                replacement,
                src,
                re,
            } => {
                let m = Box::pin(self.eval_metric(tenant, inner, grid, prune, cap, None, stats))
                    .await?;
                label_replace(m, dst, replacement, src, re).map_err(SearchError::Matching)
            }
            MetricExpr::Unwrapped {
                func,
                query,
                unwrap,
                range_ns,
                offset_ns,
                grouping,
            } => {
                let grid = grid.offset(*offset_ns);
                let max_samples = self.cfg.max_samples;
                let by = grouping.as_ref().or(push).and_then(by_names);
                // The samples, and the first series marked `__error__`.
                let mut acc = (Samples::new(cap, max_samples), None);
                let each = |acc: &mut (Samples, Option<Arc<Labels>>),
                            p: &LinePipeline,
                            ts: i64,
                            labels: &Arc<Labels>,
                            extracted: &Labels,
                            _: &str| {
                    if grid.windows_holding(ts, *range_ns).is_none() {
                        return;
                    }
                    let g = grouping.as_ref().or(push);
                    let mut added = Labels::new();
                    let Some(value) = p.unwrapped(unwrap, labels, extracted, &mut added) else {
                        return;
                    };
                    // The common case: the value read, and a `by` names
                    // every label the sample keeps.
                    if let (Some(names), true) = (&by, added.is_empty()) {
                        if acc.1.is_none() && p.has_error(labels, extracted) {
                            acc.1 = Some(p.result_labels(labels, extracted));
                        }
                        acc.0.add(p.grouped(labels, extracted, names), ts, value);
                        return;
                    }
                    let mut all = extracted.clone();
                    all.append(&mut added);
                    let series = p.result_labels(labels, &all);
                    if acc.1.is_none() && has_error(&series) {
                        acc.1 = Some(series.clone());
                    }
                    acc.0
                        .add(sample_series(&series, &unwrap.label, g), ts, value);
                };
                let check = |acc: &(Samples, Option<Arc<Labels>>)| match (acc.0.over_series(), cap)
                {
                    (true, Some(limit)) => Err(SearchError::Series { limit }),
                    _ if acc.0.over_samples() => Err(SearchError::Samples { limit: max_samples }),
                    _ => acc.1.as_deref().map_or(Ok(()), |s| Err(pipeline_error(s))),
                };
                let wanted = grouping
                    .as_ref()
                    .or(push)
                    .and_then(wanted_labels)
                    .map(|mut w| {
                        w.insert(unwrap.label.clone());
                        for f in &unwrap.post_filters {
                            label_names(f, &mut w);
                        }
                        w
                    });
                self.scan_range(
                    tenant, query, grid, *range_ns, prune, stats, wanted, &mut acc, each, check,
                )
                .await?;
                let samples = acc.0;
                Ok(samples.finish(*func, grid, *range_ns))
            }
        }
    }

    /// Scans every line a range function over `query` and `range_ns` sees
    /// on `grid`, once: `each` drops a matching line into `acc`, and
    /// `check` may stop the query after each chunk of blocks. `wanted`,
    /// when known, names the only labels the answer reads.
    #[allow(clippy::too_many_arguments)]
    async fn scan_range<A: Send>(
        &self,
        tenant: &str,
        query: &LogQuery,
        grid: Grid,
        range_ns: i64,
        prune: bool,
        stats: &mut Stats,
        wanted: Option<BTreeSet<String>>,
        acc: &mut A,
        each: impl Fn(&mut A, &LinePipeline, i64, &Arc<Labels>, &Labels, &str) + Send + Sync,
        check: impl Fn(&A) -> Result<(), SearchError>,
    ) -> Result<(), SearchError> {
        let range = grid.lookback(range_ns);
        let cands = self.candidates(tenant, range, query, prune, stats).await?;
        // A metric query scans every candidate: refuse before fetching any.
        self.charge(stats, raw_bytes(&cands))?;
        let pipeline = match &wanted {
            Some(w) => LinePipeline::wanting(query, w),
            None => LinePipeline::new(query),
        };
        let scan = Scan {
            tenant,
            range,
            query,
            pipeline: &pipeline,
        };
        for chunk in cands.chunks(self.cfg.fetch_concurrency.max(1)) {
            self.scan_chunk(chunk, &scan, stats, &mut |ts, labels, extracted, line| {
                each(acc, &pipeline, ts, labels, extracted, line)
            })
            .await?;
            check(acc)?;
        }
        Ok(())
    }
}

/// Loki refuses to make samples of lines marked `__error__` (a parser
/// failed, a value did not read) unless a filter drops them or `| drop
/// __error__` removes the mark: the query fails, naming the series.
fn pipeline_error(series: &Labels) -> SearchError {
    let error = series.iter().find(|(k, _)| k == "__error__");
    let pairs: Vec<String> = series.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    SearchError::Pipeline {
        error: error.map(|(_, v)| v.clone()).unwrap_or_default(),
        series: format!("{{{}}}", pairs.join(", ")),
    }
}

/// Whether a `sum` over `inner` may group inside it: Loki's
/// `canInjectVectorGrouping`, for the range functions whose per-group
/// result is the sum of their per-series results (counts, bytes, rates,
/// `sum_over_time`), when the range has no grouping of its own.
fn pushes_down(inner: &MetricExpr) -> bool {
    match inner {
        MetricExpr::Range { func, .. } => *func != RangeFn::AbsentOverTime,
        MetricExpr::Unwrapped { func, grouping, .. } => {
            grouping.is_none() && matches!(func, UnwrapFn::Sum | UnwrapFn::Rate)
        }
        _ => false,
    }
}

/// The labels a `by` grouping keeps: all a series needs of its lines.
/// `without` keeps all but some, so every label is needed.
fn wanted_labels(g: &Grouping) -> Option<BTreeSet<String>> {
    (!g.without).then(|| g.labels.iter().cloned().collect())
}

/// A `by` grouping's labels, sorted as a label set is; `None` for
/// `without`.
fn by_names(g: &Grouping) -> Option<Vec<String>> {
    Some(wanted_labels(g)?.into_iter().collect())
}

fn has_error(series: &Labels) -> bool {
    series.iter().any(|(k, _)| k == "__error__")
}
