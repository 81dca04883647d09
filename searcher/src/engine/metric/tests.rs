//! Every expectation here is worked out by hand, with the arithmetic in a
//! comment beside it; none is computed by the code under test.

use super::*;
use crate::logql::{BinOp, GroupSide, VectorMatching};

/// Seconds in nanoseconds, so grids read in seconds.
const S: i64 = 1_000_000_000;

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn pts(p: &[(usize, f64)]) -> BTreeMap<usize, f64> {
    p.iter().copied().collect()
}

fn matrix(series: &[(Labels, &[(usize, f64)])]) -> Matrix {
    series.iter().map(|(l, p)| (l.clone(), pts(p))).collect()
}

fn by(names: &[&str]) -> Grouping {
    Grouping {
        without: false,
        labels: names.iter().map(|n| (*n).to_owned()).collect(),
    }
}

fn without(names: &[&str]) -> Grouping {
    Grouping {
        without: true,
        labels: names.iter().map(|n| (*n).to_owned()).collect(),
    }
}

/// Three series over two steps:
/// `{app=a,pod=1}`: 1 at step 0, 2 at step 1;
/// `{app=a,pod=2}`: 3 at step 0;
/// `{app=b,pod=1}`: 5 at step 0.
fn pods() -> Matrix {
    matrix(&[
        (l(&[("app", "a"), ("pod", "1")]), &[(0, 1.0), (1, 2.0)]),
        (l(&[("app", "a"), ("pod", "2")]), &[(0, 3.0)]),
        (l(&[("app", "b"), ("pod", "1")]), &[(0, 5.0)]),
    ])
}

/// Sums `lines` (time, line) as a range function over `range_ns` on `grid`.
fn range_fn(func: RangeFn, grid: Grid, range_ns: i64, lines: &[(i64, &str)]) -> Matrix {
    let mut sums = RangeSums::new(None);
    let series = Arc::new(l(&[("app", "a")]));
    for &(ts, line) in lines {
        if let Some(steps) = grid.windows_holding(ts, range_ns) {
            sums.add(series.clone(), steps, sample(func, line));
        }
    }
    sums.finish(func, range_ns)
}

#[test]
fn a_grid_has_a_step_for_every_time_from_start_to_end() {
    // 10, 20, 30: (35 - 10) / 10 = 2 (integer division), + 1 = 3 steps.
    assert_eq!(Grid::new(10, 35, 10).steps, 3);
    // 0, 10, 20, 30: (30 - 0) / 10 = 3, + 1 = 4; an end on a step counts.
    assert_eq!(Grid::new(0, 30, 10).steps, 4);
    // An instant query: start = end gives (0 / 1) + 1 = 1 step.
    assert_eq!(Grid::new(7, 7, 1).steps, 1);
}

#[test]
fn a_grid_whose_end_precedes_its_start_still_has_its_first_step() {
    // (10 - 50) / 10 = -4, clamped to 0, + 1 = 1 step.
    assert_eq!(Grid::new(50, 10, 10).steps, 1);
}

#[test]
fn a_range_function_reads_from_one_range_before_the_first_step_to_the_last_step() {
    let grid = Grid {
        start: 100,
        step: 10,
        steps: 3,
    };
    // start: 100 - 30 = 70; last step 100 + (3 - 1) * 10 = 120, so the
    // exclusive end is 121.
    assert_eq!(
        grid.lookback(30),
        TimeRange {
            start: 70,
            end: 121
        }
    );
}

#[test]
fn a_line_falls_in_every_window_that_ends_at_or_after_it_and_less_than_a_range_later() {
    // Steps at 100, 110, 120, 130, 140; windows (t - 25, t].
    let grid = Grid {
        start: 100,
        step: 10,
        steps: 5,
    };
    // ts = 105 is in the windows of t in [105, 130): t = 110 (k = 1) and
    // t = 120 (k = 2); 130's window (105, 130] starts just after it.
    assert_eq!(grid.windows_holding(105, 25), Some(1..=2));
}

