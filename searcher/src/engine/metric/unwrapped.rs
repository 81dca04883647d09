//! Range functions over unwrapped values (`sum_over_time`, …,
//! `quantile_over_time`), kept pure like the rest of `metric`. Unlike the
//! counting functions, whose sums each line adds to every window holding
//! it, these need each window's own values (a quantile, the first and the
//! last), so the samples of each series are kept, sorted by time, and
//! every step reads the slice `(t - range, t]` of them.

use std::collections::HashMap;

use super::{group_key, Grid, Matrix};
use crate::logql::eval::Labels;
use crate::logql::{Grouping, UnwrapFn};

/// The series a sample belongs to: the line's labels without the
/// unwrapped one; with `by`, the listed labels (the unwrapped one too if
/// listed); with `without`, all but those listed and the unwrapped one.
/// As Loki groups a range aggregation.
pub(in crate::engine) fn sample_series(
    labels: &Labels,
    unwrapped: &str,
    grouping: Option<&Grouping>,
) -> Labels {
    match grouping {
        Some(g) if !g.without => group_key(labels, Some(g)),
        _ => labels
            .iter()
            .filter(|(k, _)| k != unwrapped && !grouping.is_some_and(|g| g.labels.contains(k)))
            .cloned()
            .collect(),
    }
}

/// The samples of a query, by series. `max_series` bounds the series and
/// `max_samples` the values kept; past either the query must stop.
pub(in crate::engine) struct Samples {
    series: HashMap<Labels, Vec<(i64, f64)>>,
    max_series: Option<usize>,
    max_samples: usize,
    kept: usize,
    over_series: bool,
    over_samples: bool,
}

impl Samples {
    pub(in crate::engine) fn new(max_series: Option<usize>, max_samples: usize) -> Self {
        Samples {
            series: HashMap::new(),
            max_series,
            max_samples,
            kept: 0,
            over_series: false,
            over_samples: false,
        }
    }

    pub(in crate::engine) fn add(&mut self, series: Labels, ts: i64, value: f64) {
        if self.kept >= self.max_samples {
            self.over_samples = true;
            return;
        }
        if self.max_series.is_some_and(|c| self.series.len() >= c)
            && !self.series.contains_key(&series)
        {
            self.over_series = true;
            return;
        }
        self.series.entry(series).or_default().push((ts, value));
        self.kept += 1;
    }

    pub(in crate::engine) fn over_series(&self) -> bool {
        self.over_series
    }

    pub(in crate::engine) fn over_samples(&self) -> bool {
        self.over_samples
    }

    /// Each series' value at each step whose window `(t - range, t]`
    /// holds samples; a step without any has no point, as in Loki.
    pub(in crate::engine) fn finish(self, func: UnwrapFn, grid: Grid, range_ns: i64) -> Matrix {
        let mut m = Matrix::new();
        for (labels, mut samples) in self.series {
            // Stable: samples of one time keep the order they were read in.
            samples.sort_by_key(|s| s.0);
            // Times and values apart, so each window is a slice of values.
            let (times, values): (Vec<i64>, Vec<f64>) = samples.into_iter().unzip();
            let mut points = std::collections::BTreeMap::new();
            for k in 0..grid.steps {
                let t = grid
                    .start
                    .saturating_add((k as i64).saturating_mul(grid.step));
                let from = t.saturating_sub(range_ns);
                let lo = times.partition_point(|&ts| ts <= from);
                let hi = times.partition_point(|&ts| ts <= t);
                if lo < hi {
                    let value = match func {
                        UnwrapFn::RateCounter => {
                            rate_counter(&times[lo..hi], &values[lo..hi], range_ns)
                        }
                        _ => over(func, &values[lo..hi], range_ns),
                    };
                    points.insert(k, value);
                }
            }
            if !points.is_empty() {
                m.insert(labels, points);
            }
        }
        m
    }
}

/// `func` over one window's values, in time order (never empty).
pub(in crate::engine) fn over(func: UnwrapFn, values: &[f64], range_ns: i64) -> f64 {
    let n = values.len() as f64;
    let sum = || values.iter().sum::<f64>();
    let variance = || {
        let mean = sum() / n;
        values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n
    };
    match func {
        UnwrapFn::Sum => sum(),
        UnwrapFn::Avg => sum() / n,
        UnwrapFn::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
        UnwrapFn::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        UnwrapFn::Stdvar => variance(),
        UnwrapFn::Stddev => variance().sqrt(),
        UnwrapFn::Quantile(q) => quantile(q, values),
        UnwrapFn::First => values[0],
        UnwrapFn::Last => values[values.len() - 1],
        UnwrapFn::Rate => sum() / (range_ns as f64 / 1e9),
        // Needs the times too: see `rate_counter`.
        UnwrapFn::RateCounter => f64::NAN,
    }
}

