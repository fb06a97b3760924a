//! The ref log: every ref and config change appended to a plain file and fsynced before the
//! index is flushed, so the refs and settings (which exist nowhere else) survive the loss of
//! the sled index.
//!
//! One line per change: `<ref> <new id hex | ->`, `HEAD <branch>` for HEAD, `cfg.<key>
//! <value | ->` for a setting. Replaying the lines in order gives the current state.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::object_id::ObjectId;
use crate::error::{Error, Result};
use crate::fsutil::io_step;

/// The ref log of a repository.
pub struct RefLog {
    path: PathBuf,
}

/// Refs as the log last recorded them.
#[derive(Debug, Default, PartialEq)]
pub struct LoggedRefs {
    /// `heads/..` and `tags/..` keys with their snapshots.
    pub refs: BTreeMap<String, ObjectId>,
    /// The branch HEAD named last.
    pub head: Option<String>,
    /// `cfg.<key>` settings with their values.
    pub config: BTreeMap<String, String>,
}

impl RefLog {
    /// The log of the repository in `repo`.
    pub fn new(repo: &Path) -> Self {
        RefLog {
            path: repo.join("refs.log"),
        }
    }

    /// Appends one change durably.
    pub fn record(&self, key: &str, value: Option<&str>) -> Result<()> {
        let mut f = io_step("ref log open")
            .and_then(|_| {
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
            })
            .map_err(|e| Error::io(&self.path, e))?;
        if value.is_some_and(|v| v.contains('\n') || v == "-") {
            // A line per change: such a value would replay as something else.
            return Err(Error::invalid(
                "setting",
                format!("{key}: the value {value:?} cannot be logged"),
            ));
        }
        let line = format!("{key} {}\n", value.unwrap_or("-"));
        io_step("ref log append")
            .and_then(|_| f.write_all(line.as_bytes()))
            .and_then(|_| io_step("ref log fsync"))
            .and_then(|_| {
                let _t = crate::profile::time(crate::profile::Stage::Fsync);
                f.sync_data()
            })
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Replays the log. Lines torn by a crash, or naming no valid id, are skipped.
    pub fn replay(&self) -> Result<LoggedRefs> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LoggedRefs::default()),
            Err(e) => return Err(Error::io(&self.path, e)),
        };
        let mut out = LoggedRefs::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(' ') else {
                continue;
            };
            if key == "HEAD" {
                out.head = Some(value.to_string());
            } else if key.starts_with("cfg.") {
                match value {
                    "-" => out.config.remove(key),
                    v => out.config.insert(key.to_string(), v.to_string()),
                };
            } else if value == "-" {
                out.refs.remove(key);
            } else if let Ok(id) = value.parse::<ObjectId>() {
                out.refs.insert(key.to_string(), id);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_gives_the_last_state() {
        let dir = tempfile::tempdir().unwrap();
        let log = RefLog::new(dir.path());
        let a = ObjectId::of(b"a");
        let b = ObjectId::of(b"b");
        log.record("heads/main", Some(&a.hex())).unwrap();
        log.record("tags/v1", Some(&a.hex())).unwrap();
        log.record("heads/main", Some(&b.hex())).unwrap();
        log.record("tags/v1", None).unwrap();
        log.record("HEAD", Some("exp")).unwrap();
        log.record("cfg.bound.main", Some("rel:0.01")).unwrap();
        log.record("cfg.keyframe_every", Some("7")).unwrap();
        log.record("cfg.bound.main", Some("rel:0.05")).unwrap();
        log.record("cfg.keyframe_every", None).unwrap();
        let e = log.record("cfg.x", Some("a\nheads/main 00")).unwrap_err();
        assert!(e.to_string().contains("cfg.x: the value"), "{e}");
        assert!(log.record("cfg.x", Some("-")).is_err());
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("refs.log"))
            .unwrap()
            .write_all(b"heads/torn 12ab")
            .unwrap();
        let r = log.replay().unwrap();
        assert_eq!(r.refs.len(), 1);
        assert_eq!(r.refs["heads/main"], b);
        assert_eq!(r.head.as_deref(), Some("exp"));
        assert_eq!(r.config.len(), 1);
        assert_eq!(r.config["cfg.bound.main"], "rel:0.05");
    }
}
