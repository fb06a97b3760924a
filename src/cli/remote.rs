//! The remote commands: `remote add|list|remove|checkout|gc`, `push`, `fetch`, `pull`, `clone`.
//! Parse, call the library, print (text or `--json`); nothing a trainer could not call itself.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand};
use snapstore::{Progress, PushOptions, RemoteSpec, Repo};

use super::print::{checkout_report, human, json_pretty, output_path};

/// `snapstore remote ...`.
#[derive(Subcommand)]
pub enum RemoteCommand {
    /// Remember a remote: `s3://bucket/prefix` (credentials from the AWS environment variables
    /// or ~/.aws/credentials) or a directory path (a shared mount).
    Add {
        /// Its name (`origin` is what push, fetch and pull use by default).
        name: String,
        /// `s3://bucket/prefix` or a directory.
        url: String,
        #[command(flatten)]
        s3: S3Args,
    },
    /// List the remotes.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Forget a remote and its tracking refs (the remote itself is left alone).
    Remove {
        /// Its name.
        name: String,
    },
    /// Write a remote snapshot (or some tensors) as a safetensors file without cloning:
    /// downloads only the chunks those tensors need.
    Checkout {
        /// A remote's name, or its URL.
        remote: String,
        /// A remote branch, tag, snapshot id or id prefix (4+ hex digits), optionally with ~N
        /// (N first parents back); HEAD is the remote's main, else its first branch.
        #[arg(value_name = "REF")]
        spec: String,
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
        /// Only these tensors (repeatable).
        #[arg(long = "tensor", value_name = "NAME")]
        tensors: Vec<String>,
        #[command(flatten)]
        s3: S3Args,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove the snapshot records and packs no remote branch or tag reaches (left by forced
    /// or interrupted pushes and deleted refs), keeping those younger than --grace.
    Gc(RemoteGcArgs),
    /// Check that every snapshot a remote branch or tag reaches has its record and every pack
    /// they need is there (with --deep: downloaded and verified); --repair puts back what this
    /// repository holds. Exits 1 when a problem remains.
    Fsck(RemoteFsckArgs),
}

/// The `remote fsck` arguments.
#[derive(Args)]
pub struct RemoteFsckArgs {
    /// A remote's name, or its URL.
    remote: String,
    /// Download every pack the refs need and verify it as a fetch does (every byte).
    #[arg(long)]
    deep: bool,
    /// Upload what this repository holds of what is missing or damaged, then check again.
    #[arg(long)]
    repair: bool,
    #[command(flatten)]
    s3: S3Args,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// The `remote gc` arguments.
#[derive(Args)]
pub struct RemoteGcArgs {
    /// A remote's name, or its URL.
    remote: String,
    /// Report what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Keep unreachable objects younger than this many seconds (a push in flight uploads its
    /// packs and records before its ref moves to them).
    #[arg(long, default_value_t = 3600, allow_negative_numbers = true, value_parser = super::seconds)]
    grace: u64,
    #[command(flatten)]
    s3: S3Args,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// S3 endpoint options.
#[derive(Args, Clone, Default)]
pub struct S3Args {
    /// An S3-compatible endpoint, e.g. http://127.0.0.1:9000 (default: AWS).
    #[arg(long)]
    endpoint: Option<String>,
    /// The S3 region (default: AWS_REGION, the AWS config file, else us-east-1).
    #[arg(long)]
    region: Option<String>,
}

/// `snapstore push`.
#[derive(Args)]
pub struct PushArgs {
    /// A remote's name (default origin) or URL.
    #[arg(default_value = "origin")]
    remote: String,
    /// Branches or tags to push (default: HEAD's branch).
    #[arg(value_name = "REF")]
    refs: Vec<String>,
    /// Delete this branch or tag on the remote instead of pushing (repeatable); refused when
    /// the remote ref is not where this repository last saw it.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["refs", "force", "no_rebase"])]
    delete: Vec<String>,
    /// Move the remote ref even if that drops snapshots from it.
    #[arg(long)]
    force: bool,
    /// When the remote branch moved on, refuse instead of re-parenting the local snapshots on
    /// top of it.
    #[arg(long)]
    no_rebase: bool,
    /// With a URL: its S3 endpoint and region (a configured remote has its own).
    #[command(flatten)]
    s3: S3Args,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `snapstore fetch`.
#[derive(Args)]
pub struct FetchArgs {
    /// A remote's name (default origin) or URL.
    #[arg(default_value = "origin")]
    remote: String,
    /// Branches or tags to fetch (default: all).
    #[arg(value_name = "REF")]
    refs: Vec<String>,
    /// With a URL: its S3 endpoint and region (a configured remote has its own).
    #[command(flatten)]
    s3: S3Args,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `snapstore pull`.
#[derive(Args)]
pub struct PullArgs {
    /// A remote's name (default origin) or URL.
    #[arg(default_value = "origin")]
    remote: String,
    /// The branch (default: HEAD's).
    branch: Option<String>,
    /// With a URL: its S3 endpoint and region (a configured remote has its own).
    #[command(flatten)]
    s3: S3Args,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `snapstore clone`.
#[derive(Args)]
pub struct CloneArgs {
    /// `s3://bucket/prefix` or a directory.
    url: String,
    /// The new repository (default: ./.snapstore, or --repo).
    dir: Option<PathBuf>,
    #[command(flatten)]
    s3: S3Args,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl RemoteCommand {
    /// Whether it prints JSON (no progress bars then).
    pub fn json(&self) -> bool {
        match self {
            RemoteCommand::List { json }
            | RemoteCommand::Checkout { json, .. }
            | RemoteCommand::Gc(RemoteGcArgs { json, .. })
            | RemoteCommand::Fsck(RemoteFsckArgs { json, .. }) => *json,
            _ => false,
        }
    }
}

impl PushArgs {
    /// Whether it prints JSON.
    pub fn json(&self) -> bool {
        self.json
    }
}

impl FetchArgs {
    /// Whether it prints JSON.
    pub fn json(&self) -> bool {
        self.json
    }
}

impl PullArgs {
    /// Whether it prints JSON.
    pub fn json(&self) -> bool {
        self.json
    }
}

impl CloneArgs {
    /// Whether it prints JSON.
    pub fn json(&self) -> bool {
        self.json
    }
}

fn spec_of(url: &str, s3: &S3Args) -> snapstore::Result<RemoteSpec> {
    Ok(RemoteSpec::new(url)?
        .with_endpoint(s3.endpoint.clone())
        .with_region(s3.region.clone()))
}

fn rate(bytes: u64, seconds: f64) -> String {
    format!(
        "{} in {seconds:.2}s, {:.1} MB/s",
        human(bytes),
        bytes as f64 / 1e6 / seconds.max(1e-9)
    )
}

/// Runs `snapstore remote ...`. `open` opens the repository; `progress` draws bars.
pub fn remote(
    cmd: RemoteCommand,
    open: &dyn Fn() -> snapstore::Result<Repo>,
    progress: Option<snapstore::ProgressCallback>,
) -> Result<()> {
    match cmd {
        RemoteCommand::Add { name, url, s3 } => {
            let spec = open()?.add_remote(&name, spec_of(&url, &s3)?)?;
            println!("added remote {name}: {}", spec.url);
        }
        RemoteCommand::List { json } => {
            let all = open()?.remotes()?;
            if json {
                return json_pretty(&all);
            }
            for (name, spec) in all {
                match &spec.endpoint {
                    Some(e) => println!("{name}\t{} (endpoint {e})", spec.url),
                    None => println!("{name}\t{}", spec.url),
                }
            }
        }
        RemoteCommand::Remove { name } => {
            let spec = open()?.remove_remote(&name)?;
            println!("removed remote {name} ({})", spec.url);
        }
        RemoteCommand::Checkout {
            remote,
            spec,
            output,
            tensors,
            s3,
            json,
        } => {
            let remote_spec = named_or_url(open, &remote, &s3)?;
            let names = (!tensors.is_empty()).then_some(&tensors[..]);
            let output = output_path(output);
            let streamed = snapstore::is_stream(&output);
            let none = |_: Progress| {};
            let r = snapstore::remote_checkout_to_file(
                &remote_spec,
                &spec,
                &output,
                names,
                progress.as_deref().unwrap_or(&none),
            )?;
            let line = format!(
                "wrote {} ({} tensors, {}) from {} of {}; downloaded {} in {} requests, {:.2}s",
                r.path.display(),
                r.tensors,
                human(r.bytes),
                r.snapshot.short(),
                r.remote,
                human(r.downloaded_bytes),
                r.requests,
                r.seconds
            );
            checkout_report(&r, &line, json, streamed, r.replaced_link.as_deref())?;
        }
        RemoteCommand::Fsck(a) => {
            let r = if a.repair {
                // Repaired from this repository: the remote by name or URL, as push takes it.
                let repo = open()?;
                if a.s3.endpoint.is_some() || a.s3.region.is_some() {
                    repo.repair_remote_at(&spec_of(&a.remote, &a.s3)?, a.deep)?
                } else {
                    repo.repair_remote(&a.remote, a.deep)?
                }
            } else {
                snapstore::remote_fsck(&named_or_url(open, &a.remote, &a.s3)?, a.deep)?
            };
            if a.json {
                json_pretty(&r)?;
            } else {
                for p in &r.problems {
                    println!(
                        "{}: {} (reached from {})",
                        p.object, p.problem, p.reached_from
                    );
                }
                for o in &r.repaired {
                    println!("{o}: put back");
                }
                println!(
                    "{}: {} ref(s), {} snapshot(s), {} pack(s){}; {}",
                    r.remote,
                    r.refs,
                    r.snapshots,
                    r.packs,
                    if r.deep {
                        " downloaded and verified"
                    } else {
                        ""
                    },
                    match r.problems.len() {
                        0 => "clean".to_string(),
                        n => format!("{n} problem(s)"),
                    }
                );
            }
            if !r.clean {
                std::process::exit(1);
            }
        }
        RemoteCommand::Gc(a) => {
            let spec = named_or_url(open, &a.remote, &a.s3)?;
            let r = snapstore::remote_gc(&spec, a.dry_run, Duration::from_secs(a.grace))?;
            if a.json {
                return json_pretty(&r);
            }
            println!(
                "{} snapshot record(s), {} pack(s) and {} unfinished upload(s) {} ({}) \
                 from {}; {} snapshot(s) in {} pack(s) reached by {} ref(s); kept younger than \
                 {}s: {} record(s), {} pack(s)",
                r.removed_snapshots.len(),
                r.removed_packs.len(),
                r.removed_uploads,
                if r.dry_run {
                    "would be removed"
                } else {
                    "removed"
                },
                human(r.removed_bytes),
                r.remote,
                r.live_snapshots,
                r.live_packs,
                r.refs,
                r.grace_s,
                r.young_snapshots,
                r.young_packs
            );
        }
    }
    Ok(())
}

/// The remote `remote` names: with an endpoint or region, the URL as given (needs no
/// repository); else a configured name or a URL, as the library reads it
/// ([`Repo::remote_spec`]); outside a repository only a URL.
fn named_or_url(
    open: &dyn Fn() -> snapstore::Result<Repo>,
    remote: &str,
    s3: &S3Args,
) -> snapstore::Result<RemoteSpec> {
    if s3.endpoint.is_some() || s3.region.is_some() {
        return spec_of(remote, s3);
    }
    match open() {
        Ok(repo) => Ok(repo.remote_spec(remote)?.1),
        // A bare word names a remote, which only a repository keeps: say why there is none.
        Err(e) if RemoteSpec::is_name(remote) => Err(e),
        Err(_) => spec_of(remote, s3),
    }
}

/// Names the remote refs a fetch passed over as damaged.
fn warn_damaged(r: &snapstore::FetchReport) {
    for d in &r.damaged_refs {
        eprintln!("warning: not fetched: {d}");
    }
}

/// A URL given with --endpoint or --region, used as given (no tracking refs); `None` without
/// them (a configured name, or a plain URL).
fn given_spec(remote: &str, s3: &S3Args) -> snapstore::Result<Option<RemoteSpec>> {
    match s3.endpoint.is_some() || s3.region.is_some() {
        true => spec_of(remote, s3).map(Some),
        false => Ok(None),
    }
}

/// Runs `snapstore push`.
pub fn push(args: PushArgs, repo: &Repo) -> Result<()> {
    let at = given_spec(&args.remote, &args.s3)?;
    if !args.delete.is_empty() {
        let mut deleted = Vec::new();
        for name in &args.delete {
            let d = match &at {
                Some(spec) => repo.delete_remote_ref_at(spec, name)?,
                None => repo.delete_remote_ref(&args.remote, name)?,
            };
            if !args.json {
                let old = d.old.map_or("(damaged)".to_string(), |o| o.short());
                println!("{}: {old} -> (deleted) on {}", d.key, d.remote);
            }
            deleted.push(d);
        }
        if args.json {
            return json_pretty(&serde_json::json!({ "deleted": deleted }));
        }
        return Ok(());
    }
    let opts = PushOptions {
        force: args.force,
        no_rebase: args.no_rebase,
    };
    // Ctrl-C stops the push through the library (which aborts an unfinished S3 multipart
    // upload) before the process ends, not by ending it mid-upload.
    let stop = Arc::new(AtomicBool::new(false));
    let repo = repo.clone().with_interrupt(stop.clone());
    let r = snapstore::stop_on_signals(&stop, || match &at {
        Some(spec) => repo.push_at(spec, &args.refs, opts),
        None => repo.push(&args.remote, &args.refs, opts),
    })?;
    if args.json {
        return json_pretty(&r);
    }
    for p in &r.refs {
        let old = p.old.map_or("(new)".to_string(), |o| o.short());
        let extra = match p.rebased {
            0 => String::new(),
            n => format!(", {n} local snapshot(s) re-parented onto the remote's"),
        };
        println!(
            "{}: {old} -> {} ({}{extra})",
            p.key,
            p.new.short(),
            p.status
        );
    }
    println!(
        "pushed to {}: {} snapshot record(s), {} pack(s) uploaded ({}), {} already there",
        r.remote,
        r.snapshots,
        r.packs_uploaded,
        rate(r.bytes, r.seconds),
        r.packs_present
    );
    Ok(())
}

/// Runs `snapstore fetch`.
pub fn fetch(args: FetchArgs, repo: &Repo) -> Result<()> {
    let r = match given_spec(&args.remote, &args.s3)? {
        Some(spec) => repo.fetch_at(&spec, &args.refs)?,
        None => repo.fetch(&args.remote, &args.refs)?,
    };
    warn_damaged(&r);
    // Fetched by URL, nothing keeps what came: say so before a gc takes it.
    let tracked = repo.remotes()?.contains_key(&args.remote);
    if !tracked && !r.refs.is_empty() {
        eprintln!(
            "note: {} is not a configured remote, so no remote-tracking ref keeps what was \
             fetched: the next gc removes what no local branch or tag reaches (`snapstore \
             remote add NAME URL`, then `fetch NAME`, keeps remotes/NAME/...; `pull` moves the \
             branch)",
            args.remote
        );
    }
    if args.json {
        return json_pretty(&r);
    }
    for f in &r.refs {
        println!("{}: {}", f.key, f.snapshot.short());
    }
    for p in &r.pruned {
        println!("{p}: removed (gone from the remote)");
    }
    println!(
        "fetched from {}: {} new snapshot(s), {} pack(s) ({})",
        r.remote,
        r.snapshots,
        r.packs,
        rate(r.bytes, r.seconds)
    );
    Ok(())
}

/// Runs `snapstore pull`.
pub fn pull(args: PullArgs, repo: &Repo) -> Result<()> {
    let r = match given_spec(&args.remote, &args.s3)? {
        Some(spec) => repo.pull_at(&spec, args.branch.as_deref())?,
        None => repo.pull(&args.remote, args.branch.as_deref())?,
    };
    if args.json {
        return json_pretty(&r);
    }
    let old = r.old.map_or("(new)".to_string(), |o| o.short());
    println!(
        "{}: {old} -> {} ({}); fetched {} new snapshot(s), {}",
        r.branch,
        r.new.short(),
        r.status,
        r.fetch.snapshots,
        rate(r.fetch.bytes, r.fetch.seconds)
    );
    Ok(())
}

/// Runs `snapstore clone`; the repository goes to `dir`, else `--repo`, else ./.snapstore.
pub fn clone(
    args: CloneArgs,
    repo_dir: Option<PathBuf>,
    progress: Option<snapstore::ProgressCallback>,
) -> Result<()> {
    let dir = args
        .dir
        .clone()
        .or(repo_dir)
        .unwrap_or_else(|| PathBuf::from(snapstore::DEFAULT_REPO_DIR));
    let spec = spec_of(&args.url, &args.s3)?;
    let (_, r) = Repo::clone_remote(spec, &dir, progress)?;
    warn_damaged(&r.fetch);
    if args.json {
        return json_pretty(&r);
    }
    println!(
        "cloned {} into {}: {} branch(es), {} tag(s), HEAD on {}; {} snapshot(s), {}",
        r.fetch.remote,
        r.path.display(),
        r.branches.len(),
        r.tags.len(),
        r.head.as_deref().unwrap_or("(none)"),
        r.fetch.snapshots,
        rate(r.fetch.bytes, r.fetch.seconds)
    );
    Ok(())
}