#[test]
fn a_window_holds_its_own_end_but_not_its_start() {
    let grid = Grid {
        start: 100,
        step: 10,
        steps: 5,
    };
    // ts = 110 with range 20: t in [110, 130) = 110, 120, so k = 1..=2.
    // 110 is the end of (90, 110] and not in (110, 130].
    assert_eq!(grid.windows_holding(110, 20), Some(1..=2));
}

#[test]
fn a_line_outside_every_window_falls_in_none() {
    let grid = Grid {
        start: 100,
        step: 10,
        steps: 3,
    };
    // ts = 85, range 10: t in [85, 95), before the first step 100.
    assert_eq!(grid.windows_holding(85, 10), None);
    // ts = 125, range 10: t in [125, 135) would be 130 (k = 3), but the
    // last step is k = 2 (120).
    assert_eq!(grid.windows_holding(125, 10), None);
}

#[test]
fn windows_are_clipped_to_the_grid() {
    let grid = Grid {
        start: 100,
        step: 10,
        steps: 3,
    };
    // ts = 95, range 100: t in [95, 195) covers 100, 110, 120 and beyond;
    // only k = 0, 1, 2 exist.
    assert_eq!(grid.windows_holding(95, 100), Some(0..=2));
}

#[test]
fn window_arithmetic_cannot_overflow_at_the_ends_of_time() {
    let grid = Grid {
        start: 0,
        step: 1,
        steps: 1,
    };
    // ts = i64::MAX: the first step holding it would be k = i64::MAX, far
    // past the only step, k = 0; no panic on the way.
    assert_eq!(grid.windows_holding(i64::MAX, i64::MAX), None);
    // ts = i64::MIN with range i64::MAX: t < MIN + MAX = -1 < 0 = start.
    assert_eq!(grid.windows_holding(i64::MIN, i64::MAX), None);
}

#[test]
fn count_over_time_counts_each_line_once_in_every_window_that_holds_it() {
    // Steps at 100 s, 110 s, 120 s with 20 s windows.
    let grid = Grid::new(100 * S, 120 * S, 10 * S);
    let lines = [
        (95 * S, "a"),
        (105 * S, "b"),
        (110 * S, "c"),
        (118 * S, "d"),
    ];
    let m = range_fn(RangeFn::CountOverTime, grid, 20 * S, &lines);
    // t = 100: (80, 100] holds 95 -> 1.
    // t = 110: (90, 110] holds 95, 105, 110 -> 3.
    // t = 120: (100, 120] holds 105, 110, 118 -> 3.
    assert_eq!(
        m,
        matrix(&[(l(&[("app", "a")]), &[(0, 1.0), (1, 3.0), (2, 3.0)])])
    );
}

#[test]
fn rate_is_the_count_per_second_of_the_range() {
    let grid = Grid::new(100 * S, 120 * S, 10 * S);
    let lines = [
        (95 * S, "a"),
        (105 * S, "b"),
        (110 * S, "c"),
        (118 * S, "d"),
    ];
    let m = range_fn(RangeFn::Rate, grid, 20 * S, &lines);
    // The counts above, 1, 3, 3, over 20 s: 1 / 20 = 0.05, 3 / 20 = 0.15.
    assert_eq!(
        m,
        matrix(&[(l(&[("app", "a")]), &[(0, 0.05), (1, 0.15), (2, 0.15)])])
    );
}

