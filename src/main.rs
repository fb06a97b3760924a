//! The `snapstore` command: parses arguments, calls the library, prints the result.

mod cli;

fn main() {
    // SAFETY: called first thing, before any thread exists; restoring the default SIGPIPE action
    // makes `snapstore log | head` end quietly like other Unix tools instead of panicking.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Ctrl-C (or SIGTERM) mid-commit or mid-checkout removes the unfinished temp files.
    if let Err(err) = snapstore::remove_temps_on_signals() {
        eprintln!("warning: cannot clean up on Ctrl-C: {err}");
    }
    let result = cli::run();
    // SNAPSTORE_PROFILE=1: where the command spent its time, stage by stage (BENCHMARKS.md).
    if snapstore::profile::enabled() {
        eprint!("{}", snapstore::profile::read());
    }
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
