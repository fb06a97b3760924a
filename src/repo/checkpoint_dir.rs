//! A checkpoint saved as a directory, as `save_pretrained` writes one (`model-0000K-of-0000N
//! .safetensors` shards, their `model.safetensors.index.json`, `config.json`), read and
//! committed as one snapshot (`checkout_dir.rs` writes it back).
//!
//! Tensors keep their names across shards, so each finds its parent's tensor of the same name
//! wherever the shard boundaries fall; the manifest lists the files
//! ([`Manifest::files`](crate::Manifest::files)) so a checkout writes each shard byte for byte.

use std::collections::HashMap;
use std::fs;
use std::ops::Range;
use std::path::Path;

use super::commit::Origin;
use super::plan::Layout;
use super::windows::window_bytes;
use super::{CommitOptions, CommitReport, Repo, TensorInput};
use crate::error::{Error, Result, SafetensorsProblem};
use crate::frames::natural_cmp;
use crate::safetensors_io::SafetensorsFile;
use crate::store::manifest::{CheckpointFile, MAX_INDEX_BYTES, MAX_TEXT_FILE_BYTES};

/// A checkpoint directory opened for a commit: its shards validated, its small JSON files read.
pub(crate) struct CheckpointDir {
    /// Shards in natural name order, with their names.
    shards: Vec<(String, SafetensorsFile)>,
    /// Small JSON files kept as text, in name order.
    texts: Vec<(String, String)>,
    /// What the snapshot will not keep, in name order (a subdirectory ends in `/`).
    left_out: Vec<String>,
}

/// A checkpoint on disk to compare with the repository (`status`, `diff`): a safetensors file or
/// a checkpoint directory.
pub(crate) enum OnDisk {
    File(SafetensorsFile),
    Dir(CheckpointDir),
}

impl OnDisk {
    /// Opens `path`: a directory as [`CheckpointDir::open`] does, anything else as one file.
    pub(crate) fn open(path: &Path) -> Result<OnDisk> {
        Ok(if path.is_dir() {
            OnDisk::Dir(CheckpointDir::open(path)?)
        } else {
            OnDisk::File(SafetensorsFile::open(path)?)
        })
    }

    /// The files a snapshot of it lists (none for one file, whose snapshot lists none).
    pub(crate) fn listed(&self) -> Result<Vec<CheckpointFile>> {
        match self {
            OnDisk::File(_) => Ok(Vec::new()),
            OnDisk::Dir(d) => d.files(),
        }
    }

    /// Its safetensors files, in order.
    pub(crate) fn files(&self) -> Vec<&SafetensorsFile> {
        match self {
            OnDisk::File(f) => vec![f],
            OnDisk::Dir(d) => d.shards.iter().map(|(_, f)| f).collect(),
        }
    }

    /// Fails, naming the file, when one was changed since it was opened.
    pub(crate) fn check_unchanged(&self, undone: &'static str) -> Result<()> {
        self.files()
            .iter()
            .try_for_each(|f| f.check_unchanged(undone))
    }
}

/// Whether a checkpoint directory's snapshot keeps a file named `name` of `len` bytes (not
/// hidden, its name UTF-8): a shard, the shard index up to 64 MiB, another JSON file up to 1 MiB.
pub fn keeps_file(name: &str, len: u64) -> bool {
    let is = |ext| super::has_extension(Path::new(name), ext);
    let max_text = if name.ends_with(".index.json") {
        MAX_INDEX_BYTES
    } else {
        MAX_TEXT_FILE_BYTES
    };
    !name.starts_with('.') && (is("safetensors") || (is("json") && len <= max_text))
}

/// Whether `dir` holds a safetensors file (so that it is a checkpoint directory, not frames).
pub fn holds_safetensors(dir: &Path) -> bool {
    count_safetensors_and_png(dir).0 > 0
}

/// How many `*.safetensors` and `*.png` entries `dir` holds, hidden ones passed over.
pub(crate) fn count_safetensors_and_png(dir: &Path) -> (usize, usize) {
    let (mut safetensors, mut png) = (0, 0);
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            safetensors += super::has_extension(Path::new(&name), "safetensors") as usize;
            png += super::has_extension(Path::new(&name), "png") as usize;
        }
    }
    (safetensors, png)
}

