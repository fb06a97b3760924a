//! Automatic error-bound search (the second half of Delta-DNN): choose the relative bound that
//! maximizes a weighted sum of compression ratio and kept accuracy, without losing more accuracy
//! than allowed.
//!
//! # Definitions
//!
//! For a snapshot about to be committed and a list of candidate relative bounds `e`:
//!
//! * **baseline accuracy** `acc0`: the evaluator on the original tensors;
//! * **accuracy** `acc(e)`: the evaluator on the tensors a commit under `rel:e` would store
//!   (each float tensor coded against the parent's reconstruction exactly as the commit does,
//!   so this is what checkout of that commit returns);
//! * **loss** `loss(e) = acc0 - acc(e)` (a fraction: 0.002 is 0.2 points of accuracy);
//! * **admissible**: `loss(e) <= max_loss`; other candidates are excluded;
//! * **ratio** `ratio(e)`: tensor bytes / bytes the commit would add (as `CommitReport`);
//! * `Phi(e) = ratio(e) / max ratio among admissible candidates`;
//! * `Omega(e) = 1 - loss(e) / max_loss`, clamped to `[0, 1]`;
//! * `Score(e) = alpha * Phi(e) + (1 - alpha) * Omega(e)`.
//!
//! The chosen bound is the admissible candidate with the highest score (ties go to the larger
//! bound). When no candidate is admissible, or none that is stores less than lossless (which
//! loses nothing), the choice is lossless, and the report says so (`fell_back_to_lossless`).
//!
//! # Fewer evaluator calls
//!
//! The evaluator is the slow part. The ratio of every candidate is first *estimated* from one
//! statistics pass over the codes (order-0 entropy of the code histogram of each chunk plus the
//! exceptions: [`CandidateRow::est_ratio`]); the real packed size comes with each candidate
//! actually coded, and the table shows both (`est_err`: the estimate's bytes against the real
//! ones). Candidates are sorted by bound. A coarse scan evaluates every other candidate from the
//! largest bound down; then the search refines next to the best score and where admissibility flips
//! between two evaluated candidates (bisecting the gap). Throughout, a candidate is evaluated only
//! if it could still beat the best one so far: a smaller bound has a smaller ratio (at most its
//! estimate scaled by the largest real/estimated ratio seen, and at most the ratio of the next
//! larger bound coded), so it can win only through a smaller loss; nothing is assumed about the
//! loss, which on a small test set is noisy and not monotone. In particular once an admissible
//! candidate loses nothing, no smaller bound is evaluated. [`SearchReport::evaluations`] counts the
//! calls (baseline included) against [`SearchReport::full_scan_evaluations`] (candidates + 1);
//! `full_scan` evaluates everything. Only evaluated candidates can be chosen, so the loss of the
//! choice is always measured; a candidate the coarse scan skipped between two inadmissible ones is
//! not, the price of the saved calls.

mod auto;
mod candidate;
mod candidate_form;
mod eval_cmd;
mod plot;
mod table;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::repo::{CheckedOutTensor, CommitOptions, OnDisk, Repo, TensorInput};
use crate::store::manifest::Bound;
use crate::store::object_id::ObjectId;
use candidate::Prepared;

pub use auto::{AutoCommitReport, AutoOptions};
pub use eval_cmd::CommandEvaluator;
pub use plot::plot_svg;

/// An evaluator: the accuracy of a candidate snapshot (in `[0, 1]`, or any number where higher
/// is better), or why it could not be measured.
pub type Evaluator<'a> = dyn FnMut(&[CheckedOutTensor]) -> std::result::Result<f64, String> + 'a;