#[test]
fn bytes_over_time_sums_line_lengths_in_bytes_not_characters() {
    // "é" is two bytes in UTF-8: "héllo" is 6 bytes, 5 characters.
    assert_eq!(sample(RangeFn::BytesOverTime, "héllo"), 6.0);
    assert_eq!(sample(RangeFn::CountOverTime, "héllo"), 1.0);
    let grid = Grid::new(100 * S, 120 * S, 10 * S);
    let lines = [(105 * S, "abc"), (110 * S, "héllo")];
    let m = range_fn(RangeFn::BytesOverTime, grid, 20 * S, &lines);
    // t = 100: (80, 100] holds nothing, so step 0 has no point.
    // t = 110: (90, 110] holds both: 3 + 6 = 9.
    // t = 120: (100, 120] holds both: 9.
    assert_eq!(m, matrix(&[(l(&[("app", "a")]), &[(1, 9.0), (2, 9.0)])]));
}

#[test]
fn bytes_rate_is_bytes_per_second_of_the_range() {
    let grid = Grid::new(100 * S, 120 * S, 10 * S);
    let lines = [(105 * S, "abc"), (110 * S, "héllo")];
    let m = range_fn(RangeFn::BytesRate, grid, 20 * S, &lines);
    // 9 bytes over 20 s: 9 / 20 = 0.45.
    assert_eq!(m, matrix(&[(l(&[("app", "a")]), &[(1, 0.45), (2, 0.45)])]));
}

#[test]
fn a_new_series_past_the_cap_is_dropped_while_known_ones_keep_adding_up() {
    let mut sums = RangeSums::new(Some(1));
    let (a, b) = (Arc::new(l(&[("app", "a")])), Arc::new(l(&[("app", "b")])));
    sums.add(a.clone(), 0..=0, 1.0);
    assert!(!sums.over_cap());
    sums.add(b, 0..=0, 1.0);
    assert!(sums.over_cap());
    sums.add(a, 0..=1, 1.0);
    // {app=a}: step 0: 1 + 1 = 2; step 1: 1. {app=b} was never stored.
    assert_eq!(
        sums.finish(RangeFn::CountOverTime, S),
        matrix(&[(l(&[("app", "a")]), &[(0, 2.0), (1, 1.0)])])
    );
}

#[test]
fn a_constant_has_its_value_at_every_step_and_no_labels() {
    let grid = Grid::new(0, 20, 10);
    // Steps 0, 10, 20: three points of 2.5.
    assert_eq!(
        constant(grid, 2.5),
        matrix(&[(l(&[]), &[(0, 2.5), (1, 2.5), (2, 2.5)])])
    );
}

#[test]
fn sum_by_keeps_only_the_named_labels_and_adds_the_series_that_share_them() {
    let m = aggregate(AggOp::Sum, Some(&by(&["app"])), pods());
    // {app=a}: step 0: 1 + 3 = 4; step 1: 2 (only pod 1 has a point).
    // {app=b}: step 0: 5.
    let want = matrix(&[
        (l(&[("app", "a")]), &[(0, 4.0), (1, 2.0)]),
        (l(&[("app", "b")]), &[(0, 5.0)]),
    ]);
    assert_eq!(m, want);
}

#[test]
fn sum_without_drops_the_named_labels_and_keeps_the_rest() {
    let m = aggregate(AggOp::Sum, Some(&without(&["pod"])), pods());
    // Dropping pod leaves app: the same groups as `by (app)`.
    // {app=a}: 1 + 3 = 4 and 2; {app=b}: 5.
    let want = matrix(&[
        (l(&[("app", "a")]), &[(0, 4.0), (1, 2.0)]),
        (l(&[("app", "b")]), &[(0, 5.0)]),
    ]);
    assert_eq!(m, want);
    // Without a label no series has, every series is its own group.
    assert_eq!(
        aggregate(AggOp::Sum, Some(&without(&["zone"])), pods()),
        pods()
    );
}

#[test]
fn an_aggregation_without_grouping_folds_every_series_into_one_without_labels() {
    let m = aggregate(AggOp::Sum, None, pods());
    // step 0: 1 + 3 + 5 = 9; step 1: 2.
    assert_eq!(m, matrix(&[(l(&[]), &[(0, 9.0), (1, 2.0)])]));
}

