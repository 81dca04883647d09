//! Binary operators between scalars and vectors, as PromQL (and so LogQL)
//! defines them, step by step:
//!
//! - arithmetic (`+ - * / % ^`) with IEEE results (`x / 0` is infinite);
//! - comparisons (`== != > < >= <=`) filter: a point stays, with its
//!   left-hand value (the vector's, beside a scalar), where the comparison
//!   holds; with `bool` every point stays, as 1 or 0;
//! - between two vectors, series pair up by their labels, `on` some or
//!   `ignoring` some; one to one (then the result keeps the matching
//!   labels), or with `group_left`/`group_right` many to one (the result
//!   keeps the many side's labels, plus the `include` labels of the one);
//! - `and`, `or`, `unless` keep left-hand series whose match exists, all
//!   of both sides (right-hand ones only where no left-hand one matches),
//!   or left-hand ones whose match does not exist.

use std::collections::{BTreeSet, HashMap};

use super::Matrix;
use crate::logql::eval::Labels;
use crate::logql::{BinOp, GroupSide, VectorMatching};

/// One side of a binary operator.
pub(in crate::engine) enum Operand {
    /// A scalar: its one series (no labels) meets every series of the
    /// other side, step by step.
    Constant(Matrix),
    Series(Matrix),
}

/// Why two vectors cannot be matched: PromQL refuses many-to-many.
pub(in crate::engine) type MatchError = String;

fn arith(op: BinOp, a: f64, b: f64) -> f64 {
    match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => a / b,
        // Go's math.Mod: the sign of the dividend, as Rust's `%`.
        BinOp::Mod => a % b,
        BinOp::Pow => a.powf(b),
        _ => f64::NAN,
    }
}

fn holds(op: BinOp, a: f64, b: f64) -> bool {
    match op {
        BinOp::Eq => a == b,
        BinOp::Ne => a != b,
        BinOp::Gt => a > b,
        BinOp::Lt => a < b,
        BinOp::Ge => a >= b,
        BinOp::Le => a <= b,
        _ => false,
    }
}

/// `a op b` for one pair of points, `keep` being the left-hand value a
/// filtering comparison keeps: the value, or `None` if filtered out.
fn point(op: BinOp, return_bool: bool, a: f64, b: f64, keep: f64) -> Option<f64> {
    if !op.is_comparison() {
        return Some(arith(op, a, b));
    }
    let yes = holds(op, a, b);
    match (return_bool, yes) {
        (true, _) => Some(if yes { 1.0 } else { 0.0 }),
        (false, true) => Some(keep),
        (false, false) => None,
    }
}

/// `lhs op rhs`. A scalar is the only series of its matrix.
pub(in crate::engine) fn binary(
    op: BinOp,
    return_bool: bool,
    matching: &VectorMatching,
    lhs: Operand,
    rhs: Operand,
) -> Result<Matrix, MatchError> {
    let first = |m: &Matrix| m.values().next().cloned().unwrap_or_default();
    let (series, c, const_left) = match (lhs, rhs) {
        (Operand::Series(l), Operand::Series(r)) => {
            return if op.is_set() {
                Ok(set_op(op, matching, &l, &r))
            } else {
                vectors(op, return_bool, matching, &l, &r)
            };
        }
        (Operand::Constant(l), Operand::Constant(r)) => {
            let (a, b) = (first(&l), first(&r));
            let pts = a
                .iter()
                .filter_map(|(k, v)| {
                    let w = b.get(k).copied().unwrap_or(f64::NAN);
                    Some((*k, point(op, true, *v, w, *v)?))
                })
                .collect();
            return Ok(Matrix::from([(Vec::new(), pts)]));
        }
        (Operand::Constant(l), Operand::Series(r)) => (r, first(&l), true),
        (Operand::Series(l), Operand::Constant(r)) => (l, first(&r), false),
    };
    Ok(series
        .into_iter()
        .map(|(labels, pts)| {
            let pts = pts
                .into_iter()
                .filter_map(|(k, v)| {
                    let cv = c.get(&k).copied().unwrap_or(f64::NAN);
                    let (a, b) = if const_left { (cv, v) } else { (v, cv) };
                    Some((k, point(op, return_bool, a, b, v)?))
                })
                .collect();
            (labels, pts)
        })
        .filter(|(_, pts): &(Labels, std::collections::BTreeMap<usize, f64>)| !pts.is_empty())
        .collect())
}

