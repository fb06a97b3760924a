//! The command-line face of the search: `snapstore search` and `snapstore commit --bound auto`.
//! The argument structs are clap `Args` so the binary only flattens them in.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::cli::human;
use snapstore::{
    default_candidates, parse_range, plot_svg, AutoCommitReport, AutoOptions, CommandEvaluator,
    CommitOptions, Repo, SafetensorsFile, SearchOptions,
};

/// How to evaluate and choose a bound (shared by `search` and `commit --bound auto`).
#[derive(clap::Args, Clone, Debug)]
pub struct SearchArgs {
    /// Shell command printing a candidate's accuracy (the last number on stdout); `{path}` is
    /// replaced by the candidate safetensors file, e.g. 'python3 eval.py {path}'.
    #[arg(long, value_name = "CMD")]
    pub eval_cmd: Option<String>,
    /// Candidate relative bounds, comma-separated (e.g. 1e-3,3e-3,1e-2).
    #[arg(
        long,
        value_name = "E,E,..",
        value_delimiter = ',',
        conflicts_with = "range"
    )]
    pub bounds: Vec<f64>,
    /// Candidates log-spaced from A to B (16 of them, or N) [default: 1e-4:2e-1].
    #[arg(long, value_name = "A:B[:N]")]
    pub range: Option<String>,
    /// Weight of the compression ratio in the score (1 - alpha weighs the kept accuracy).
    #[arg(long, default_value_t = 0.5)]
    pub alpha: f64,
    /// Largest accuracy loss allowed, as a fraction (0.002 = 0.2 points).
    #[arg(long, default_value_t = 0.002)]
    pub max_loss: f64,
    /// Seconds one evaluation may take before it is killed (0: no limit).
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub eval_timeout: u64,
    /// Draw ratio and accuracy against the bound, choice marked, into this SVG file.
    #[arg(long, value_name = "SVG")]
    pub plot: Option<PathBuf>,
    /// Evaluate every candidate (no coarse scan and refinement).
    #[arg(long)]
    pub full_scan: bool,
}

impl SearchArgs {
    /// The search options these arguments give.
    pub fn options(&self) -> anyhow::Result<SearchOptions> {
        let candidates = if !self.bounds.is_empty() {
            self.bounds.clone()
        } else if let Some(r) = &self.range {
            parse_range(r)?
        } else {
            default_candidates()
        };
        let opts = SearchOptions {
            candidates,
            alpha: self.alpha,
            max_loss: self.max_loss,
            full_scan: self.full_scan,
            ..SearchOptions::default()
        };
        opts.validated_candidates()?;
        Ok(opts)
    }

    /// The `--eval-cmd` evaluator, writing candidates with `metadata`.
    pub fn evaluator(
        &self,
        metadata: Option<std::collections::BTreeMap<String, String>>,
    ) -> anyhow::Result<CommandEvaluator> {
        let Some(cmd) = &self.eval_cmd else {
            bail!("--eval-cmd is required to search a bound, e.g. --eval-cmd 'python3 eval.py {{path}}'");
        };
        let timeout = (self.eval_timeout > 0).then(|| Duration::from_secs(self.eval_timeout));
        Ok(CommandEvaluator::new(cmd, timeout)?.with_metadata(metadata))
    }
}

/// `snapstore search FILE`: what bound to commit FILE under, without committing.
#[derive(clap::Args, Clone, Debug)]
pub struct SearchCommand {
    /// The checkpoint file.
    pub file: PathBuf,
    /// Branch whose tip the candidates are coded against (default: HEAD's branch).
    #[arg(long)]
    pub branch: Option<String>,
    /// Snapshot to code against instead of a branch tip.
    #[arg(long, value_name = "REF", conflicts_with = "branch")]
    pub parent: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Search settings.
    #[command(flatten)]
    pub search: SearchArgs,
}

/// The `--bound auto` arguments of `snapstore commit`.
#[derive(clap::Args, Clone, Debug)]
#[command(next_help_heading = "Automatic bound (--bound auto)")]
pub struct AutoArgs {
    /// Search settings.
    #[command(flatten)]
    pub search: SearchArgs,
    /// Search again every N automatic commits on the branch, reusing the remembered bound in
    /// between (remembered per branch; default 1 = every commit).
    #[arg(long, value_name = "N")]
    pub research_every: Option<u32>,
}

impl AutoArgs {
    /// Fails when search settings were given without `--bound auto`.
    pub fn reject_without_auto(&self) -> anyhow::Result<()> {
        if self.search.eval_cmd.is_some() || self.research_every.is_some() {
            bail!("--eval-cmd and --research-every need --bound auto");
        }
        Ok(())
    }
}

fn file_metadata(
    file: &Path,
) -> anyhow::Result<Option<std::collections::BTreeMap<String, String>>> {
    Ok(SafetensorsFile::open(file)?.header().metadata.clone())
}

/// Runs `snapstore search`.
pub fn run_search_command(repo: &Repo, cmd: &SearchCommand) -> anyhow::Result<()> {
    let opts = cmd.search.options()?;
    let mut ev = cmd.search.evaluator(file_metadata(&cmd.file)?)?;
    let report = repo.search_file_on(
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
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
        if let Some(p) = &cmd.search.plot {
            println!("plot written to {}", p.display());
        }
    }
    Ok(())
}

/// Runs `snapstore commit FILE --bound auto`; `opts.bound` is ignored.
pub fn commit_auto_cli(
    repo: &Repo,
    file: &Path,
    opts: CommitOptions,
    args: &AutoArgs,
    json: bool,
) -> anyhow::Result<()> {
    let auto = AutoOptions {
        search: args.search.options()?,
        research_every: args.research_every,
    };
    let mut ev = args.search.evaluator(file_metadata(file)?)?;
    let r = repo
        .commit_file_auto(file, &opts, &auto, &mut ev.as_evaluator())
        .with_context(|| {
            format!(
                "commit {} --bound auto: nothing was committed",
                file.display()
            )
        })?;
    if let (Some(p), Some(s)) = (&args.search.plot, &r.search) {
        plot_svg(s, p)?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    print_auto(&r);
    Ok(())
}

fn print_auto(r: &AutoCommitReport) {
    match &r.search {
        Some(s) => print!("{}", s.table()),
        None => println!(
            "reusing {} ({} commits since the last search; searching every {})",
            r.bound, r.commits_since_search, r.research_every
        ),
    }
    let c = &r.commit;
    println!(
        "[{} {}] {} tensors, {} -> {} ({:.2}x) under {}, {} delta, {} keyframe, {} dedup, {:.2}s",
        c.branch,
        c.snapshot.short(),
        c.tensors,
        human(c.logical_bytes),
        human(c.stored_bytes),
        c.logical_bytes as f64 / c.stored_bytes.max(1) as f64,
        r.bound,
        c.deltas,
        c.keyframes,
        c.deduplicated,
        c.seconds
    );
}