#[test]
fn count_min_max_and_avg_fold_only_the_series_with_a_point_at_the_step() {
    let one = |op| aggregate(op, None, pods());
    // step 0 has 1, 3, 5; step 1 has only 2.
    // count: 3 and 1.
    assert_eq!(
        one(AggOp::Count),
        matrix(&[(l(&[]), &[(0, 3.0), (1, 1.0)])])
    );
    // min: min(1, 3, 5) = 1 and 2.
    assert_eq!(one(AggOp::Min), matrix(&[(l(&[]), &[(0, 1.0), (1, 2.0)])]));
    // max: max(1, 3, 5) = 5 and 2.
    assert_eq!(one(AggOp::Max), matrix(&[(l(&[]), &[(0, 5.0), (1, 2.0)])]));
    // avg: (1 + 3 + 5) / 3 = 3 and 2 / 1 = 2.
    assert_eq!(one(AggOp::Avg), matrix(&[(l(&[]), &[(0, 3.0), (1, 2.0)])]));
}

#[test]
fn stddev_and_stdvar_are_the_populations() {
    let one = |op| aggregate(op, None, pods());
    // step 0 has 1, 3, 5: mean 3, ((1-3)² + 0 + (5-3)²) / 3 = 8/3;
    // step 1 has only 2: variance 0.
    let var = one(AggOp::Stdvar);
    let dev = one(AggOp::Stddev);
    let at = |m: &Matrix, k: usize| m[&l(&[])][&k];
    assert!((at(&var, 0) - 8.0 / 3.0).abs() < 1e-12);
    assert!((at(&dev, 0) - (8.0f64 / 3.0).sqrt()).abs() < 1e-12);
    assert_eq!((at(&var, 1), at(&dev, 1)), (0.0, 0.0));
}

#[test]
fn bottomk_keeps_the_k_smallest_with_ties_to_the_lesser_labels() {
    let m = aggregate(AggOp::Bottomk(1), Some(&by(&["app"])), pods());
    // step 0, app=a: pod 1 = 1 beats pod 2 = 3; app=b: only pod 1 = 5.
    // step 1, app=a: only pod 1 = 2.
    let want = matrix(&[
        (l(&[("app", "a"), ("pod", "1")]), &[(0, 1.0), (1, 2.0)]),
        (l(&[("app", "b"), ("pod", "1")]), &[(0, 5.0)]),
    ]);
    assert_eq!(m, want);
    let tied = matrix(&[
        (l(&[("pod", "2")]), &[(0, 7.0)]),
        (l(&[("pod", "1")]), &[(0, 7.0)]),
    ]);
    assert_eq!(
        aggregate(AggOp::Bottomk(1), None, tied),
        matrix(&[(l(&[("pod", "1")]), &[(0, 7.0)])])
    );
}

#[test]
fn topk_keeps_the_k_largest_series_of_each_group_at_each_step_with_their_labels() {
    let m = aggregate(AggOp::Topk(1), Some(&by(&["app"])), pods());
    // step 0, app=a: pod 1 = 1, pod 2 = 3 -> keep pod 2 (3).
    // step 0, app=b: only pod 1 = 5 -> keep it.
    // step 1, app=a: only pod 1 = 2 -> keep it.
    let want = matrix(&[
        (l(&[("app", "a"), ("pod", "1")]), &[(1, 2.0)]),
        (l(&[("app", "a"), ("pod", "2")]), &[(0, 3.0)]),
        (l(&[("app", "b"), ("pod", "1")]), &[(0, 5.0)]),
    ]);
    assert_eq!(m, want);
}

