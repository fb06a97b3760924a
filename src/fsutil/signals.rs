//! What SIGINT, SIGTERM, SIGHUP and SIGBUS do to the command-line tool: the handlers only
//! write the signal's number to a pipe; a thread reading it removes the process's unfinished
//! temp files and ends the process as the signal says, or, while [`stop_on_signals`] runs some
//! work that has to undo something off this machine first, asks that work to stop.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use super::{input_maps, remove_all, temps};

/// The write end of the pipe the signal handler writes the signal number to.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

/// The flag of the work [`stop_on_signals`] is running, while it runs.
static STOPPABLE: Mutex<Option<Arc<AtomicBool>>> = Mutex::new(None);

/// The signal that set [`STOPPABLE`]'s flag (0: none yet).
static STOPPED_BY: AtomicI32 = AtomicI32::new(0);

/// How long stopped work has to end before the process ends without it.
const STOP_GRACE: Duration = Duration::from_secs(15);

fn stoppable() -> MutexGuard<'static, Option<Arc<AtomicBool>>> {
    STOPPABLE.lock().unwrap_or_else(|e| e.into_inner())
}

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    let byte = sig as u8;
    // SAFETY: write(2) is async-signal-safe; `byte` outlives the call.
    unsafe {
        libc::write(fd, (&byte as *const u8).cast(), 1);
    }
}

/// A SIGBUS in a watched input map is repaired there (the read goes on, and the reader refuses
/// what it read); any other goes the way of the other signals.
extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler; `si_addr` is only
    // read for the kernel's own faults (a `kill -BUS` carries no address).
    let fault = unsafe {
        matches!((*info).si_code, libc::BUS_ADRERR | libc::BUS_OBJERR)
            .then(|| (*info).si_addr() as usize)
    };
    if !fault.is_some_and(input_maps::replace_faulting_page) {
        on_signal(sig);
    }
}

/// Makes SIGINT, SIGTERM and SIGHUP remove this process's unfinished temp files (a commit's
/// incoming pack, a checkout's output) before the process ends as the signal says. SIGBUS, which
/// a read from a memory-mapped file another process truncated raises, is repaired when it falls
/// in a checkpoint being committed (see [`input_maps`]: the commit then fails naming the file,
/// and the process goes on); elsewhere it ends the process the same way, saying so (the faulting
/// thread repeats its fault until the process ends). The
/// command-line tool calls it first thing; a library caller that handles signals itself can
/// call [`super::remove_registered_temps`] instead. SIGKILL cannot be caught: the next commit
/// or `gc` removes what it leaves. Calling it more than once does nothing more.
pub fn remove_temps_on_signals() -> io::Result<()> {
    static INSTALLED: OnceLock<io::Result<()>> = OnceLock::new();
    let installed = INSTALLED.get_or_init(|| {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let [read_fd, write_fd] = fds;
        SIGNAL_PIPE.store(write_fd, Ordering::Relaxed);
        std::thread::Builder::new()
            .name("snapstore-signals".into())
            .spawn(move || loop {
                match next_signal(read_fd, None) {
                    Some(sig) => on_delivered(read_fd, sig),
                    None => return,
                }
            })?;
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: `on_signal` only calls write(2), which is async-signal-safe.
            let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            if unsafe { libc::signal(sig, handler) } == libc::SIG_ERR {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: a zeroed sigaction is valid; `on_sigbus` calls only what
        // `input_maps::replace_faulting_page` and `on_signal` call.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as extern "C" fn(_, _, _) as libc::sighandler_t;
            action.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    });
    match installed {
        Ok(()) => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
    }
}

/// Runs `work` so that a SIGINT, SIGTERM or SIGHUP arriving meanwhile sets `flag` instead of
/// ending the process at once, for work that must undo something off this machine when it
/// stops (a push aborts its S3 multipart upload, which would stay stored, and billed, unseen).
/// The process then ends as the signal says, temp files removed, once `work` returns, or at a
/// second signal, or 15 s on, whichever comes first; `work`'s result is not used then. Without
/// [`remove_temps_on_signals`] installed, the signals do what they did before, and this only
/// runs `work`.
pub fn stop_on_signals<T>(flag: &Arc<AtomicBool>, work: impl FnOnce() -> T) -> T {
    *stoppable() = Some(flag.clone());
    let out = work();
    // Cleared under the lock the signal thread sets the flag under: a signal is either seen
    // here or handled there as if no work were running.
    let stopped_by = {
        let mut running = stoppable();
        *running = None;
        STOPPED_BY.load(Ordering::SeqCst)
    };
    if stopped_by != 0 {
        end_process(stopped_by);
    }
    out
}

/// What the signal thread does with a signal: stop the running stoppable work and wait for it
/// (bounded), or end the process now.
fn on_delivered(read_fd: libc::c_int, sig: libc::c_int) {
    if sig != libc::SIGBUS {
        let running = stoppable();
        if let Some(flag) = running.as_ref() {
            STOPPED_BY.store(sig, Ordering::SeqCst);
            flag.store(true, Ordering::SeqCst);
            drop(running);
            eprintln!("stopping: undoing the unfinished transfer (a second Ctrl-C stops at once)");
            // The work ends the process when it returns; a second signal or the grace's end
            // does it here.
            let _ = next_signal(read_fd, Some(STOP_GRACE));
        }
    }
    end_process(sig);
}

/// The next signal number from the pipe; `None` when it is closed or `timeout` passed.
fn next_signal(read_fd: libc::c_int, timeout: Option<Duration>) -> Option<libc::c_int> {
    let interrupted = || io::Error::last_os_error().kind() == io::ErrorKind::Interrupted;
    if let Some(t) = timeout {
        let mut poll = libc::pollfd {
            fd: read_fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(t.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd. (A poll a signal cuts short counts as the grace's end.)
        if unsafe { libc::poll(&mut poll, 1, ms) } != 1 {
            return None;
        }
    }
    loop {
        let mut byte = 0u8;
        // SAFETY: reads one byte into `byte` from the pipe the signal thread owns.
        let n = unsafe { libc::read(read_fd, (&mut byte as *mut u8).cast(), 1) };
        match n {
            1 => return Some(libc::c_int::from(byte)),
            -1 if interrupted() => continue,
            _ => return None,
        }
    }
}

/// Removes the registered temp files and ends the process as `sig` would have.
fn end_process(sig: libc::c_int) -> ! {
    // Held to the end, so no temp file is created after this.
    let mut list = temps();
    remove_all(&mut list);
    if sig == libc::SIGBUS {
        eprintln!(
            "error: a file being read was truncated by another process (SIGBUS); nothing was \
             stored or written, and the unfinished temp files are removed"
        );
    }
    // SAFETY: restores the default action and re-raises, so the process ends with the status
    // the signal gives (130 for Ctrl-C in a shell).
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
    std::process::exit(128 + sig);
}