impl CheckpointDir {
    /// Reads `dir`: every `*.safetensors` file in it is a shard (validated now; a bad one is
    /// named), every `*.json` file up to [`MAX_TEXT_FILE_BYTES`] is kept as text, anything else
    /// is left out and listed. Hidden entries (`.cache/`, `.gitattributes`) are passed over.
    /// Fails when no shard is there, when two shards hold a tensor of the same name, or when a
    /// shard index (`*.index.json`) maps a tensor to a shard that is missing or lacks it (a
    /// checkpoint still being written).
    pub(crate) fn open(dir: &Path) -> Result<CheckpointDir> {
        let bad = |problem: String| Error::BadCheckpointDir {
            dir: dir.to_path_buf(),
            problem,
        };
        let mut shard_names = Vec::new();
        let mut texts = Vec::new();
        let mut left_out = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let path = entry.path();
            let lossy = entry.file_name().to_string_lossy().into_owned();
            if lossy.starts_with('.') {
                continue;
            }
            let is = |ext| super::has_extension(Path::new(&lossy), ext);
            let kept_kind = is("safetensors") || is("json");
            // A checkout must write the name back as it was: the manifest holds UTF-8.
            let Ok(name) = entry.file_name().into_string() else {
                if is("safetensors") {
                    return Err(bad(format!("the shard name {lossy:?} is not UTF-8")));
                }
                left_out.push(format!("{lossy} (name not UTF-8)"));
                continue;
            };
            // Followed: a hub cache's snapshot directory holds links to its blobs.
            let meta = match fs::metadata(&path) {
                Ok(meta) => meta,
                Err(e) if kept_kind => return Err(Error::io(&path, e)),
                // A link to a blob never downloaded (a tokenizer): not kept either way.
                Err(_) => {
                    left_out.push(format!("{name} (a link to nothing)"));
                    continue;
                }
            };
            if meta.is_dir() {
                left_out.push(format!("{name}/"));
            } else if is("safetensors") {
                shard_names.push(name);
            } else if keeps_file(&name, meta.len()) {
                let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
                match String::from_utf8(bytes) {
                    Ok(text) => texts.push((name, text)),
                    Err(_) => left_out.push(format!("{name} (not UTF-8)")),
                }
            } else {
                left_out.push(name);
            }
        }
        if shard_names.is_empty() {
            return Err(bad("no *.safetensors file in it to commit".into()));
        }
        shard_names.sort_by(|a, b| natural_cmp(a, b));
        texts.sort_by(|a, b| natural_cmp(&a.0, &b.0));
        left_out.sort_by(|a, b| natural_cmp(a, b));
        let shards = shard_names
            .into_iter()
            .map(|name| {
                let file = SafetensorsFile::open(dir.join(&name))?;
                Ok((name, file))
            })
            .collect::<Result<Vec<_>>>()?;
        let opened = CheckpointDir {
            shards,
            texts,
            left_out,
        };
        check_numbering(opened.shards.iter().map(|(name, _)| name.as_str())).map_err(bad)?;
        opened.check_names().map_err(bad)?;
        opened.check_indexes().map_err(bad)?;
        Ok(opened)
    }

    /// The shards with their file names, in natural name order (the order a commit reads them).
    pub(crate) fn shards(&self) -> impl Iterator<Item = (&str, &SafetensorsFile)> {
        self.shards.iter().map(|(name, file)| (name.as_str(), file))
    }

    /// Each tensor name in one shard only: a checkout of a name must find one tensor.
    fn check_names(&self) -> std::result::Result<(), String> {
        let mut first: HashMap<&str, &str> = HashMap::new();
        for (shard, file) in &self.shards {
            for t in &file.header().tensors {
                if let Some(other) = first.insert(&t.name, shard) {
                    return Err(format!(
                        "tensor {:?} is in both {other} and {shard}: a snapshot holds each \
                         name once",
                        t.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every tensor a shard index maps is in the shard it names.
    fn check_indexes(&self) -> std::result::Result<(), String> {
        for (name, text) in &self.texts {
            if !name.ends_with(".index.json") {
                continue;
            }
            let Ok(json) = serde_json::from_str::<serde_json::Value>(text) else {
                return Err(format!("{name} is not valid JSON"));
            };
            let Some(map) = json.get("weight_map").and_then(|m| m.as_object()) else {
                continue;
            };
            for (tensor, shard) in map {
                let Some(shard) = shard.as_str() else {
                    return Err(format!(
                        "{name} maps tensor {tensor:?} to {shard}, which is not a file name"
                    ));
                };
                let Some((_, file)) = self.shards.iter().find(|(n, _)| n == shard) else {
                    return Err(format!(
                        "{name} maps tensor {tensor:?} to {shard:?}, which is not in the \
                         directory (is the checkpoint still being written?)"
                    ));
                };
                if !file.header().tensors.iter().any(|t| &t.name == tensor) {
                    return Err(format!(
                        "{name} maps tensor {tensor:?} to {shard}, which does not hold it"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The files the snapshot lists: the shards (tensor counts in order), then the texts.
    pub(crate) fn files(&self) -> Result<Vec<CheckpointFile>> {
        let mut files = Vec::new();
        for (name, file) in &self.shards {
            let header = String::from_utf8(file.header().raw.clone()).map_err(|e| {
                Error::BadSafetensors {
                    path: file.path().to_path_buf(),
                    problem: Box::new(SafetensorsProblem::MalformedHeader(e.to_string())),
                }
            })?;
            files.push(CheckpointFile::Safetensors {
                name: name.clone(),
                header,
                tensors: file.header().tensors.len() as u32,
            });
        }
        files.extend(self.texts.iter().map(|(name, text)| CheckpointFile::Text {
            name: name.clone(),
            text: text.clone(),
        }));
        Ok(files)
    }
}

/// `(prefix, K, N)` of a shard named `{prefix}-{K}-of-{N}.safetensors` (`save_pretrained`'s
/// `model-00002-of-00004.safetensors`), N as written.
fn shard_number(name: &str) -> Option<(&str, u32, &str)> {
    let stem = name.get(..name.len().checked_sub(".safetensors".len())?)?;
    let (head, n) = stem.rsplit_once("-of-")?;
    let (prefix, k) = head.rsplit_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(k) && digits(n)).then_some((prefix, k.parse().ok()?, n))
}

/// Shards numbered `K-of-N` come N to a set: a set missing one is a checkpoint still being
/// written (`save_pretrained` writes the index last, so the index check alone misses it).
fn check_numbering<'a>(names: impl Iterator<Item = &'a str>) -> std::result::Result<(), String> {
    let mut sets: HashMap<(&str, &str), Vec<u32>> = HashMap::new();
    for (prefix, k, n) in names.filter_map(shard_number) {
        sets.entry((prefix, n)).or_default().push(k);
    }
    let mut sets: Vec<_> = sets.into_iter().collect();
    sets.sort();
    for ((prefix, n), ks) in sets {
        let count: u32 = n.parse().unwrap_or(u32::MAX);
        if let Some(missing) = (1..=count).find(|k| !ks.contains(k)) {
            let width = n.len();
            return Err(format!(
                "holds {} of the {count} shards {prefix}-*-of-{n}.safetensors, not \
                 {prefix}-{missing:0width$}-of-{n}.safetensors (is the checkpoint still being \
                 written?)",
                ks.len()
            ));
        }
    }
    Ok(())
}

impl Repo {
    /// Commits a checkpoint directory ([`CheckpointDir::open`] says what it keeps) as one
    /// snapshot: each tensor coded against the parent's tensor of the same name, whichever
    /// shard either is in. A checkout of the whole snapshot writes the directory back, each
    /// kept file byte for byte (lossless); [`CommitReport::left_out`] names what it did not keep.
    pub fn commit_dir(&self, dir: impl AsRef<Path>, opts: &CommitOptions) -> Result<CommitReport> {
        let dir = dir.as_ref();
        let opened = CheckpointDir::open(dir)?;
        let mut inputs = Vec::new();
        // Which shard each input comes from, and its index there.
        let mut at: Vec<(usize, usize)> = Vec::new();
        for (s, (_, file)) in opened.shards.iter().enumerate() {
            inputs.extend(TensorInput::all_of(file));
            at.extend((0..file.header().tensors.len()).map(|t| (s, t)));
        }
        let whole: usize = inputs.iter().map(|t| t.data.len()).sum();
        // As for one file: pages go once used, unless the whole fits one coding window.
        let keep_resident = whole <= window_bytes();
        let release = |t: usize, r: Range<usize>| {
            if !keep_resident {
                let (s, i) = at[t];
                let file = &opened.shards[s].1;
                file.release(&file.header().tensors[i], r)
            }
        };
        let unchanged = || {
            opened
                .shards
                .iter()
                .try_for_each(|(_, f)| f.check_unchanged("stored"))
        };
        let origin = Origin {
            metadata: None,
            header: String::new(),
            // `commit .` names the directory it was run in.
            source: fs::canonicalize(dir)
                .ok()
                .as_deref()
                .unwrap_or(dir)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned()),
            files: opened.files()?,
        };
        let mut report =
            self.commit_inner(&inputs, origin, opts, Layout::Tensors, &release, &unchanged)?;
        report.left_out = opened.left_out;
        Ok(report)
    }
}
