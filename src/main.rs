//! The `snapstore` command: parses arguments, calls the library, prints the result.

mod cli;

fn main() {
    if let Err(err) = cli::run() {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
