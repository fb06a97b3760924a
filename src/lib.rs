//! # snapstore
//!
//! A content-addressed versioning store for neural-network checkpoints (safetensors, every
//! dtype) and frame sequences. Each snapshot is stored against its parent: exactly (byte planes
//! and XOR deltas), or within an error bound you choose (Delta-DNN log-quantized deltas), so a
//! training run's checkpoints cost a fraction of their size.
//!
//! ```
//! use snapstore::{CommitOptions, Dtype, Repo, TensorInput};
//!
//! let dir = tempfile::tempdir()?;
//! let repo = Repo::init(dir.path().join("repo"))?;
//! let weights: Vec<u8> = (0..1024).flat_map(|i| (i as f32 * 0.01).to_le_bytes()).collect();
//! let tensors = [TensorInput { name: "fc.weight".into(), dtype: Dtype::F32, shape: vec![32, 32], data: &weights }];
//! let report = repo.commit_tensors(&tensors, None, &CommitOptions { message: "epoch 1".into(), ..Default::default() })?;
//! let back = repo.checkout("HEAD", None)?;
//! assert_eq!(back.tensor("fc.weight").unwrap().data, weights);
//! assert_eq!(back.snapshot, report.snapshot);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The repository model and the invariants every codec keeps are described in the README;
//! ARCHITECTURE.md names each module's job and the direction of its dependencies.
#![deny(missing_docs)]

// Lets src/search/tests.rs compile examples/search_digits.rs (which names `snapstore::`).
#[cfg(test)]
extern crate self as snapstore;

mod bound;
mod codec;
mod dtype;
#[doc(hidden)]
pub mod entropy_bench;
mod error;
mod frames;
/// The frame-group codec alone, as `examples/frames_codec_speed.rs` times it (not API).
#[doc(hidden)]
pub mod frames_bench {
    pub use crate::frames::{decode_group, encode_group, encode_group_reconstructed, FrameBound};
}
mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
mod gpu;
#[doc(hidden)]
pub mod profile;
mod remote;
mod repo;
mod safetensors_io;
mod search;
mod store;

// The public API: a repository and its operations, their options, reports and errors, the
// engine choice, the frame and tensor types they take and return. Everything else is private;
// the few items tests, benches, examples and fuzz targets reach into are `#[doc(hidden)]`.
pub use bound::Bound;
pub use codec::lossy::Rounding;
pub use codec::CodecChoice;
pub use dtype::Dtype;
pub use error::{Error, Result, SafetensorsProblem};
pub use frames::{
    load_npy, load_png_dir, natural_cmp, write_npy, write_pngs, FrameDims, FrameDtype, FrameError,
    FrameMetrics, FrameSeq,
};
pub use fsutil::{is_stream, remove_registered_temps, remove_temps_on_signals, stop_on_signals};
pub use gpu::backend::{BackendChoice, BackendError};
pub use remote::{
    remote_checkout_to_file, remote_fsck, remote_gc, CloneReport, DeletedRef, FetchReport,
    FetchedRef, ProgressCallback, PullReport, PushOptions, PushReport, PushedRef,
    RemoteCheckoutReport, RemoteFsckReport, RemoteGcReport, RemoteProblem, RemoteSpec,
    REMOTE_FORMAT,
};
pub use repo::{
    default_cache_bytes, has_extension, holds_safetensors, is_frames, keeps_file, CheckedOutTensor,
    Checkout, CheckoutInfo, CheckoutReport, CommitOptions, CommitReport, DiffRow, Element,
    FileStatus, FsckProblem, FsckReport, GcReport, Input, InputKind, LogEntry, Progress,
    RebuildReport, Repo, RescuedPack, Rev, Stats, TensorDiff, TensorInput, TensorStatus,
    TensorTarget, Unreferenced, AUTO_CUDA_MIN_BYTES, DEFAULT_FRAME_GROUP, DEFAULT_KEYFRAME_EVERY,
    DEFAULT_REPO_DIR, FORMAT_VERSION, FRAMES_TENSOR,
};
pub use safetensors_io::SafetensorsFile;
pub use search::{
    default_candidates, guard_inputs, parse_range, plot_svg, AutoCommitReport, AutoOptions,
    CandidateRow, ChosenBound, CommandEvaluator, Evaluator, SearchOptions, SearchReport,
};
pub use store::manifest::{CheckpointFile, Encoding, Manifest, TensorEntry};
pub use store::object_id::ObjectId;

#[doc(hidden)]
pub use dtype::ALL_DTYPES;
#[doc(hidden)]
pub use fsutil::input_maps::TRUNCATE_AFTER_HASH_ENV;
#[doc(hidden)]
pub use fsutil::FAIL_WRITES_ENV;
#[doc(hidden)]
pub use remote::FAIL_UPLOADS_AFTER_ENV;
#[doc(hidden)]
pub use store::manifest::LOSSLESS_CHAIN_DECODES;

/// Not a stable API: the compute backends behind [`Repo::with_backend`], for the CLI's
/// `doctor`, the GPU tests and `examples/gpu_bench.rs`. A trainer picks a [`BackendChoice`].
#[doc(hidden)]
pub mod backend {
    pub use crate::gpu::backend::{
        compile_kernels, doctor, doctor_report, kernel_benchmark, kernel_names, Backend,
        BackendChoice, BackendError, QuantParams, Quantized, HIST_BINS, HIST_CLIP, HIST_EXCEPTION,
        HIST_OVERFLOW,
    };
}

/// Reports a unit test that checked nothing here, and why: on stderr and, when
/// `SNAPSTORE_SKIP_LOG` names a file, as a line in it (`.ci/run` prints the list; the test
/// harness hides a passing test's output).
#[cfg(test)]
pub(crate) fn report_skip(test: &str, reason: &str) {
    use std::io::Write;
    eprintln!("skipping {test}: {reason}");
    if let Some(path) = std::env::var_os("SNAPSTORE_SKIP_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{test}: {reason}");
        }
    }
}
