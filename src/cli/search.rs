//! `snapstore search PATH`: what bound to commit a checkpoint under, without committing; and the
//! search settings `commit --bound auto` shares.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use snapstore::{default_candidates, parse_range, plot_svg, CommandEvaluator, Repo, SearchOptions};

use super::print::json_pretty;

/// How to evaluate and choose a bound (shared by `search` and `commit --bound auto`).
#[derive(clap::Args, Clone, Debug)]
pub struct SearchArgs {
    /// Shell command printing a candidate's accuracy (the last number on stdout); `{path}` is
    /// replaced by the candidate, written as the checkpoint is (a safetensors file, or a
    /// directory of its shards with links to its other files), e.g. 'python3 eval.py {path}'.
    #[arg(long, value_name = "CMD")]
    pub eval_cmd: Option<String>,
    /// Candidate relative bounds, comma-separated (e.g. 1e-3,3e-3,1e-2).
    #[arg(
        long,
        value_name = "E,E,..",
        value_delimiter = ',',
        conflicts_with = "range"
    )]
    bounds: Vec<f64>,
    /// Candidates log-spaced from A to B (16 of them, or N) [default: 1e-4:2e-1].
    #[arg(long, value_name = "A:B[:N]")]
    range: Option<String>,
    /// Weight of the compression ratio in the score (1 - alpha weighs the kept accuracy)
    /// [default: 0.5].
    #[arg(long)]
    alpha: Option<f64>,
    /// Largest accuracy loss allowed, as a fraction (0.002 = 0.2 points) [default: 0.002].
    #[arg(long)]
    max_loss: Option<f64>,
    /// Seconds one evaluation may take before it is killed (0: no limit) [default: 600].
    #[arg(long, value_name = "SECS")]
    eval_timeout: Option<u64>,
    /// Draw ratio and accuracy against the bound, choice marked, into this SVG file.
    #[arg(long, value_name = "SVG")]
    pub plot: Option<PathBuf>,
    /// Evaluate every candidate (no coarse scan and refinement).
    #[arg(long)]
    full_scan: bool,
}

impl SearchArgs {
    /// The search options these arguments give.
    pub fn options(&self) -> Result<SearchOptions> {
        let candidates = if !self.bounds.is_empty() {
            self.bounds.clone()
        } else if let Some(r) = &self.range {
            parse_range(r)?
        } else {
            default_candidates()
        };
        let defaults = SearchOptions::default();
        let opts = SearchOptions {
            candidates,
            alpha: self.alpha.unwrap_or(defaults.alpha),
            max_loss: self.max_loss.unwrap_or(defaults.max_loss),
            full_scan: self.full_scan,
            ..defaults
        };
        opts.validated_candidates()?;
        Ok(opts)
    }

    /// The `--eval-cmd` evaluator, writing candidates in the form of the checkpoint at `path`.
    pub fn evaluator(&self, path: &Path) -> Result<CommandEvaluator> {
        let Some(cmd) = &self.eval_cmd else {
            bail!("--eval-cmd is required to search a bound, e.g. --eval-cmd 'python3 eval.py {{path}}'");
        };
        let secs = self.eval_timeout.unwrap_or(DEFAULT_EVAL_TIMEOUT_SECS);
        let timeout = (secs > 0).then(|| Duration::from_secs(secs));
        Ok(CommandEvaluator::new(cmd, timeout)?.writing_like(path)?)
    }

    /// The settings given on the command line, by flag (for refusing them where unused).
    pub fn given(&self) -> Vec<&'static str> {
        [
            ("--eval-cmd", self.eval_cmd.is_some()),
            ("--bounds", !self.bounds.is_empty()),
            ("--range", self.range.is_some()),
            ("--alpha", self.alpha.is_some()),
            ("--max-loss", self.max_loss.is_some()),
            ("--eval-timeout", self.eval_timeout.is_some()),
            ("--plot", self.plot.is_some()),
            ("--full-scan", self.full_scan),
        ]
        .into_iter()
        .filter_map(|(flag, given)| given.then_some(flag))
        .collect()
    }

    /// Fails before a search when the plot could not be written after it (a commit would
    /// otherwise land and then fail on its plot).
    pub fn check_plot_writable(&self) -> Result<()> {
        let Some(p) = &self.plot else { return Ok(()) };
        let existed = p.exists();
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(p)
            .with_context(|| format!("--plot {}: cannot write it", p.display()))?;
        if !existed {
            let _ = std::fs::remove_file(p);
        }
        Ok(())
    }
}

/// Seconds an evaluation may take by default.
const DEFAULT_EVAL_TIMEOUT_SECS: u64 = 600;

/// Fails when `file` is a frame sequence (a directory of PNGs, a `.npy`, a PNG): `what` reads a
/// safetensors checkpoint (a file or a directory of shards), and would otherwise report a
/// nonsense header size.
pub fn checkpoint_only(what: &str, file: &Path) -> Result<()> {
    let frames = if file.is_dir() {
        (!snapstore::holds_safetensors(file)).then_some(
            "a directory holding no *.safetensors file (of PNG frames?; subdirectories are not \
             searched)",
        )
    } else if snapstore::has_extension(file, "npy") {
        Some("a .npy (a frame sequence)")
    } else if snapstore::has_extension(file, "png") {
        Some("a PNG image")
    } else {
        None
    };
    match frames {
        Some(kind) => bail!(
            "{}: {what} takes a safetensors checkpoint (a file or a directory of shards), and \
             this is {kind}",
            file.display()
        ),
        None => Ok(()),
    }
}

/// `snapstore search PATH`: what bound to commit a checkpoint under, without committing.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// The checkpoint: a safetensors file or a checkpoint directory.
    file: PathBuf,
    /// Branch whose tip the candidates are coded against (default: HEAD's branch).
    #[arg(long)]
    branch: Option<String>,
    /// Snapshot to code against instead of a branch tip.
    #[arg(long, value_name = "REF", conflicts_with = "branch")]
    parent: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Search settings.
    #[command(flatten)]
    search: SearchArgs,
}

/// Runs `snapstore search`.
pub fn run(repo: &Repo, cmd: &Args) -> Result<()> {
    checkpoint_only("search", &cmd.file)?;
    cmd.search.check_plot_writable()?;
    let opts = cmd.search.options()?;
    let mut ev = cmd.search.evaluator(&cmd.file)?;
    let report = repo.search_checkpoint_on(
        &cmd.file,
        cmd.parent.as_deref(),
        cmd.branch.as_deref(),
        &opts,
        &mut ev.as_evaluator(),
    )?;
    if let Some(p) = &cmd.search.plot {
        plot_svg(&report, p)?;
    }
    if cmd.json {
        return json_pretty(&report);
    }
    print!("{}", report.table());
    if let Some(p) = &cmd.search.plot {
        println!("plot written to {}", p.display());
    }
    Ok(())
}