/// `evaluator`, failing any call after which one of `inputs` no longer holds the bytes it held
/// when this was made. An evaluator that loads each candidate into the very model whose tensors
/// are searched overwrites them: the search would go on measuring candidates of a model that is
/// gone, and an automatic commit would store the last candidate as if it were the model.
pub fn guard_inputs<'a, 'b: 'a>(
    inputs: &'a [TensorInput],
    evaluator: &'a mut Evaluator<'b>,
) -> Box<Evaluator<'a>> {
    let hashes: Vec<ObjectId> = inputs.iter().map(crate::repo::input_hash).collect();
    Box::new(move |candidate| {
        let accuracy = evaluator(candidate);
        match crate::repo::first_changed(inputs, &hashes) {
            Some(t) => Err(format!(
                "the model being committed now holds this candidate's values, not its own: the \
                 evaluator wrote them into tensor \"{}\" (it loaded the candidate into the \
                 model the tensors come from), so nothing was stored; restore the model's \
                 weights from a copy of yours, and evaluate a separate copy of the model",
                inputs[t].name
            )),
            None => accuracy,
        }
    })
}

/// Number of bounds [`default_candidates`] and a `--range A:B` give.
pub const DEFAULT_RANGE_POINTS: usize = 16;

/// `n` log-spaced bounds from `lo` to `hi` inclusive, each rounded to two significant digits.
pub fn log_range(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let n = n.max(1);
    let mut out: Vec<f64> = (0..n)
        .map(|i| {
            let t = if n == 1 {
                0.0
            } else {
                i as f64 / (n - 1) as f64
            };
            round_sig((lo.ln() + t * (hi.ln() - lo.ln())).exp(), 2)
        })
        .collect();
    out.dedup();
    out
}

fn round_sig(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let p = digits - 1 - x.abs().log10().floor() as i32;
    // Through the decimal string so the value prints as written (0.0017, not 0.0017000000000000001).
    format!(
        "{:.*}",
        p.max(0) as usize,
        (x * 10f64.powi(p)).round() / 10f64.powi(p)
    )
    .parse()
    .unwrap_or(x)
}

/// The default candidates: `DEFAULT_RANGE_POINTS` log-spaced bounds from 1e-4 to 0.2.
pub fn default_candidates() -> Vec<f64> {
    log_range(1e-4, 2e-1, DEFAULT_RANGE_POINTS)
}

/// Parses `A:B` (or `A:B:N`) into log-spaced candidates.
pub fn parse_range(s: &str) -> Result<Vec<f64>> {
    let bad = |why: &str| Error::invalid("range", format!("{s:?}: {why}"));
    let parts: Vec<&str> = s.split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return Err(bad("use A:B or A:B:N, e.g. 1e-4:2e-1"));
    }
    let lo: f64 = parts[0]
        .trim()
        .parse()
        .map_err(|_| bad("A is not a number"))?;
    let hi: f64 = parts[1]
        .trim()
        .parse()
        .map_err(|_| bad("B is not a number"))?;
    let n: usize = match parts.get(2) {
        Some(n) => n.trim().parse().map_err(|_| bad("N is not a count"))?,
        None => DEFAULT_RANGE_POINTS,
    };
    if !(lo > 0.0 && hi < 1.0 && lo <= hi) {
        return Err(bad("need 0 < A <= B < 1"));
    }
    if !(1..=1000).contains(&n) {
        return Err(bad("N must be 1..1000"));
    }
    Ok(log_range(lo, hi, n))
}

/// What to search and how to choose.
#[derive(Clone, Debug)]
pub struct SearchOptions {
    /// Candidate relative bounds, each in (0, 1) (sorted and deduplicated by the search).
    pub candidates: Vec<f64>,
    /// Weight of the ratio in the score; `1 - alpha` weighs the kept accuracy.
    pub alpha: f64,
    /// Largest accuracy loss allowed (a fraction: 0.002 = 0.2 points).
    pub max_loss: f64,
    /// Evaluate every candidate instead of the coarse scan and refinement.
    pub full_scan: bool,
    /// Show a progress bar on stderr while evaluating (only when it is a terminal).
    pub progress: bool,
    /// How the commit will code the snapshot: its entropy coders, keyframe interval (default:
    /// the repository's), chunk size and rounding. Its message, branch, metadata and bound
    /// are not used (the branch is an argument of the search, the bound what it searches).
    pub commit: CommitOptions,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            candidates: default_candidates(),
            alpha: 0.5,
            max_loss: 0.002,
            full_scan: false,
            progress: true,
            commit: CommitOptions::default(),
        }
    }
}

