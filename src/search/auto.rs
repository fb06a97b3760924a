//! `commit --bound auto`: search the bound, commit with the choice, remember it for the branch.
//!
//! The chosen bound is remembered for the branch's later automatic commits (config
//! `search.bound.BRANCH`). It is not the branch's bound (`bound.BRANCH`, which plain commits
//! use): a plain commit after an automatic run is stored as the user configured, lossless by
//! default, never under a bound no evaluator checked for it. (Before, the choice was written
//! to `bound.BRANCH`; such a repository's automatic commits still read it from there.) With `research_every = N`, an automatic commit searches again only
//! when `N` commits have been made since the last search (counted in config
//! `search.since.BRANCH`, the searching commit counting as 1; `N` itself is remembered in
//! `search.research_every.BRANCH`); in between it reuses the remembered bound. Without it every
//! automatic commit searches (N = 1). A search failure commits nothing and changes no setting.
//!
//! A reused bound is re-checked on the snapshot at hand first (two evaluations: the snapshot and
//! its coding under the bound, coded by the commit's own planner): a bound that was safe early
//! may not be later in a run, or the other way round. When it loses more than `max_loss`, the
//! commit searches again at once and the interval restarts; that search takes the check's two
//! evaluations instead of repeating them.
//!
//! A searched snapshot records in its meta `search.bound`, `search.ratio`, `search.accuracy`,
//! `search.baseline_accuracy`, `search.loss` and `search.evaluations`; a snapshot that reused
//! the remembered bound records `search.reused_bound` and `search.reused_loss`; one whose
//! remembered bound failed its check records `search.rejected_bound`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::{Evaluator, SearchOptions, SearchReport};
use crate::error::{Error, Result};
use crate::repo::{CommitOptions, CommitReport, Repo, TensorInput};
use crate::store::manifest::Bound;

/// How `--bound auto` searches.
#[derive(Clone, Debug, Default)]
pub struct AutoOptions {
    /// The search itself (its codec, keyframe interval and chunk size are taken from the
    /// commit's options).
    pub search: SearchOptions,
    /// Search again every N automatic commits on the branch (default: the branch's remembered
    /// value, else 1 = every commit).
    pub research_every: Option<u32>,
}

/// What an automatic commit did.
#[derive(Clone, Debug, Serialize)]
pub struct AutoCommitReport {
    /// The commit.
    #[serde(flatten)]
    pub commit: CommitReport,
    /// Whether this commit searched (else it reused the remembered bound).
    pub searched: bool,
    /// Search interval in commits.
    pub research_every: u32,
    /// Automatic commits since the last search, this one included.
    pub commits_since_search: u32,
    /// The check of a remembered bound on this snapshot, when there was one (its only
    /// candidate is the remembered bound; `fell_back_to_lossless` means it failed).
    pub recheck: Option<SearchReport>,
    /// The search, when there was one.
    pub search: Option<SearchReport>,
}

fn bound_key(branch: &str) -> String {
    format!("search.bound.{branch}")
}

fn since_key(branch: &str) -> String {
    format!("search.since.{branch}")
}

fn every_key(branch: &str) -> String {
    format!("search.research_every.{branch}")
}

impl Repo {
    /// Commits a checkpoint (a safetensors file or a checkpoint directory) under an
    /// automatically searched bound (see the module docs of `search`). `opts.bound` is ignored.
    pub fn commit_checkpoint_auto(
        &self,
        path: impl AsRef<Path>,
        opts: &CommitOptions,
        auto: &AutoOptions,
        evaluator: &mut Evaluator,
    ) -> Result<AutoCommitReport> {
        let path = path.as_ref();
        self.commit_auto_inner(
            opts,
            auto,
            &mut |repo, branch, search, prior| {
                repo.search_checkpoint_after(path, None, Some(branch), search, prior, evaluator)
            },
            &|repo, o| match path.is_dir() {
                true => repo.commit_dir(path, o),
                false => repo.commit_file(path, o),
            },
        )
    }

    /// Commits tensors held in memory under an automatically searched bound. `opts.bound` is
    /// ignored.
    pub fn commit_tensors_auto(
        &self,
        tensors: &[TensorInput],
        metadata: Option<BTreeMap<String, String>>,
        opts: &CommitOptions,
        auto: &AutoOptions,
        evaluator: &mut Evaluator,
    ) -> Result<AutoCommitReport> {
        let mut guarded;
        let evaluator: &mut Evaluator = if opts.shared_inputs {
            guarded = super::guard_inputs(tensors, evaluator);
            &mut *guarded
        } else {
            evaluator
        };
        self.commit_auto_inner(
            opts,
            auto,
            &mut |repo, branch, search, prior| {
                let inputs = tensors.to_vec();
                repo.search_inner(inputs, None, Some(branch), search, prior, evaluator)
            },
            &|repo, o| repo.commit_tensors(tensors, metadata.clone(), o),
        )
    }

