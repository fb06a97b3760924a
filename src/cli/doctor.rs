//! `snapstore doctor`: which backend `--backend` picks, the GPU, driver and NVRTC versions, or
//! why the CPU is used.

use anyhow::{bail, Result};
use snapstore::backend::{doctor, BackendChoice};

/// Runs `snapstore doctor`; fails when `--backend cuda` finds no usable device.
pub fn run(backend: BackendChoice) -> Result<()> {
    match doctor(backend) {
        Ok(report) => println!("{report}"),
        Err(report) => {
            println!("{report}");
            bail!("--backend cuda: no usable CUDA device (reason above)");
        }
    }
    Ok(())
}