#[test]
fn topk_without_grouping_ranks_every_series_together() {
    let m = aggregate(AggOp::Topk(2), None, pods());
    // step 0: 5 (b/1) and 3 (a/2) beat 1 (a/1); step 1: only a/1 = 2.
    let want = matrix(&[
        (l(&[("app", "a"), ("pod", "1")]), &[(1, 2.0)]),
        (l(&[("app", "a"), ("pod", "2")]), &[(0, 3.0)]),
        (l(&[("app", "b"), ("pod", "1")]), &[(0, 5.0)]),
    ]);
    assert_eq!(m, want);
}

#[test]
fn approx_topk_is_the_exact_topk_over_every_series() {
    // Loki's sketch only estimates the counts; one process has them all.
    // step 0: 5 (b/1) beats 3 and 1; step 1: only a/1 = 2.
    let want = matrix(&[
        (l(&[("app", "a"), ("pod", "1")]), &[(1, 2.0)]),
        (l(&[("app", "b"), ("pod", "1")]), &[(0, 5.0)]),
    ]);
    assert_eq!(aggregate(AggOp::ApproxTopk(1), None, pods()), want);
}

#[test]
fn topk_breaks_ties_by_the_lesser_labels_so_results_are_stable() {
    let tied = matrix(&[
        (l(&[("pod", "2")]), &[(0, 7.0)]),
        (l(&[("pod", "1")]), &[(0, 7.0)]),
    ]);
    // Both are 7; "1" < "2", so pod 1 is kept.
    assert_eq!(
        aggregate(AggOp::Topk(1), None, tied),
        matrix(&[(l(&[("pod", "1")]), &[(0, 7.0)])])
    );
}

#[test]
fn a_series_and_a_constant_combine_step_by_step_keeping_the_series_labels() {
    let series = matrix(&[(l(&[("app", "a")]), &[(0, 2.0), (1, 4.0)])]);
    let ten = matrix(&[(l(&[]), &[(0, 10.0), (1, 10.0)])]);
    let m = binary(
        BinOp::Mul,
        false,
        &VectorMatching::default(),
        Operand::Series(series),
        Operand::Constant(ten),
    )
    .unwrap();
    // 2 * 10 = 20, 4 * 10 = 40.
    assert_eq!(m, matrix(&[(l(&[("app", "a")]), &[(0, 20.0), (1, 40.0)])]));
}

#[test]
fn a_constant_on_the_left_stays_on_the_left() {
    let series = matrix(&[(l(&[("app", "a")]), &[(0, 2.0), (1, 4.0)])]);
    let ten = matrix(&[(l(&[]), &[(0, 10.0), (1, 10.0)])]);
    let m = binary(
        BinOp::Sub,
        false,
        &VectorMatching::default(),
        Operand::Constant(ten),
        Operand::Series(series),
    )
    .unwrap();
    // 10 - 2 = 8 and 10 - 4 = 6 (not 2 - 10 = -8).
    assert_eq!(m, matrix(&[(l(&[("app", "a")]), &[(0, 8.0), (1, 6.0)])]));
}

#[test]
fn every_series_meets_the_constant() {
    let ten = matrix(&[(l(&[]), &[(0, 10.0), (1, 10.0)])]);
    let m = binary(
        BinOp::Add,
        false,
        &VectorMatching::default(),
        Operand::Series(pods()),
        Operand::Constant(ten),
    )
    .unwrap();
    // Each point + 10: a/1: 11, 12; a/2: 13; b/1: 15.
    let want = matrix(&[
        (l(&[("app", "a"), ("pod", "1")]), &[(0, 11.0), (1, 12.0)]),
        (l(&[("app", "a"), ("pod", "2")]), &[(0, 13.0)]),
        (l(&[("app", "b"), ("pod", "1")]), &[(0, 15.0)]),
    ]);
    assert_eq!(m, want);
}

#[test]
fn two_constants_give_one_series_without_labels() {
    let one = || matrix(&[(l(&[]), &[(0, 1.0)])]);
    // Grafana's health check, vector(1)+vector(1): 1 + 1 = 2.
    let m = binary(
        BinOp::Add,
        false,
        &VectorMatching::default(),
        Operand::Constant(one()),
        Operand::Constant(one()),
    )
    .unwrap();
    assert_eq!(m, matrix(&[(l(&[]), &[(0, 2.0)])]));
}