impl SearchOptions {
    /// These options for coding as `opts` will (its codec, keyframe interval, chunk size and
    /// rounding).
    pub fn for_commit(mut self, opts: &CommitOptions) -> Self {
        self.commit = opts.clone();
        self
    }

    /// The candidates, sorted and checked, with alpha and max loss checked too: the errors a
    /// search would give before evaluating anything.
    pub fn validated_candidates(&self) -> Result<Vec<f64>> {
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(Error::invalid(
                "alpha",
                format!("{} is outside [0, 1]", self.alpha),
            ));
        }
        if !(self.max_loss >= 0.0 && self.max_loss.is_finite()) {
            return Err(Error::invalid(
                "max loss",
                format!("{} must be a finite fraction >= 0", self.max_loss),
            ));
        }
        if self.candidates.is_empty() {
            return Err(Error::invalid("candidates", "no candidate bounds"));
        }
        // Each as `rel:E` is parsed.
        for &eps in &self.candidates {
            if let Err(why) = Bound::relative(eps) {
                return Err(Error::invalid("candidates", format!("{eps}: {why}")));
            }
        }
        let mut c = self.candidates.clone();
        c.sort_by(f64::total_cmp);
        c.dedup();
        Ok(c)
    }
}

/// One candidate bound in the report.
#[derive(Clone, Debug, Serialize)]
pub struct CandidateRow {
    /// Relative bound.
    pub bound: f64,
    /// Estimated stored bytes (code entropy + exceptions).
    pub est_bytes: u64,
    /// Estimated ratio (tensor bytes / estimated stored bytes).
    pub est_ratio: f64,
    /// Real stored bytes, when this candidate was coded (every evaluated one).
    pub stored_bytes: Option<u64>,
    /// Real ratio, when coded.
    pub ratio: Option<f64>,
    /// Estimated / real stored bytes, when coded (1 = exact estimate).
    pub est_over_real: Option<f64>,
    /// Evaluator's accuracy, when evaluated.
    pub accuracy: Option<f64>,
    /// Baseline accuracy minus accuracy, when evaluated.
    pub loss: Option<f64>,
    /// `loss <= max_loss`, when evaluated.
    pub admissible: Option<bool>,
    /// Ratio / best admissible ratio (admissible candidates only).
    pub phi: Option<f64>,
    /// `1 - loss / max_loss` clamped to [0, 1] (admissible candidates only).
    pub omega: Option<f64>,
    /// `alpha * phi + (1 - alpha) * omega` (admissible candidates only).
    pub score: Option<f64>,
    /// Whether the evaluator ran on this candidate.
    pub evaluated: bool,
}

/// The bound the search chose.
#[derive(Clone, Debug, Serialize)]
pub struct ChosenBound {
    /// Relative bound; 0 when the choice is lossless.
    pub bound: f64,
    /// The bound as `--bound` spells it (`rel:0.0017` or `lossless`).
    pub spec: String,
    /// Ratio of the snapshot under it.
    pub ratio: f64,
    /// Accuracy under it.
    pub accuracy: f64,
    /// Baseline accuracy minus accuracy.
    pub loss: f64,
    /// Its score (none for the lossless fallback).
    pub score: Option<f64>,
}

impl ChosenBound {
    /// The chosen bound.
    pub fn as_bound(&self) -> Bound {
        if self.bound > 0.0 {
            Bound::Rel(self.bound)
        } else {
            Bound::Lossless
        }
    }
}

