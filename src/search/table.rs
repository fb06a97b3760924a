//! The text table `snapstore search` prints.

use super::SearchReport;

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".into(), f)
}

/// The table `search` prints: one row per candidate, then the choice.
impl SearchReport {
    /// The report as the table `snapstore search` prints: one row per candidate, then the
    /// choice and the evaluator calls.
    pub fn table(&self) -> String {
        let r = self;
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "baseline accuracy {:.6}; lossless ratio {:.2}x; max loss {}; alpha {}",
            r.baseline_accuracy, r.lossless_ratio, r.max_loss, r.alpha
        );
        let _ = writeln!(
            s,
            "  {:>9} {:>9} {:>9} {:>8} {:>9} {:>9} {:>6} {:>6} {:>6}",
            "bound", "est_ratio", "ratio", "est_err", "accuracy", "loss", "Phi", "Omega", "score"
        );
        for c in &r.candidates {
            let mark = if c.evaluated && (c.bound - r.chosen.bound).abs() == 0.0 {
                '*'
            } else if c.admissible == Some(false) {
                'x'
            } else {
                ' '
            };
            let _ = writeln!(
                s,
                "{mark} {:>9} {:>8.2}x {:>9} {:>8} {:>9} {:>9} {:>6} {:>6} {:>6}",
                format!("{}", c.bound),
                c.est_ratio,
                opt(c.ratio, |v| format!("{v:.2}x")),
                // How far the estimate's bytes were from the real ones (-33%: a third under).
                opt(c.est_over_real, |v| format!("{:+.1}%", (v - 1.0) * 100.0)),
                opt(c.accuracy, |v| format!("{v:.6}")),
                opt(c.loss, |v| format!("{v:+.5}")),
                opt(c.phi, |v| format!("{v:.3}")),
                opt(c.omega, |v| format!("{v:.3}")),
                opt(c.score, |v| format!("{v:.3}")),
            );
        }
        let _ = writeln!(
            s,
            "  (* chosen, x excluded: loss > max loss, - not evaluated)"
        );
        if r.fell_back_to_lossless && r.candidates.iter().any(|c| c.admissible == Some(true)) {
            let _ = writeln!(
                s,
                "no candidate within the loss stores less than lossless: choosing lossless ({:.2}x)",
                r.lossless_ratio
            );
        } else if r.fell_back_to_lossless {
            let _ = writeln!(
                s,
                "no candidate keeps the loss within {}: choosing lossless ({:.2}x)",
                r.max_loss, r.lossless_ratio
            );
        } else {
            let _ = writeln!(
                s,
                "chosen {}: ratio {:.2}x, accuracy {:.6}, loss {:.5}",
                r.chosen.spec, r.chosen.ratio, r.chosen.accuracy, r.chosen.loss
            );
        }
        let _ = writeln!(
            s,
            "{} evaluator calls (a full scan makes {}), {:.1}s of {:.1}s in the evaluator",
            r.evaluations, r.full_scan_evaluations, r.eval_seconds, r.seconds
        );
        s
    }
}