#[test]
fn a_step_the_constant_lacks_gives_nan() {
    let series = matrix(&[(l(&[("app", "a")]), &[(0, 2.0), (1, 4.0)])]);
    let partial = matrix(&[(l(&[]), &[(0, 10.0)])]);
    let m = binary(
        BinOp::Add,
        false,
        &VectorMatching::default(),
        Operand::Series(series),
        Operand::Constant(partial),
    )
    .unwrap();
    // step 0: 2 + 10 = 12; step 1: 4 + NaN = NaN.
    let pts = &m[&l(&[("app", "a")])];
    assert_eq!(pts[&0], 12.0);
    assert!(pts[&1].is_nan());
}

#[test]
fn division_by_zero_follows_ieee_as_prometheus_does() {
    let series = matrix(&[(l(&[]), &[(0, 1.0), (1, 0.0), (2, -1.0)])]);
    let zero = matrix(&[(l(&[]), &[(0, 0.0), (1, 0.0), (2, 0.0)])]);
    let m = binary(
        BinOp::Div,
        false,
        &VectorMatching::default(),
        Operand::Series(series),
        Operand::Constant(zero),
    )
    .unwrap();
    let pts = &m[&l(&[])];
    // 1 / 0 = +Inf, 0 / 0 = NaN, -1 / 0 = -Inf.
    assert_eq!(pts[&0], f64::INFINITY);
    assert!(pts[&1].is_nan());
    assert_eq!(pts[&2], f64::NEG_INFINITY);
}