/// What a search measured and chose.
#[derive(Clone, Debug, Serialize)]
pub struct SearchReport {
    /// The choice.
    pub chosen: ChosenBound,
    /// No candidate was admissible, or none that was stores less than lossless: the choice
    /// is lossless.
    pub fell_back_to_lossless: bool,
    /// Evaluator on the original tensors.
    pub baseline_accuracy: f64,
    /// Ratio of the snapshot committed losslessly.
    pub lossless_ratio: f64,
    /// Tensor bytes of the snapshot.
    pub logical_bytes: u64,
    /// Parent the candidates were coded against.
    pub parent: Option<ObjectId>,
    /// Weight of the ratio in the score.
    pub alpha: f64,
    /// Largest loss allowed.
    pub max_loss: f64,
    /// Every candidate, by increasing bound.
    pub candidates: Vec<CandidateRow>,
    /// Evaluator calls made (baseline included; none for what an automatic commit's failed
    /// re-check measured, which the search takes from it).
    pub evaluations: usize,
    /// Evaluator calls a full scan makes (candidates + baseline).
    pub full_scan_evaluations: usize,
    /// Wall time in seconds, and the part spent in the evaluator.
    pub seconds: f64,
    /// Seconds spent in the evaluator.
    pub eval_seconds: f64,
}

impl SearchReport {
    /// The chosen bound.
    pub fn bound(&self) -> Bound {
        self.chosen.as_bound()
    }
}

impl Repo {
    /// Searches the bound for committing the checkpoint at `path` (a safetensors file or a
    /// checkpoint directory, read as a commit reads it) on top of `parent_spec` (default: the
    /// tip of HEAD's branch). Nothing is written to the repository.
    pub fn search_checkpoint(
        &self,
        path: impl AsRef<Path>,
        parent_spec: Option<&str>,
        opts: &SearchOptions,
        evaluator: &mut Evaluator,
    ) -> Result<SearchReport> {
        let path = path.as_ref();
        self.search_checkpoint_on(path, parent_spec, None, opts, evaluator)
    }

    /// As [`Repo::search_checkpoint`], with the parent being the tip of `branch` when
    /// `parent_spec` is `None`.
    pub fn search_checkpoint_on(
        &self,
        path: impl AsRef<Path>,
        parent_spec: Option<&str>,
        branch: Option<&str>,
        opts: &SearchOptions,
        evaluator: &mut Evaluator,
    ) -> Result<SearchReport> {
        self.search_checkpoint_after(path.as_ref(), parent_spec, branch, opts, None, evaluator)
    }

    /// [`Repo::search_checkpoint_on`] taking what `prior` measured (see
    /// [`Repo::search_inner`]).
    pub(crate) fn search_checkpoint_after(
        &self,
        path: &Path,
        parent_spec: Option<&str>,
        branch: Option<&str>,
        opts: &SearchOptions,
        prior: Option<&SearchReport>,
        evaluator: &mut Evaluator,
    ) -> Result<SearchReport> {
        let on_disk = OnDisk::open(path)?;
        // In the order a commit reads them: shard by shard, each in file order.
        let inputs = on_disk
            .files()
            .into_iter()
            .flat_map(TensorInput::all_of)
            .collect();
        let report = self.search_inner(inputs, parent_spec, branch, opts, prior, evaluator)?;
        on_disk.check_unchanged("searched")?;
        Ok(report)
    }

    /// Searches the bound for committing tensors held in memory on top of `parent_spec`
    /// (default: the tip of HEAD's branch). Nothing is written to the repository.
    pub fn search_tensors(
        &self,
        tensors: &[TensorInput],
        parent_spec: Option<&str>,
        opts: &SearchOptions,
        evaluator: &mut Evaluator,
    ) -> Result<SearchReport> {
        self.search_inner(tensors.to_vec(), parent_spec, None, opts, None, evaluator)
    }

    /// The search of `inputs`; `prior` is what a search of the same inputs on the same parent
    /// measured (an automatic commit's failed re-check): its baseline and evaluated candidates
    /// are taken, not evaluated again.
    pub(crate) fn search_inner(
        &self,
        inputs: Vec<TensorInput>,
        parent_spec: Option<&str>,
        branch: Option<&str>,
        opts: &SearchOptions,
        prior: Option<&SearchReport>,
        evaluator: &mut Evaluator,
    ) -> Result<SearchReport> {
        let started = Instant::now();
        let candidates = opts.validated_candidates()?;
        let prepared = Prepared::new(self, inputs, parent_spec, branch, opts)?;
        // Measured against another parent (a commit landed in between), it does not apply.
        let prior = prior
            .filter(|p| p.parent == prepared.parent && p.logical_bytes == prepared.logical_bytes);
        search_prepared(&prepared, &candidates, opts, prior, evaluator, started)
    }
}

