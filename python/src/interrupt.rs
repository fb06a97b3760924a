//! Long calls that Ctrl-C stops. The library runs on a worker thread while the calling thread
//! waits for it with the GIL released, waking every [`POLL`] to run Python's signal handlers;
//! an evaluator is called back on the calling thread too, where Ctrl-C reaches its Python code.
//!
//! Run on the calling thread with the GIL released instead, a commit held Ctrl-C until it had
//! landed (the handler runs only when the thread is back in Python), then raised it with the
//! report lost: a minute's wait on a large model, for a snapshot the user had asked to stop.
//! Now a `KeyboardInterrupt` (or whatever exception a signal handler raises) sets the library's
//! interrupt flag ([`snapstore::Repo::with_interrupt`]), the worker is joined, and the exception
//! is raised: a commit stopped before it landed stores nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use snapstore::{CheckedOutTensor, Evaluator, Repo};

use crate::evaluator::PyEvaluator;

/// How often the waiting thread runs Python's signal handlers.
const POLL: Duration = Duration::from_millis(50);

/// A candidate the worker asks the calling thread to evaluate.
struct Candidate(*const [CheckedOutTensor]);

// SAFETY: the worker that sends a `Candidate` blocks until its answer comes back, so the
// tensors it points to outlive every use of the pointer on the calling thread.
unsafe impl Send for Candidate {}

enum Message<T> {
    Evaluate(Candidate, mpsc::SyncSender<Result<f64, String>>),
    Done(snapstore::Result<T>),
}

/// What an interrupted evaluator hands the search (the exception itself is raised by the
/// calling thread).
const STOPPED: &str = "interrupted";

/// The note an interrupt raised after a commit landed carries: it must not be taken for one
/// that stored nothing (and be committed again).
pub const COMMIT_LANDED: &str = "snapstore: the commit had landed before the interrupt reached \
     it, so its snapshot is stored (see repo.log())";

/// The note of an interrupt raised after a push completed: its refs moved on the remote.
pub const PUSH_LANDED: &str = "snapstore: the push had completed before the interrupt reached \
     it, so the remote holds what was pushed";

/// Runs `work` on `repo` on a worker thread, calling `evaluate` (if any) on this thread for each
/// candidate the work asks about. `Ok` carries the library's result; `Err` is an exception a
/// signal handler raised, after the work was stopped and joined, with the note `landed` if the
/// work had succeeded all the same (past its last stopping point).
pub fn run_interruptible<T: Send>(
    py: Python<'_>,
    repo: Repo,
    evaluate: Option<&PyEvaluator>,
    landed: Option<&str>,
    work: impl FnOnce(&Repo, &mut Evaluator) -> snapstore::Result<T> + Send,
) -> PyResult<snapstore::Result<T>> {
    let stop = Arc::new(AtomicBool::new(false));
    let repo = repo.with_interrupt(stop.clone());
    let (tx, rx) = mpsc::channel::<Message<T>>();
    std::thread::scope(|scope| {
        let worker_stop = stop.clone();
        scope.spawn(move || {
            let mut ask = |tensors: &[CheckedOutTensor]| -> Result<f64, String> {
                if worker_stop.load(Ordering::Relaxed) {
                    return Err(STOPPED.into());
                }
                let (answer_tx, answer_rx) = mpsc::sync_channel(1);
                let asked = Message::Evaluate(Candidate(tensors), answer_tx);
                if tx.send(asked).is_err() {
                    return Err(STOPPED.into());
                }
                answer_rx.recv().unwrap_or_else(|_| Err(STOPPED.into()))
            };
            let result = work(&repo, &mut ask);
            let _ = tx.send(Message::Done(result));
        });
        let mut rx = rx;
        loop {
            let (received, back) = wait(py, rx, Some(POLL));
            rx = back;
            match received {
                Ok(Message::Done(result)) => {
                    // An interrupt that came while the work was past its last stopping point
                    // (a commit's publish: fsyncs, most of a small commit) is raised here,
                    // saying the work stands, not by the caller's next line, saying nothing.
                    if let (Ok(_), Some(note)) = (&result, landed) {
                        if let Err(raised) = py.check_signals() {
                            add_note(py, &raised, note);
                            return Err(raised);
                        }
                    }
                    return Ok(result);
                }
                Ok(Message::Evaluate(candidate, answer)) => {
                    // SAFETY: see `Candidate`: the worker waits for `answer`.
                    let tensors = unsafe { &*candidate.0 };
                    let _ = answer.send(match evaluate {
                        Some(e) => e.call(tensors),
                        None => Err("no evaluator was given".into()),
                    });
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // The worker panicked; the scope raises its panic when it ends.
                    return Err(PyRuntimeError::new_err(
                        "snapstore's worker thread panicked",
                    ));
                }
            }
            if let Err(raised) = py.check_signals() {
                stop.store(true, Ordering::Relaxed);
                if let (Some(Ok(_)), Some(note)) = (drain(py, rx), landed) {
                    add_note(py, &raised, note);
                }
                return Err(raised);
            }
        }
    })
}

/// Waits for a stopped worker to end, refusing whatever it still asks to evaluate; gives back
/// its result (none if it panicked).
fn drain<T: Send>(
    py: Python<'_>,
    mut rx: mpsc::Receiver<Message<T>>,
) -> Option<snapstore::Result<T>> {
    loop {
        let (received, back) = wait(py, rx, None);
        rx = back;
        match received {
            Ok(Message::Evaluate(_, answer)) => {
                let _ = answer.send(Err(STOPPED.into()));
            }
            Ok(Message::Done(result)) => return Some(result),
            Err(_) => return None,
        }
    }
}

/// Adds `note` to the exception `raised` (`add_note`, Python 3.11+; older ones show no notes).
fn add_note(py: Python<'_>, raised: &PyErr, note: &str) {
    let _ = raised.value(py).call_method1("add_note", (note,));
}

/// The next message (within `timeout`, if any) with the GIL released. The receiver goes into the
/// released section and comes back out (it may move between threads, not be shared).
fn wait<T: Send>(
    py: Python<'_>,
    rx: mpsc::Receiver<Message<T>>,
    timeout: Option<Duration>,
) -> (
    Result<Message<T>, RecvTimeoutError>,
    mpsc::Receiver<Message<T>>,
) {
    py.detach(move || {
        let received = match timeout {
            Some(t) => rx.recv_timeout(t),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        (received, rx)
    })
}
