//! How a command evaluator writes a candidate: in the form of the checkpoint it stands for, so
//! the user's evaluator loads it as it loads that checkpoint. One safetensors file is written as
//! one file with its `__metadata__`; a checkpoint directory as a directory whose shards are
//! rewritten (each with its own tensors and `__metadata__`, under its own name) and whose other
//! entries (`config.json`, the shard index, the tokenizer, subdirectories) are links to the
//! originals, so `from_pretrained(path)` finds everything it would find in the real one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::repo::{CheckedOutTensor, OnDisk};
use crate::safetensors_io::{canonical_header, write_header_prefix};

/// What a candidate is written as.
#[derive(Clone, Debug)]
pub(crate) enum CandidateForm {
    /// One safetensors file with this `__metadata__`.
    File {
        metadata: Option<BTreeMap<String, String>>,
    },
    /// A directory like `source`: `shards` rewritten, every other entry of `source` linked.
    Dir { source: PathBuf, shards: Vec<Shard> },
}

/// One shard of a checkpoint directory: its file name, the tensors it holds, its metadata.
#[derive(Clone, Debug)]
pub(crate) struct Shard {
    name: String,
    tensors: Vec<String>,
    metadata: Option<BTreeMap<String, String>>,
}

impl CandidateForm {
    /// The form of the checkpoint at `path`: a safetensors file or a checkpoint directory.
    pub(crate) fn of(path: &Path) -> Result<CandidateForm> {
        Ok(match OnDisk::open(path)? {
            OnDisk::File(file) => CandidateForm::File {
                metadata: file.header().metadata.clone(),
            },
            OnDisk::Dir(dir) => CandidateForm::Dir {
                // Absolute, so the links hold from the evaluator's temporary directory.
                source: fs::canonicalize(path).map_err(|e| Error::io(path, e))?,
                shards: dir
                    .shards()
                    .map(|(name, file)| Shard {
                        name: name.to_string(),
                        tensors: file
                            .header()
                            .tensors
                            .iter()
                            .map(|t| t.name.clone())
                            .collect(),
                        metadata: file.header().metadata.clone(),
                    })
                    .collect(),
            },
        })
    }

    /// The name of the `n`-th candidate in the evaluator's directory.
    pub(crate) fn name(&self, n: usize) -> String {
        match self {
            CandidateForm::File { .. } => format!("candidate-{n}.safetensors"),
            CandidateForm::Dir { .. } => format!("candidate-{n}"),
        }
    }

    /// Writes `tensors` at `at` in this form.
    pub(crate) fn write(
        &self,
        at: &Path,
        tensors: &[CheckedOutTensor],
    ) -> std::result::Result<(), String> {
        match self {
            CandidateForm::File { metadata } => {
                write_safetensors(at, metadata.as_ref(), &tensors.iter().collect::<Vec<_>>())
            }
            CandidateForm::Dir { source, shards } => write_dir(at, source, shards, tensors),
        }
    }

    /// Removes a candidate written at `at` (a directory's links, never what they name).
    pub(crate) fn remove(&self, at: &Path) {
        let _ = match self {
            CandidateForm::File { .. } => fs::remove_file(at),
            CandidateForm::Dir { .. } => fs::remove_dir_all(at),
        };
    }
}

fn write_dir(
    at: &Path,
    source: &Path,
    shards: &[Shard],
    tensors: &[CheckedOutTensor],
) -> std::result::Result<(), String> {
    let shown = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    fs::create_dir(at).map_err(|e| shown(at, e))?;
    let by_name: HashMap<&str, &CheckedOutTensor> =
        tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    for shard in shards {
        let held = shard
            .tensors
            .iter()
            .map(|name| {
                by_name
                    .get(name.as_str())
                    .copied()
                    .ok_or_else(|| format!("the candidate lacks tensor {name:?} of {}", shard.name))
            })
            .collect::<std::result::Result<Vec<_>, String>>()?;
        write_safetensors(&at.join(&shard.name), shard.metadata.as_ref(), &held)?;
    }
    let rewritten: HashSet<&str> = shards.iter().map(|s| s.name.as_str()).collect();
    for entry in fs::read_dir(source).map_err(|e| shown(source, e))? {
        let entry = entry.map_err(|e| shown(source, e))?;
        let name = entry.file_name();
        if !name.to_str().is_some_and(|n| rewritten.contains(n)) {
            link(&entry.path(), &at.join(&name))?;
        }
    }
    Ok(())
}

#[cfg(unix)]
fn link(original: &Path, at: &Path) -> std::result::Result<(), String> {
    std::os::unix::fs::symlink(original, at).map_err(|e| format!("{}: {e}", at.display()))
}

/// Without symbolic links, the files are copied (subdirectories are left out).
#[cfg(not(unix))]
fn link(original: &Path, at: &Path) -> std::result::Result<(), String> {
    if original.is_file() {
        fs::copy(original, at).map_err(|e| format!("{}: {e}", at.display()))?;
    }
    Ok(())
}

fn write_safetensors(
    path: &Path,
    metadata: Option<&BTreeMap<String, String>>,
    tensors: &[&CheckedOutTensor],
) -> std::result::Result<(), String> {
    let specs: Vec<_> = tensors
        .iter()
        .map(|t| (t.name.clone(), t.dtype, t.shape.clone()))
        .collect();
    let (raw, order) = canonical_header(metadata, &specs).map_err(|e| e.to_string())?;
    let by_name: HashMap<&str, &CheckedOutTensor> =
        tensors.iter().map(|t| (t.name.as_str(), *t)).collect();
    let io = |e: std::io::Error| format!("{}: {e}", path.display());
    let file = fs::File::create(path).map_err(io)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    write_header_prefix(&mut out, &raw).map_err(io)?;
    for info in &order {
        out.write_all(&by_name[info.name.as_str()].data)
            .map_err(io)?;
    }
    out.flush().map_err(io)
}