fn on(labels: &[&str]) -> VectorMatching {
    VectorMatching {
        on: true,
        labels: labels.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
}

fn series(m: Matrix) -> Operand {
    Operand::Series(m)
}

#[test]
fn two_vectors_pair_up_by_their_labels() {
    let errors = matrix(&[
        (l(&[("app", "a")]), &[(0, 1.0), (1, 3.0)]),
        (l(&[("app", "b")]), &[(0, 2.0)]),
    ]);
    let all = matrix(&[
        (l(&[("app", "a")]), &[(0, 4.0), (1, 6.0)]),
        (l(&[("app", "c")]), &[(0, 9.0)]),
    ]);
    // Only app=a is on both sides: 1/4 and 3/6.
    let m = binary(
        BinOp::Div,
        false,
        &VectorMatching::default(),
        series(errors.clone()),
        series(all.clone()),
    )
    .unwrap();
    assert_eq!(m, matrix(&[(l(&[("app", "a")]), &[(0, 0.25), (1, 0.5)])]));
    // Comparison filters, keeping the left value: only 3 > 2.5 at step 1.
    let half = matrix(&[(l(&[("app", "a")]), &[(0, 2.5), (1, 2.5)])]);
    let m = binary(
        BinOp::Gt,
        false,
        &VectorMatching::default(),
        series(errors.clone()),
        series(half.clone()),
    )
    .unwrap();
    assert_eq!(m, matrix(&[(l(&[("app", "a")]), &[(1, 3.0)])]));
    // With bool, every pair stays as 1 or 0.
    let m = binary(
        BinOp::Gt,
        true,
        &VectorMatching::default(),
        series(errors),
        series(half),
    )
    .unwrap();
    assert_eq!(m, matrix(&[(l(&[("app", "a")]), &[(0, 0.0), (1, 1.0)])]));
}

#[test]
fn on_and_ignoring_choose_the_matching_labels_and_the_result_keeps_them() {
    let per_pod = matrix(&[(l(&[("app", "a"), ("pod", "1")]), &[(0, 6.0)])]);
    let per_app = matrix(&[(l(&[("app", "a"), ("zone", "z")]), &[(0, 2.0)])]);
    // on(app): 6 / 2 = 3, labelled app=a only.
    let m = binary(
        BinOp::Div,
        false,
        &on(&["app"]),
        series(per_pod.clone()),
        series(per_app.clone()),
    )
    .unwrap();
    assert_eq!(m, matrix(&[(l(&[("app", "a")]), &[(0, 3.0)])]));
    // ignoring(pod, zone): the same pairs, the left labels without those.
    let ignoring = VectorMatching {
        labels: vec!["pod".into(), "zone".into()],
        ..Default::default()
    };
    let m = binary(
        BinOp::Div,
        false,
        &ignoring,
        series(per_pod),
        series(per_app),
    )
    .unwrap();
    assert_eq!(m, matrix(&[(l(&[("app", "a")]), &[(0, 3.0)])]));
}

#[test]
fn group_left_matches_many_to_one_and_copies_the_included_labels() {
    let pods = matrix(&[
        (l(&[("app", "a"), ("pod", "1")]), &[(0, 2.0)]),
        (l(&[("app", "a"), ("pod", "2")]), &[(0, 6.0)]),
    ]);
    let apps = matrix(&[(l(&[("app", "a"), ("team", "t")]), &[(0, 8.0)])]);
    let m_left = VectorMatching {
        group: Some(GroupSide::Left),
        include: vec!["team".into()],
        ..on(&["app"])
    };
    // Each pod over its app's 8: 2/8 and 6/8, with the app's team.
    let m = binary(
        BinOp::Div,
        false,
        &m_left,
        series(pods.clone()),
        series(apps.clone()),
    )
    .unwrap();
    assert_eq!(
        m,
        matrix(&[
            (
                l(&[("app", "a"), ("pod", "1"), ("team", "t")]),
                &[(0, 0.25)]
            ),
            (
                l(&[("app", "a"), ("pod", "2"), ("team", "t")]),
                &[(0, 0.75)]
            ),
        ])
    );
    // group_right mirrors it: the app's 8 over each pod, 8/2 and 8/6.
    let m_right = VectorMatching {
        group: Some(GroupSide::Right),
        ..on(&["app"])
    };
    let m = binary(
        BinOp::Div,
        false,
        &m_right,
        series(apps),
        series(pods.clone()),
    )
    .unwrap();
    assert_eq!(m[&l(&[("app", "a"), ("pod", "1")])][&0], 4.0);
    assert!((m[&l(&[("app", "a"), ("pod", "2")])][&0] - 8.0 / 6.0).abs() < 1e-12);
    // Without a group modifier, two pods of one app is many-to-many.
    let one = matrix(&[(l(&[("app", "a")]), &[(0, 1.0)])]);
    let e = binary(BinOp::Div, false, &on(&["app"]), series(pods), series(one)).unwrap_err();
    assert!(e.contains("many-to-many"), "{e}");
}

#[test]
fn and_or_unless_keep_series_by_whether_their_match_exists() {
    let l_side = matrix(&[
        (l(&[("app", "a")]), &[(0, 1.0), (1, 1.0)]),
        (l(&[("app", "b")]), &[(0, 2.0)]),
    ]);
    let r_side = matrix(&[
        (l(&[("app", "a")]), &[(0, 9.0)]),
        (l(&[("app", "c")]), &[(1, 7.0)]),
    ]);
    let d = VectorMatching::default();
    // and: a at step 0 only (the right side has a only there).
    let m = binary(
        BinOp::And,
        false,
        &d,
        series(l_side.clone()),
        series(r_side.clone()),
    )
    .unwrap();
    assert_eq!(m, matrix(&[(l(&[("app", "a")]), &[(0, 1.0)])]));
    // unless: a at step 1, b at step 0.
    let m = binary(
        BinOp::Unless,
        false,
        &d,
        series(l_side.clone()),
        series(r_side.clone()),
    )
    .unwrap();
    assert_eq!(
        m,
        matrix(&[
            (l(&[("app", "a")]), &[(1, 1.0)]),
            (l(&[("app", "b")]), &[(0, 2.0)])
        ])
    );
    // or: all of the left, and c from the right (a is on the left).
    let m = binary(BinOp::Or, false, &d, series(l_side), series(r_side)).unwrap();
    assert_eq!(
        m,
        matrix(&[
            (l(&[("app", "a")]), &[(0, 1.0), (1, 1.0)]),
            (l(&[("app", "b")]), &[(0, 2.0)]),
            (l(&[("app", "c")]), &[(1, 7.0)]),
        ])
    );
}

#[test]
fn a_vector_compared_with_a_scalar_keeps_the_vectors_values() {
    let v = matrix(&[(l(&[("app", "a")]), &[(0, 1.0), (1, 5.0)])]);
    let three = || Operand::Constant(matrix(&[(l(&[]), &[(0, 3.0), (1, 3.0)])]));
    let d = VectorMatching::default();
    // v > 3: only 5 stays; 3 < v: the same, with v's value.
    let want = matrix(&[(l(&[("app", "a")]), &[(1, 5.0)])]);
    assert_eq!(
        binary(BinOp::Gt, false, &d, series(v.clone()), three()).unwrap(),
        want
    );
    assert_eq!(
        binary(BinOp::Lt, false, &d, three(), series(v.clone())).unwrap(),
        want
    );
    // `^` and `%`: 5^3 = 125, 5 % 3 = 2.
    assert_eq!(
        binary(BinOp::Pow, false, &d, series(v.clone()), three()).unwrap()[&l(&[("app", "a")])][&1],
        125.0
    );
    assert_eq!(
        binary(BinOp::Mod, false, &d, series(v), three()).unwrap()[&l(&[("app", "a")])][&1],
        2.0
    );
    // Two scalars compared with bool: 3 == 3 is 1.
    assert_eq!(
        binary(BinOp::Eq, true, &d, three(), three()).unwrap()[&l(&[])][&0],
        1.0
    );
}

#[test]
fn absent_is_one_where_nothing_is_present() {
    // Lines at steps 1 and 3 of 5: absent at 0, 2 and 4.
    let present = matrix(&[
        (l(&[("pod", "1")]), &[(1, 2.0)]),
        (l(&[("pod", "2")]), &[(3, 1.0)]),
    ]);
    let labels = l(&[("app", "a")]);
    assert_eq!(
        absent(&present, 5, labels.clone()),
        matrix(&[(labels.clone(), &[(0, 1.0), (2, 1.0), (4, 1.0)])])
    );
    // Present at every step: nothing at all.
    let full = matrix(&[(l(&[]), &[(0, 1.0), (1, 1.0)])]);
    assert_eq!(absent(&full, 2, labels), Matrix::new());
}

#[test]
fn label_replace_expands_captures_into_the_destination() {
    let m = matrix(&[
        (l(&[("pod", "api-7d9f")]), &[(0, 1.0)]),
        (l(&[("pod", "worker")]), &[(0, 2.0)]),
    ]);
    let re = regex::Regex::new("^(?:(?P<svc>[a-z]+)-.*)$").unwrap();
    let got = label_replace(m.clone(), "svc", "${svc}!", "pod", &re).unwrap();
    // api-7d9f matches: svc = "api!"; worker does not: unchanged.
    assert_eq!(
        got,
        matrix(&[
            (l(&[("pod", "api-7d9f"), ("svc", "api!")]), &[(0, 1.0)]),
            (l(&[("pod", "worker")]), &[(0, 2.0)]),
        ])
    );
    // An empty replacement removes the label; both series then collide.
    let all = regex::Regex::new("^(?:.*)$").unwrap();
    let e = label_replace(m, "pod", "", "pod", &all).unwrap_err();
    assert!(e.contains("same labelset"), "{e}");
}