/// One evaluated candidate.
#[derive(Clone, Copy)]
struct Measured {
    accuracy: f64,
    loss: f64,
    stored_bytes: u64,
}

fn ratio_of(logical: u64, stored: u64) -> f64 {
    logical as f64 / stored.max(1) as f64
}

fn search_prepared(
    prepared: &Prepared,
    candidates: &[f64],
    opts: &SearchOptions,
    prior: Option<&SearchReport>,
    evaluator: &mut Evaluator,
    started: Instant,
) -> Result<SearchReport> {
    let n = candidates.len();
    let estimates = prepared.estimate(candidates);
    let logical = prepared.logical_bytes;
    let bar = progress_bar(opts.progress, n as u64 + 1);
    let mut eval_seconds = 0.0;
    let mut evaluations = 0usize;
    let mut call =
        |what: &str, tensors: &[CheckedOutTensor], eval_seconds: &mut f64| -> Result<f64> {
            bar.set_message(what.to_string());
            let t = Instant::now();
            let acc = evaluator(tensors)
                .map_err(|e| Error::invalid("evaluator", format!("evaluating {what}: {e}")))?;
            *eval_seconds += t.elapsed().as_secs_f64();
            bar.inc(1);
            if !acc.is_finite() {
                return Err(Error::invalid(
                    "evaluator",
                    format!("evaluating {what}: it returned {acc}, not a finite accuracy"),
                ));
            }
            Ok(acc)
        };

    let baseline = match prior {
        Some(p) => p.baseline_accuracy,
        None => {
            let original = prepared.original();
            evaluations += 1;
            call("the original tensors", &original, &mut eval_seconds)?
        }
    };
    let mut measured: Vec<Option<Measured>> = vec![None; n];
    for row in prior.iter().flat_map(|p| &p.candidates) {
        let i = candidates.iter().position(|&c| c == row.bound);
        if let (Some(i), Some(accuracy), Some(stored_bytes)) = (i, row.accuracy, row.stored_bytes) {
            measured[i] = Some(Measured {
                accuracy,
                loss: baseline - accuracy,
                stored_bytes,
            });
        }
    }
    let admissible = |m: &Measured| m.loss <= opts.max_loss * (1.0 + 1e-9) + 1e-12;
    let mut evaluate = |i: usize,
                        measured: &mut Vec<Option<Measured>>,
                        evaluations: &mut usize,
                        eval_seconds: &mut f64|
     -> Result<()> {
        if measured[i].is_some() {
            return Ok(());
        }
        let coded = prepared.code(candidates[i])?;
        *evaluations += 1;
        let accuracy = call(
            &format!("rel:{}", candidates[i]),
            &coded.tensors,
            eval_seconds,
        )?;
        measured[i] = Some(Measured {
            accuracy,
            loss: baseline - accuracy,
            stored_bytes: coded.stored_bytes,
        });
        Ok(())
    };

    if opts.full_scan {
        for i in 0..n {
            evaluate(i, &mut measured, &mut evaluations, &mut eval_seconds)?;
        }
    } else {
        let est_ratio: Vec<f64> = estimates
            .bytes
            .iter()
            .map(|&b| logical as f64 / b.max(1.0))
            .collect();
        // Coarse scan from the largest bound down, every other candidate and the smallest
        // (refining only looks between evaluated candidates), skipping those that can no
        // longer win.
        let mut coarse: Vec<usize> = (0..n).rev().step_by(2).collect();
        if coarse.last() != Some(&0) {
            coarse.push(0);
        }
        for i in coarse {
            if could_win(i, &measured, &est_ratio, &admissible, logical, opts) {
                evaluate(i, &mut measured, &mut evaluations, &mut eval_seconds)?;
            }
        }
        // Refine next to the best score and where admissibility flips between two evaluated
        // candidates, again only where a candidate could still win.
        loop {
            let wanted = refine_targets(&measured, &est_ratio, &admissible, logical, opts);
            if wanted.is_empty() {
                break;
            }
            for i in wanted.into_iter().rev() {
                evaluate(i, &mut measured, &mut evaluations, &mut eval_seconds)?;
            }
        }
    }
    bar.finish_and_clear();

    let scores = score_all(&measured, &admissible, logical, opts);
    let rows: Vec<CandidateRow> = (0..n)
        .map(|i| {
            let est_bytes = estimates.bytes[i].round().max(0.0) as u64;
            let m = measured[i];
            let s = scores[i];
            CandidateRow {
                bound: candidates[i],
                est_bytes,
                est_ratio: ratio_of(logical, est_bytes),
                stored_bytes: m.map(|m| m.stored_bytes),
                ratio: m.map(|m| ratio_of(logical, m.stored_bytes)),
                est_over_real: m.map(|m| estimates.bytes[i] / m.stored_bytes.max(1) as f64),
                accuracy: m.map(|m| m.accuracy),
                loss: m.map(|m| m.loss),
                admissible: m.map(|m| admissible(&m)),
                phi: s.map(|s| s.0),
                omega: s.map(|s| s.1),
                score: s.map(|s| s.2),
                evaluated: m.is_some(),
            }
        })
        .collect();
    let lossless_ratio = ratio_of(logical, estimates.lossless_bytes);
    // Lossless loses nothing, so a bound that stores no less than it never wins.
    let best = best_index(&scores)
        .filter(|&i| measured[i].is_some_and(|m| m.stored_bytes < estimates.lossless_bytes));
    let chosen = match best {
        Some(i) => {
            let r = &rows[i];
            ChosenBound {
                bound: r.bound,
                spec: Bound::Rel(r.bound).to_string(),
                ratio: r.ratio.expect("evaluated"),
                accuracy: r.accuracy.expect("evaluated"),
                loss: r.loss.expect("evaluated"),
                score: r.score,
            }
        }
        None => ChosenBound {
            bound: 0.0,
            spec: Bound::Lossless.to_string(),
            ratio: lossless_ratio,
            accuracy: baseline,
            loss: 0.0,
            score: None,
        },
    };
    Ok(SearchReport {
        chosen,
        fell_back_to_lossless: best.is_none(),
        baseline_accuracy: baseline,
        lossless_ratio,
        logical_bytes: logical,
        parent: prepared.parent,
        alpha: opts.alpha,
        max_loss: opts.max_loss,
        candidates: rows,
        evaluations,
        full_scan_evaluations: n + 1,
        seconds: started.elapsed().as_secs_f64(),
        eval_seconds,
    })
}

