//! snapstore's integration tests: one binary (one link step), one module per area.

mod util;

mod architecture;
mod bad_input;
mod checkpoint_dir;
mod cli;
mod corruption;
mod crash;
mod footguns;
mod frames;
mod gpu;
mod io_failures;
mod legacy;
mod library;
mod remote;
mod search;
mod watch;
