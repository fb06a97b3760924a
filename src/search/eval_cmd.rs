//! An evaluator that runs a shell command on each candidate written as a safetensors file or
//! a checkpoint directory (`--eval-cmd 'python eval.py {path}'`).
//!
//! The command runs through `sh -c` with `{path}` replaced by the shell-quoted path of the
//! candidate (appended as the last argument when the command has no `{path}`; the path is also
//! in `$SNAPSTORE_CANDIDATE`). The last number it prints on stdout is the accuracy (`99.4%`
//! reads as 0.994). A non-zero exit, no number, NaN or infinity, or running past the timeout
//! (the command and everything it started are killed) is an error naming the command. Its
//! output is what it printed by the time it exited: a process it left in the background that
//! still holds its stdout is stopped half a second later, not waited for.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::candidate_form::CandidateForm;
use crate::error::{Error, Result};
use crate::repo::CheckedOutTensor;

/// Stdout kept for parsing, and stderr kept for error messages (the last bytes).
const KEEP_STDOUT: usize = 1 << 20;
const KEEP_STDERR: usize = 2000;

/// Runs a shell command on each candidate; see the module docs.
#[derive(Debug)]
pub struct CommandEvaluator {
    command: String,
    timeout: Option<Duration>,
    form: CandidateForm,
    dir: PathBuf,
    calls: usize,
}

impl CommandEvaluator {
    /// An evaluator running `command`, killed after `timeout` (none: no limit). Candidates are
    /// written to a private temporary directory removed on drop.
    pub fn new(command: &str, timeout: Option<Duration>) -> Result<Self> {
        if command.trim().is_empty() {
            return Err(Error::invalid("eval command", "the command is empty"));
        }
        let base = std::env::temp_dir();
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = base.join(format!(
            "snapstore-search-{}-{stamp}-{seq}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(CommandEvaluator {
            command: command.to_string(),
            timeout,
            form: CandidateForm::File { metadata: None },
            dir,
            calls: 0,
        })
    }

    /// Writes each candidate as one safetensors file with this `__metadata__`.
    pub fn with_metadata(mut self, metadata: Option<BTreeMap<String, String>>) -> Self {
        self.form = CandidateForm::File { metadata };
        self
    }

    /// Writes each candidate in the form of the checkpoint at `path`: one safetensors file with
    /// its `__metadata__`, or, for a checkpoint directory, a directory holding its shards under
    /// their names (each with its own tensors and `__metadata__`) and links to its other entries
    /// (`config.json`, the tokenizer), so `from_pretrained({path})` loads a candidate as it
    /// loads the original. Fails, naming it, when `path` is neither.
    pub fn writing_like(mut self, path: impl AsRef<Path>) -> Result<Self> {
        self.form = CandidateForm::of(path.as_ref())?;
        Ok(self)
    }

    /// The command as given.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Times the command has run.
    pub fn calls(&self) -> usize {
        self.calls
    }

    /// Writes `tensors` as a candidate checkpoint, runs the command on it and returns the
    /// accuracy.
    pub fn evaluate(&mut self, tensors: &[CheckedOutTensor]) -> std::result::Result<f64, String> {
        let path = self.dir.join(self.form.name(self.calls));
        let written = self.form.write(&path, tensors);
        let result = written
            .map_err(|e| format!("writing the candidate for `{}`: {e}", self.command))
            .and_then(|()| self.run_on_file(&path));
        self.form.remove(&path);
        result
    }

    /// Runs the command on an existing file and returns the last number it printed.
    pub fn run_on_file(&mut self, path: &Path) -> std::result::Result<f64, String> {
        self.calls += 1;
        let quoted = shell_quote(&path.to_string_lossy());
        let line = if self.command.contains("{path}") {
            self.command.replace("{path}", &quoted)
        } else {
            format!("{} {quoted}", self.command)
        };
        let (status, stdout, stderr) = run_with_timeout(&line, path, self.timeout)
            .map_err(|e| format!("eval command `{}`: {e}", self.command))?;
        let stderr_note = if stderr.trim().is_empty() {
            String::new()
        } else {
            format!("; its stderr ends with: {}", stderr.trim())
        };
        if !status.success() {
            return Err(format!(
                "eval command `{}` failed ({status}){stderr_note}",
                self.command
            ));
        }
        match last_number(&stdout) {
            None => Err(format!(
                "eval command `{}` printed no number on stdout (the last number printed is the accuracy){stderr_note}",
                self.command
            )),
            Some(v) if !v.is_finite() => Err(format!(
                "eval command `{}` printed {v} as the accuracy",
                self.command
            )),
            Some(v) => Ok(v),
        }
    }