/// `(phi, omega, score)` of every evaluated admissible candidate.
fn score_all(
    measured: &[Option<Measured>],
    admissible: &dyn Fn(&Measured) -> bool,
    logical: u64,
    opts: &SearchOptions,
) -> Vec<Option<(f64, f64, f64)>> {
    let max_ratio = measured
        .iter()
        .flatten()
        .filter(|m| admissible(m))
        .map(|m| ratio_of(logical, m.stored_bytes))
        .fold(0.0f64, f64::max);
    measured
        .iter()
        .map(|m| {
            let m = m.as_ref().filter(|m| admissible(m))?;
            let phi = ratio_of(logical, m.stored_bytes) / max_ratio;
            let omega = if opts.max_loss > 0.0 {
                (1.0 - m.loss / opts.max_loss).clamp(0.0, 1.0)
            } else {
                1.0
            };
            Some((phi, omega, opts.alpha * phi + (1.0 - opts.alpha) * omega))
        })
        .collect()
}

/// The highest score; ties go to the larger bound.
fn best_index(scores: &[Option<(f64, f64, f64)>]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, s) in scores.iter().enumerate() {
        if let Some((_, _, s)) = s {
            if best.is_none_or(|(_, b)| *s >= b) {
                best = Some((i, *s));
            }
        }
    }
    best.map(|(i, _)| i)
}