    #[allow(clippy::type_complexity)]
    fn commit_auto_inner(
        &self,
        opts: &CommitOptions,
        auto: &AutoOptions,
        search: &mut dyn FnMut(
            &Repo,
            &str,
            &SearchOptions,
            Option<&SearchReport>,
        ) -> Result<SearchReport>,
        commit: &dyn Fn(&Repo, &CommitOptions) -> Result<CommitReport>,
    ) -> Result<AutoCommitReport> {
        if auto.research_every == Some(0) {
            return Err(Error::invalid("research interval", "must be at least 1"));
        }
        if let Some(k) = opts.meta.keys().find(|k| k.starts_with("search.")) {
            // The commit writes its own search.* figures: they would silently replace the user's.
            return Err(Error::invalid(
                "meta",
                format!("{k:?}: keys starting with \"search.\" hold an automatic commit's figures; name it otherwise"),
            ));
        }
        let branch = match &opts.branch {
            Some(b) => b.clone(),
            None => self.head_branch()?,
        };
        let every = match auto.research_every {
            Some(n) => n,
            None => self
                .config_get(&every_key(&branch))?
                .and_then(|v| v.parse().ok())
                .filter(|n| *n >= 1)
                .unwrap_or(1),
        };
        let since: Option<u32> = self
            .config_get(&since_key(&branch))?
            .and_then(|v| v.parse().ok());
        let remembered = match self.config_get(&bound_key(&branch))? {
            Some(b) => Some(b),
            // Written by a version that kept the choice as the branch's bound.
            None if since.is_some() => self.config_get(&format!("bound.{branch}"))?,
            None => None,
        }
        .and_then(|s| s.parse::<Bound>().ok());
        let mut o = opts.clone();
        o.branch = Some(branch.clone());
        let due = match (remembered, since) {
            (Some(b), Some(n)) if n < every => Some((b, n)),
            _ => None,
        };
        let recheck = match due {
            Some((Bound::Rel(eps), _)) => {
                let only = SearchOptions {
                    candidates: vec![eps],
                    full_scan: true,
                    ..auto.search.clone().for_commit(opts)
                };
                Some(search(self, &branch, &only, None)?)
            }
            _ => None,
        };
        let rejected = recheck.as_ref().is_some_and(|r| r.fell_back_to_lossless);
        let reuse = due.filter(|_| !rejected);
        if let (true, Some((b, _))) = (rejected, due) {
            o.meta.insert("search.rejected_bound".into(), b.to_string());
        }
        let (report, searched, since_now) = if let Some((b, n)) = reuse {
            o.bound = Some(b);
            o.meta.insert("search.reused_bound".into(), b.to_string());
            if let Some(r) = &recheck {
                o.meta
                    .insert("search.reused_loss".into(), format!("{}", r.chosen.loss));
            }
            let c = commit(self, &o)?;
            (
                AutoCommitReport {
                    commit: c,
                    searched: false,
                    research_every: every,
                    commits_since_search: n + 1,
                    search: None,
                    recheck,
                },
                None,
                n + 1,
            )
        } else {
            // A failed re-check measured the original and the remembered bound already.
            let for_commit = auto.search.clone().for_commit(opts);
            let s = search(self, &branch, &for_commit, recheck.as_ref())?;
            let chosen = s.bound();
            o.bound = Some(chosen);
            let meta = [
                ("search.bound", chosen.to_string()),
                ("search.ratio", format!("{:.4}", s.chosen.ratio)),
                ("search.accuracy", format!("{}", s.chosen.accuracy)),
                (
                    "search.baseline_accuracy",
                    format!("{}", s.baseline_accuracy),
                ),
                ("search.loss", format!("{}", s.chosen.loss)),
                ("search.evaluations", s.evaluations.to_string()),
            ];
            for (k, v) in meta {
                o.meta.insert(k.into(), v);
            }
            let c = commit(self, &o)?;
            let b = chosen.to_string();
            (
                AutoCommitReport {
                    commit: c,
                    searched: true,
                    research_every: every,
                    commits_since_search: 1,
                    search: Some(s),
                    recheck,
                },
                Some(b),
                1,
            )
        };
        // Settings change only once the commit has landed.
        if let Some(b) = searched {
            self.config_set(&bound_key(&branch), &b)?;
        }
        self.config_set(&since_key(&branch), &since_now.to_string())?;
        if let Some(n) = auto.research_every {
            self.config_set(&every_key(&branch), &n.to_string())?;
        }
        Ok(report)
    }
}
