//! Finding the driver, the device and NVRTC without ever letting cudarc panic, and the
//! per-process compiled module.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::Ptx;

use super::kernel_cache::{self, Origin};
use super::kernels;

/// Environment variable: set to anything non-empty to make `auto` detection pick the CPU (for
/// testing the fallback on a GPU machine).
pub(crate) const DISABLE_ENV: &str = "SNAPSTORE_NO_CUDA";

/// Whether `libcuda` can be loaded (cudarc would panic on first use otherwise).
pub(crate) fn driver_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    *PRESENT.get_or_init(|| {
        // SAFETY: only tries to dlopen the candidate library names, without calling into them.
        catch_unwind(|| unsafe { cudarc::driver::sys::is_culib_present() }).unwrap_or(false)
    })
}

/// Runs `f` (cudarc calls) turning a panic (a missing symbol) into an error.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!("{what}: {msg}"))
        }
    }
}

/// The CUDA driver's version as `(major, minor)`, e.g. `(13, 0)`.
pub(crate) fn driver_version() -> Result<(i32, i32), String> {
    if !driver_present() {
        return Err("no CUDA driver (libcuda.so not found)".into());
    }
    guarded("cuDriverGetVersion", || {
        let mut v = 0i32;
        // SAFETY: the library is present; the call writes one int through a valid pointer.
        unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut v) }
            .result()
            .map_err(|e| format!("cuDriverGetVersion failed: {e:?}"))?;
        Ok((v / 1000, (v % 1000) / 10))
    })
}

/// A device with the kernels loaded.
pub(crate) struct GpuDevice {
    pub ctx: Arc<CudaContext>,
    pub name: String,
    pub compute_capability: (i32, i32),
    pub multiprocessors: u32,
    pub total_mem: usize,
    pub driver_version: (i32, i32),
    pub nvrtc_version: (i32, i32),
    /// What the module was built from: `cubin sm_90` (from or kept in the kernel cache, see
    /// `kernel_cache`), or `PTX compute_90 (ISA 9.0)`.
    pub image: String,
    pub compile_time: Duration,
    _module: Arc<CudaModule>,
    functions: HashMap<String, CudaFunction>,
}

impl std::fmt::Debug for GpuDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuDevice")
            .field("name", &self.name)
            .field("compute_capability", &self.compute_capability)
            .field("image", &self.image)
            .finish()
    }
}

impl GpuDevice {
    /// A kernel by name (every name of [`kernels::kernel_names`] is loaded).
    pub fn function(&self, name: &str) -> Result<&CudaFunction, String> {
        self.functions
            .get(name)
            .ok_or_else(|| format!("kernel {name} is not in the module"))
    }

    /// A grid size for `n` elements at `threads` per block: enough blocks to fill the device,
    /// never more than the elements need (the kernels loop over the rest).
    pub fn blocks_for(&self, n: usize, threads: u32) -> u32 {
        let need = n.div_ceil(threads as usize).max(1);
        let fill = self.multiprocessors.max(1) as usize * 8;
        need.min(fill) as u32
    }
}

/// The device of this process: found, compiled and loaded once; the error is the one-line
/// reason the CPU path is used.
pub(crate) fn device() -> Result<Arc<GpuDevice>, String> {
    static DEVICE: OnceLock<Result<Arc<GpuDevice>, String>> = OnceLock::new();
    DEVICE.get_or_init(|| load().map(Arc::new)).clone()
}

fn load() -> Result<GpuDevice, String> {
    if !driver_present() {
        return Err("no CUDA driver (libcuda.so not found): no NVIDIA GPU on this machine".into());
    }
    let driver_version = driver_version()?;
    let count = guarded("cuInit", || {
        cudarc::driver::result::init().map_err(|e| format!("cuInit failed: {e:?}"))?;
        CudaContext::device_count().map_err(|e| format!("cuDeviceGetCount failed: {e:?}"))
    })?;
    if count < 1 {
        return Err(format!(
            "CUDA driver {}.{} present but no CUDA device visible",
            driver_version.0, driver_version.1
        ));
    }
    if !kernels::nvrtc_present() {
        return Err(format!(
            "CUDA device found but NVRTC (libnvrtc.so.13 or .12) is not loadable: install the \
             CUDA runtime compiler (e.g. `pip install nvidia-cuda-nvrtc==13.0.*`) and put its lib \
             directory on LD_LIBRARY_PATH (driver {}.{})",
            driver_version.0, driver_version.1
        ));
    }
    let nvrtc_version = kernels::nvrtc_version()?;
    guarded("loading the CUDA device", || {
        let ctx = CudaContext::new(0).map_err(|e| format!("creating a CUDA context: {e:?}"))?;
        let name = ctx.name().map_err(|e| format!("device name: {e:?}"))?;
        let cc = ctx
            .compute_capability()
            .map_err(|e| format!("compute capability: {e:?}"))?;
        let multiprocessors =
            ctx.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
                .map_err(|e| format!("multiprocessor count: {e:?}"))? as u32;
        let total_mem = ctx.total_mem().map_err(|e| format!("memory size: {e:?}"))?;
        // A cubin for this exact architecture: loading it involves no PTX JIT, so a driver older
        // than NVRTC (13.0 driver, 13.x NVRTC) still accepts it. PTX is the fallback for an NVRTC
        // too old to know the architecture.
        let sm = format!("sm_{}{}", cc.0, cc.1);
        let cache = kernel_cache::cache_dir();
        let (compiled, image) =
            match kernel_cache::cubin(&sm, nvrtc_version, cache.as_deref(), kernels::compile) {
                Ok((c, Origin::Cache(path))) => (c, format!("cubin {sm} from {}", path.display())),
                Ok((c, Origin::Compiled(Some(path)))) => {
                    (c, format!("cubin {sm}, kept in {}", path.display()))
                }
                Ok((c, Origin::Compiled(None))) => (c, format!("cubin {sm} (no kernel cache)")),
                Err(cubin_err) => {
                    let ptx_target = format!("compute_{}{}", cc.0, cc.1);
                    let c = kernels::compile(&ptx_target)
                        .map_err(|e| format!("{cubin_err}; PTX fallback: {e}"))?;
                    let label = format!(
                        "PTX {ptx_target} (ISA {})",
                        c.ptx_isa.clone().unwrap_or_else(|| "?".into())
                    );
                    (c, label)
                }
            };
        let ptx = Ptx::from_binary(compiled.image.clone());
        let module = ctx.load_module(ptx).map_err(|e| {
            format!(
                "loading the kernels ({image}, NVRTC {}.{}) into driver {}.{}: {e:?}",
                nvrtc_version.0, nvrtc_version.1, driver_version.0, driver_version.1
            )
        })?;
        let mut functions = HashMap::new();
        for k in kernels::kernel_names() {
            let f = module
                .load_function(&k)
                .map_err(|e| format!("kernel {k}: {e:?}"))?;
            functions.insert(k, f);
        }
        Ok(GpuDevice {
            ctx,
            name,
            compute_capability: cc,
            multiprocessors,
            total_mem,
            driver_version,
            nvrtc_version,
            image,
            compile_time: compiled.elapsed,
            _module: module,
            functions,
        })
    })
}