/// The labels two series are matched on.
fn signature(labels: &Labels, m: &VectorMatching) -> Labels {
    labels
        .iter()
        .filter(|(k, _)| m.labels.contains(k) == m.on)
        .cloned()
        .collect()
}

/// Every step any series of `m` has a point at.
fn steps(a: &Matrix, b: &Matrix) -> BTreeSet<usize> {
    a.values()
        .chain(b.values())
        .flat_map(|p| p.keys().copied())
        .collect()
}

/// The points of `m` at step `k`, by signature; a signature twice is the
/// many-to-many PromQL refuses when `unique`.
fn at_step<'a>(
    m: &'a Matrix,
    k: usize,
    matching: &VectorMatching,
    unique: Option<&str>,
) -> Result<HashMap<Labels, (&'a Labels, f64)>, MatchError> {
    let mut out = HashMap::new();
    for (labels, pts) in m {
        if let Some(v) = pts.get(&k) {
            let sig = signature(labels, matching);
            if out.insert(sig, (labels, *v)).is_some() {
                if let Some(side) = unique {
                    return Err(format!(
                        "found duplicate series for the match group on the {side} side of a binary operation; \
                         many-to-many matching is not allowed: use on(...) or ignoring(...) to match, or \
                         group_left/group_right"
                    ));
                }
            }
        }
    }
    Ok(out)
}

fn vectors(
    op: BinOp,
    return_bool: bool,
    matching: &VectorMatching,
    l: &Matrix,
    r: &Matrix,
) -> Result<Matrix, MatchError> {
    let mut out = Matrix::new();
    for k in steps(l, r) {
        // The side each signature must be unique on ("one"), and the
        // other: the right one, unless group_right.
        let (one, other, one_name) = match matching.group {
            Some(GroupSide::Right) => (l, r, "left"),
            _ => (r, l, "right"),
        };
        let ones = at_step(one, k, matching, Some(one_name))?;
        // One to one, the left side must be unique too.
        let others: Vec<(&Labels, f64)> = if matching.group.is_none() {
            at_step(other, k, matching, Some("left"))?
                .into_values()
                .collect()
        } else {
            other
                .iter()
                .filter_map(|(labels, pts)| Some((labels, *pts.get(&k)?)))
                .collect()
        };
        for (labels, v) in others {
            let Some((one_labels, w)) = ones.get(&signature(labels, matching)) else {
                continue;
            };
            let (a, b) = match matching.group {
                Some(GroupSide::Right) => (*w, v),
                _ => (v, *w),
            };
            let Some(value) = point(op, return_bool, a, b, a) else {
                continue;
            };
            let result = result_labels(labels, one_labels, matching);
            out.entry(result).or_default().insert(k, value);
        }
    }
    Ok(out)
}

/// PromQL's result labels: one to one, only the matching labels (`on`)
/// or all but the ignored ones; many to one, the many side's labels with
/// the `include` labels copied from the one side.
fn result_labels(many: &Labels, one: &Labels, m: &VectorMatching) -> Labels {
    if m.group.is_none() {
        return signature(many, m);
    }
    let mut out: Labels = many
        .iter()
        .filter(|(k, _)| !m.include.contains(k))
        .cloned()
        .collect();
    out.extend(
        one.iter()
            .filter(|(k, v)| m.include.contains(k) && !v.is_empty())
            .cloned(),
    );
    out.sort();
    out
}

fn set_op(op: BinOp, matching: &VectorMatching, l: &Matrix, r: &Matrix) -> Matrix {
    let mut out = Matrix::new();
    for k in steps(l, r) {
        let sigs = |m: &Matrix| -> BTreeSet<Labels> {
            m.iter()
                .filter(|(_, p)| p.contains_key(&k))
                .map(|(labels, _)| signature(labels, matching))
                .collect()
        };
        let (left, right) = (sigs(l), sigs(r));
        let mut keep = |m: &Matrix, want: &dyn Fn(&Labels) -> bool| {
            for (labels, pts) in m {
                if let Some(v) = pts.get(&k) {
                    if want(&signature(labels, matching)) {
                        out.entry(labels.clone()).or_default().insert(k, *v);
                    }
                }
            }
        };
        match op {
            BinOp::And => keep(l, &|s| right.contains(s)),
            BinOp::Unless => keep(l, &|s| !right.contains(s)),
            _ => {
                keep(l, &|_| true);
                keep(r, &|s| !left.contains(s));
            }
        }
    }
    out
}