    /// This evaluator as the closure the search takes.
    pub fn as_evaluator(
        &mut self,
    ) -> impl FnMut(&[CheckedOutTensor]) -> std::result::Result<f64, String> + '_ {
        move |t| self.evaluate(t)
    }
}

impl Drop for CommandEvaluator {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `s` quoted for `sh`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The last number in `text`: tokens split at whitespace and `,;:=()[]{}<>"'|`, a trailing
/// `.` dropped, and `N%` read as `N / 100`. `nan` and `inf` count as numbers (so that a NaN
/// printed last is reported as such, not skipped).
pub fn last_number(text: &str) -> Option<f64> {
    text.split(|c: char| c.is_whitespace() || ",;:=()[]{}<>\"'|".contains(c))
        .filter_map(|tok| {
            let tok = tok.trim_end_matches('.');
            let (tok, scale) = match tok.strip_suffix('%') {
                Some(t) => (t, 0.01),
                None => (tok, 1.0),
            };
            // Rust also parses "infinity"/"nan" in any case; nothing else that is not a number.
            tok.parse::<f64>().ok().map(|v| v * scale)
        })
        .next_back()
}

type Outcome = (std::process::ExitStatus, String, String);

fn run_with_timeout(
    line: &str,
    candidate: &Path,
    timeout: Option<Duration>,
) -> std::result::Result<Outcome, String> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(line)
        .env("SNAPSTORE_CANDIDATE", candidate)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    {
        // Its own process group, so a timeout kills what the shell started too.
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start sh: {e}"))?;
    let stdout = Captured::start(Box::new(child.stdout.take().expect("piped")), KEEP_STDOUT);
    let stderr = Captured::start(Box::new(child.stderr.take().expect("piped")), KEEP_STDERR);

    let started = Instant::now();
    let mut pause = Duration::from_millis(2);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for it: {e}")),
        }
        if let Some(limit) = timeout {
            if started.elapsed() >= limit {
                kill_tree(&mut child);
                let _ = child.wait();
                return Err(format!(
                    "timed out after {:.1} s (--eval-timeout) and was killed",
                    limit.as_secs_f64()
                ));
            }
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    // What the command printed is in the pipes when it exits. A process it left running in the
    // background that still holds them (a data-loader worker, a daemon) is not waited for: it is
    // stopped after a moment, and what was read by then is the output.
    if !(stdout.ended_within(LINGER) && stderr.ended_within(LINGER)) {
        kill_tree(&mut child);
        stdout.ended_within(LINGER);
        stderr.ended_within(LINGER);
    }
    Ok((status, stdout.text(), stderr.text()))
}

/// How long the output pipes may stay open after the command exited.
const LINGER: Duration = Duration::from_millis(500);

/// The last `keep` bytes read from a pipe by a thread of their own, readable at any time.
struct Captured {
    kept: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    keep: usize,
    ended: mpsc::Receiver<()>,
}

impl Captured {
    fn start(mut r: Box<dyn Read + Send>, keep: usize) -> Captured {
        let kept = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, ended) = mpsc::channel();
        let into = kept.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut kept = into.lock().unwrap_or_else(|p| p.into_inner());
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * keep {
                    let excess = kept.len() - keep;
                    kept.drain(..excess);
                }
            }
            let _ = tx.send(());
        });
        Captured { kept, keep, ended }
    }

    /// Whether the pipe reached its end within `wait` (at once if it already had).
    fn ended_within(&self, wait: Duration) -> bool {
        !matches!(
            self.ended.recv_timeout(wait),
            Err(mpsc::RecvTimeoutError::Timeout)
        )
    }

    /// What was kept so far, as text.
    fn text(&self) -> String {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&kept[kept.len().saturating_sub(self.keep)..]).into_owned()
    }
}

fn kill_tree(child: &mut std::process::Child) {
    #[cfg(unix)]
    {
        // The child leads its own process group (not yet reaped, so the id is still ours).
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals that process group; no memory is touched.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
}