/// `rate_counter`: Loki's `extrapolatedRate(samples, range, isCounter,
/// isRate)`, which follows Prometheus's `rate` with one difference Loki
/// keeps: the window is taken to start `range` before the first sample
/// and to end at the last, so the start is extrapolated (by at most half
/// the average gap, or to where the counter would be zero) and the end
/// never is. Times are in milliseconds, as Loki's points are. Fewer than
/// two samples give 0.
pub(in crate::engine) fn rate_counter(times_ns: &[i64], values: &[f64], range_ns: i64) -> f64 {
    let n = values.len();
    if n < 2 {
        return 0.0;
    }
    let ms = |t: i64| t.div_euclid(1_000_000);
    let (first_t, last_t) = (ms(times_ns[0]), ms(times_ns[n - 1]));
    let range_ms = range_ns / 1_000_000;
    let (first, last) = (values[0], values[n - 1]);
    // A drop is a reset: the value before it was counted up to then.
    let mut increase = last - first;
    let mut previous = 0.0;
    for &v in values {
        if v < previous {
            increase += previous;
        }
        previous = v;
    }
    let mut to_start = range_ms as f64 / 1000.0;
    let to_end = 0.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let average_gap = sampled / (n - 1) as f64;
    if increase > 0.0 && first >= 0.0 {
        to_start = to_start.min(sampled * (first / increase));
    }
    let threshold = average_gap * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        average_gap / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        average_gap / 2.0
    };
    increase * (interval / sampled) / (range_ns as f64 / 1e9)
}

/// Prometheus's `quantile`: φ < 0 is -Inf, φ > 1 is +Inf; otherwise the
/// values sorted and interpolated linearly at rank φ·(n-1).
fn quantile(q: f64, values: &[f64]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = q * (sorted.len() - 1) as f64;
    let lower = rank.floor() as usize;
    let upper = (lower + 1).min(sorted.len() - 1);
    let weight = rank - rank.floor();
    sorted[lower] * (1.0 - weight) + sorted[upper] * weight
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn series_drop_the_unwrapped_label_unless_grouped_by_it() {
        let labels = l(&[("app", "a"), ("ms", "5"), ("pod", "p")]);
        let g = |without: bool, names: &[&str]| Grouping {
            without,
            labels: names.iter().map(|n| (*n).to_owned()).collect(),
        };
        assert_eq!(
            sample_series(&labels, "ms", None),
            l(&[("app", "a"), ("pod", "p")])
        );
        assert_eq!(
            sample_series(&labels, "ms", Some(&g(false, &["ms", "app"]))),
            l(&[("app", "a"), ("ms", "5")])
        );
        assert_eq!(
            sample_series(&labels, "ms", Some(&g(true, &["pod"]))),
            l(&[("app", "a")])
        );
    }

    /// Worked by hand from Loki's `extrapolatedRate` (range 60 s):
    /// samples 10 @ 10 s, 20 @ 20 s, 5 @ 30 s (a reset), 15 @ 40 s.
    /// Increase: 15 - 10 + 20 (the value before the reset) = 25. Sampled
    /// 30 s over 3 gaps: average 10 s, threshold 11 s. To the start: 60 s,
    /// or to zero 30·10/25 = 12 s; 12 ≥ 11, so half a gap, 5 s. To the end:
    /// 0 s. Interval 35 s: 25 · 35/30 / 60 = 0.486111…
    #[test]
    fn rate_counter_counts_resets_and_extrapolates_as_loki() {
        let s = 1_000_000_000;
        let times = [10 * s, 20 * s, 30 * s, 40 * s];
        let got = rate_counter(&times, &[10.0, 20.0, 5.0, 15.0], 60 * s);
        assert!((got - 25.0 * 35.0 / 30.0 / 60.0).abs() < 1e-12, "{got}");
        // A counter from 0: to zero is 0 s, under the threshold, so the
        // interval is 30 s and the rate 30 / 60 = 0.5.
        let got = rate_counter(&times, &[0.0, 10.0, 20.0, 30.0], 60 * s);
        assert!((got - 0.5).abs() < 1e-12, "{got}");
        assert_eq!(rate_counter(&times[..1], &[7.0], 60 * s), 0.0);
    }

    #[test]
    fn each_function_over_a_window_worked_by_hand() {
        // [4, 1, 3] in time order; sorted [1, 3, 4]; mean 8/3.
        let v = [4.0, 1.0, 3.0];
        let at = |f| over(f, &v, 2 * 1_000_000_000);
        assert_eq!(at(UnwrapFn::Sum), 8.0);
        assert_eq!(at(UnwrapFn::Min), 1.0);
        assert_eq!(at(UnwrapFn::Max), 4.0);
        assert_eq!(at(UnwrapFn::First), 4.0);
        assert_eq!(at(UnwrapFn::Last), 3.0);
        assert_eq!(at(UnwrapFn::Rate), 4.0, "8 over 2 s");
        // ((4-8/3)² + (1-8/3)² + (3-8/3)²) / 3 = (16/9 + 25/9 + 1/9) / 3 = 42/27
        assert!((at(UnwrapFn::Stdvar) - 42.0 / 27.0).abs() < 1e-12);
        // φ = 0.25: rank 0.5 between 1 and 3 → 2; φ = 0.75: rank 1.5 → 3.5.
        assert_eq!(at(UnwrapFn::Quantile(0.25)), 2.0);
        assert_eq!(at(UnwrapFn::Quantile(0.75)), 3.5);
        assert_eq!(at(UnwrapFn::Quantile(-1.0)), f64::NEG_INFINITY);
        assert_eq!(at(UnwrapFn::Quantile(2.0)), f64::INFINITY);
        assert!(at(UnwrapFn::Quantile(f64::NAN)).is_nan());
    }

    #[test]
    fn samples_stop_at_their_limits() {
        let mut s = Samples::new(Some(1), 2);
        s.add(l(&[("a", "1")]), 1, 1.0);
        s.add(l(&[("a", "2")]), 1, 1.0);
        assert!(s.over_series() && !s.over_samples());
        s.add(l(&[("a", "1")]), 2, 1.0);
        s.add(l(&[("a", "1")]), 3, 1.0);
        assert!(s.over_samples());
    }
}
