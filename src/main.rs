//! The `snapstore` command: parses arguments, calls the library, prints the result.

mod cli;

fn main() {
    // SIGPIPE stays ignored (Rust's default): a socket whose peer went away (an S3 connection
    // dropped mid-push) must fail the write with EPIPE, which the retries and the error path
    // handle, not kill the process. A closed standard output is handled below instead.
    // `println!` panics when standard output fails: a reader that went away (`snapstore log |
    // head`) ends the command quietly, as the default SIGPIPE action did; any other failure (a
    // full disk, `> /dev/full`) is said as any other error, without a panic's backtrace. What
    // the command did before is kept (a commit has landed by the time it prints its report).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or_default();
        let printing = message.starts_with("failed printing to std");
        if printing && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        if message.starts_with("failed printing to stdout") {
            eprintln!("error: cannot write the output: {message}");
            std::process::exit(1);
        }
        default_hook(info);
    }));
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
        std::process::exit(cli::exit_status(&err));
    }
}