/// Upper bounds of every candidate's ratio: the real ratio when coded; otherwise the estimate
/// scaled by the largest real/estimated ratio seen (plus 5%), and no more than the ratio of the
/// next larger bound coded (the ratio grows with the bound).
fn ratio_upper(measured: &[Option<Measured>], est_ratio: &[f64], logical: u64) -> Vec<f64> {
    let calibration = measured
        .iter()
        .zip(est_ratio)
        .filter_map(|(m, e)| m.map(|m| ratio_of(logical, m.stored_bytes) / e))
        .fold(1.0f64, f64::max)
        * 1.05;
    let mut next_real = f64::INFINITY;
    let mut out = vec![0.0; measured.len()];
    for i in (0..measured.len()).rev() {
        out[i] = match measured[i] {
            Some(m) => {
                next_real = ratio_of(logical, m.stored_bytes);
                next_real
            }
            None => (est_ratio[i] * calibration).min(next_real),
        };
    }
    out
}

/// Whether unevaluated candidate `i` could still beat the best evaluated one `b`. Nothing is
/// assumed about the loss (it may be 0 or negative), only that the ratio grows with the bound:
/// with the largest possible best admissible ratio `R`, `i` wins when
/// `alpha (r_i - r_b) / R + (1 - alpha) (omega_i - omega_b) > 0` (or `= 0` with `i > b`, ties
/// going to the larger bound), taking `r_i` at its upper bound and `omega_i = 1`. In particular
/// when `b` loses nothing (`omega_b = 1`) no smaller bound can win.
fn could_win(
    i: usize,
    measured: &[Option<Measured>],
    est_ratio: &[f64],
    admissible: &dyn Fn(&Measured) -> bool,
    logical: u64,
    opts: &SearchOptions,
) -> bool {
    if measured[i].is_some() {
        return false;
    }
    let scores = score_all(measured, admissible, logical, opts);
    let Some(b) = best_index(&scores) else {
        return true;
    };
    let (_, omega_b, _) = scores[b].expect("best is scored");
    let upper = ratio_upper(measured, est_ratio, logical);
    let r_b = upper[b];
    if upper[i] > r_b {
        return true;
    }
    // The best admissible ratio at the end is at most the largest upper bound of a candidate
    // not known to be inadmissible.
    let max_ratio = (0..measured.len())
        .filter(|&j| measured[j].is_none_or(|m| admissible(&m)))
        .map(|j| upper[j])
        .fold(r_b, f64::max);
    let gain = opts.alpha * (upper[i] - r_b) / max_ratio + (1.0 - opts.alpha) * (1.0 - omega_b);
    gain > 1e-12 || (gain >= -1e-12 && i > b)
}

/// Candidates to evaluate next: the unevaluated neighbours of the best score, and the middle of
/// every gap between two evaluated candidates of different admissibility; each only if it could
/// still win.
fn refine_targets(
    measured: &[Option<Measured>],
    est_ratio: &[f64],
    admissible: &dyn Fn(&Measured) -> bool,
    logical: u64,
    opts: &SearchOptions,
) -> Vec<usize> {
    let mut wanted = Vec::new();
    let scores = score_all(measured, admissible, logical, opts);
    if let Some(b) = best_index(&scores) {
        wanted.extend(
            [b.wrapping_sub(1), b + 1]
                .into_iter()
                .filter(|&q| q < measured.len()),
        );
    }
    let evaluated: Vec<usize> = (0..measured.len())
        .filter(|&i| measured[i].is_some())
        .collect();
    for w in evaluated.windows(2) {
        let (a, c) = (w[0], w[1]);
        let (ma, mc) = (
            measured[a].expect("evaluated"),
            measured[c].expect("evaluated"),
        );
        if c > a + 1 && admissible(&ma) != admissible(&mc) {
            wanted.push((a + c) / 2);
        }
    }
    wanted.retain(|&i| could_win(i, measured, est_ratio, admissible, logical, opts));
    wanted.sort_unstable();
    wanted.dedup();
    wanted
}

fn progress_bar(enabled: bool, len: u64) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    // Drawn only when stderr is a terminal.
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "searching bound [{bar:30}] {pos}/{len} evaluations (at most) {elapsed} {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
