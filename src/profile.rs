//! Stage timers: where a commit or checkout spends its time, for the per-stage profile in
//! BENCHMARKS.md (`examples/stage_profile.rs`, or `SNAPSTORE_PROFILE=1` on any command).
//!
//! Off unless [`enable`] was called or `SNAPSTORE_PROFILE` is set; then each timed region
//! reads two clocks at its start and end: the thread's CPU clock (what the stage costs,
//! whatever else the machine runs) and the wall clock (what it waited, e.g. for fsync). Both
//! are summed over threads (two cores coding for one second count two) and exclusive: a stage
//! started inside another (an entropy coder inside the lossy layout) pauses the outer one, so
//! the rows add up to the timed total. Time on a thread outside every stage (rayon's idle
//! workers, argument parsing) is not counted.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Instant;

macro_rules! stages {
    ($($stage:ident => $name:literal,)*) => {
        /// A stage of commit or checkout.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(usize)]
        pub enum Stage {
            $(
                #[doc = $name]
                $stage,
            )*
        }

        const NAMES: &[&str] = &[$($name),*];
        const COUNT: usize = NAMES.len();
    };
}

stages! {
    InputHash => "hash input tensors (incl. reading them)",
    Reference => "decode the reference (parent chunk)",
    Delta => "exact delta + byte-plane split",
    Quantize => "quantize (log-quantized delta)",
    Layout => "lattice layout: code streams, signs, exceptions",
    FramePredict => "frames: predict + quantize (mode choice, closed loop)",
    FrameLayout => "frames: context split + stream packing",
    Zstd => "zstd compress",
    Rans => "rANS histogram + encode",
    Sparse => "sparse sections: gaps (other bytes under their coder)",
    Lzma => "lzma compress",
    ObjectHash => "blake3 of objects (ids, verification)",
    ReconHash => "blake3 of reconstructions",
    PackWrite => "pack write",
    PackRead => "pack read",
    ZstdDecode => "zstd decompress",
    RansDecode => "rANS decode",
    SparseDecode => "sparse sections: gaps and fill (other bytes under their coder)",
    LzmaDecode => "lzma decompress",
    Merge => "byte-plane merge + inverse delta",
    Dequantize => "dequantize / lattice chain apply",
    FrameDecode => "frames: code readers + predict + dequantize",
    OutputHash => "blake3 of checked-out tensors",
    Output => "hand the bytes on (file write or copy out)",
    Fsync => "fsync (files, directories, ref log)",
    Index => "index open, lookups and updates",
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static FROM_ENV: OnceLock<()> = OnceLock::new();
static CPU_NANOS: [AtomicU64; COUNT] = [const { AtomicU64::new(0) }; COUNT];
static WALL_NANOS: [AtomicU64; COUNT] = [const { AtomicU64::new(0) }; COUNT];
static CALLS: [AtomicU64; COUNT] = [const { AtomicU64::new(0) }; COUNT];
static BYTES: [AtomicU64; COUNT] = [const { AtomicU64::new(0) }; COUNT];

/// Where the entropy stage codes each section, by what it can decide without a search of the
/// section's bytes (its length, histograms, samples, and a runs-only section's count of equal
/// neighbours; `codec::entropy::tries`): the split a device coder would follow (issue #17).
/// Tallied per top-level section while the timers are on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Route {
    /// Stored as it is: too short for any coder, or noise.
    Stored,
    /// Only rANS may beat storing it: its stream follows from the histogram, so a coder that
    /// holds the bytes elsewhere can write it.
    Rans,
    /// The sparse coding may win too (and neither Zstd nor LZMA is tried): its gaps read all
    /// of the bytes, but follow from them alone.
    Sparse,
    /// Zstd or LZMA may win: they read all of the bytes, and search them.
    Search,
}

const ROUTES: usize = 4;
const ROUTE_NAMES: [&str; ROUTES] = [
    "stored as is (short or noise)",
    "rANS only (stream from the histogram)",
    "sparse or rANS (gaps from the bytes)",
    "Zstd or LZMA may win (a search of the bytes)",
];
static ROUTE_SECTIONS: [AtomicU64; ROUTES] = [const { AtomicU64::new(0) }; ROUTES];
static ROUTE_IN: [AtomicU64; ROUTES] = [const { AtomicU64::new(0) }; ROUTES];
static ROUTE_OUT: [AtomicU64; ROUTES] = [const { AtomicU64::new(0) }; ROUTES];

/// Counts a section of `raw` bytes, stored in `coded`, against `route` (nothing when off).
pub fn route(route: Route, raw: usize, coded: usize) {
    if !enabled() {
        return;
    }
    let i = route as usize;
    ROUTE_SECTIONS[i].fetch_add(1, Relaxed);
    ROUTE_IN[i].fetch_add(raw as u64, Relaxed);
    ROUTE_OUT[i].fetch_add(coded as u64, Relaxed);
}

thread_local! {
    /// The stage this thread is in, and since when its time is not yet counted.
    static CURRENT: Cell<Option<(Stage, Stamp)>> = const { Cell::new(None) };
}

/// A reading of both clocks.
#[derive(Clone, Copy)]
struct Stamp {
    wall: Instant,
    /// This thread's CPU time, in nanoseconds.
    cpu: u64,
}

impl Stamp {
    fn now() -> Stamp {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux has.
        let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0;
        let cpu = if ok {
            ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
        } else {
            0
        };
        Stamp {
            wall: Instant::now(),
            cpu,
        }
    }
}

/// Turns the timers on (they are also on when `SNAPSTORE_PROFILE` is set).
pub fn enable() {
    ENABLED.store(true, Relaxed);
}

/// Whether the timers are on: [`enable`] was called, or `SNAPSTORE_PROFILE` is set to
/// something other than empty or `0`.
pub fn enabled() -> bool {
    FROM_ENV.get_or_init(|| {
        if std::env::var_os("SNAPSTORE_PROFILE").is_some_and(|v| !v.is_empty() && v != "0") {
            enable();
        }
    });
    ENABLED.load(Relaxed)
}

#[cfg(test)]
thread_local! {
    /// This thread's share of the wall-clock counters: tests read their own, whatever runs
    /// beside them.
    static THIS_THREAD: [Cell<u64>; COUNT] = const { [const { Cell::new(0) }; COUNT] };
}

fn add(stage: Stage, since: Stamp, now: Stamp) {
    let wall = now.wall.duration_since(since.wall).as_nanos() as u64;
    WALL_NANOS[stage as usize].fetch_add(wall, Relaxed);
    CPU_NANOS[stage as usize].fetch_add(now.cpu.saturating_sub(since.cpu), Relaxed);
    #[cfg(test)]
    THIS_THREAD.with(|t| t[stage as usize].set(t[stage as usize].get() + wall));
}

/// Times the enclosing scope as `stage` until the guard drops.
#[must_use = "the stage is timed until the guard drops"]
pub struct Timer {
    stage: Stage,
    /// The stage this one interrupted; `None` when off (nothing to restore or count).
    outer: Option<Option<Stage>>,
}

/// Starts timing `stage` on this thread, pausing the stage it interrupts.
pub fn time(stage: Stage) -> Timer {
    time_bytes(stage, 0)
}

/// [`time`] for a stage that processes `bytes` (of its input, or of its output for decoders),
/// so the table can give the stage's MB/s.
pub fn time_bytes(stage: Stage, bytes: usize) -> Timer {
    if !enabled() {
        return Timer { stage, outer: None };
    }
    let now = Stamp::now();
    let outer = CURRENT.with(|c| {
        let outer = c.get().map(|(s, since)| {
            add(s, since, now);
            s
        });
        c.set(Some((stage, now)));
        outer
    });
    CALLS[stage as usize].fetch_add(1, Relaxed);
    BYTES[stage as usize].fetch_add(bytes as u64, Relaxed);
    Timer {
        stage,
        outer: Some(outer),
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        let Some(outer) = self.outer else { return };
        let now = Stamp::now();
        CURRENT.with(|c| {
            if let Some((_, since)) = c.get() {
                add(self.stage, since, now);
            }
            c.set(outer.map(|s| (s, now)));
        });
    }
}

/// Zeroes every counter.
pub fn reset() {
    for (((n, w), c), b) in CPU_NANOS.iter().zip(&WALL_NANOS).zip(&CALLS).zip(&BYTES) {
        n.store(0, Relaxed);
        w.store(0, Relaxed);
        c.store(0, Relaxed);
        b.store(0, Relaxed);
    }
    for ((n, i), o) in ROUTE_SECTIONS.iter().zip(&ROUTE_IN).zip(&ROUTE_OUT) {
        n.store(0, Relaxed);
        i.store(0, Relaxed);
        o.store(0, Relaxed);
    }
}

/// One stage's total so far.
#[derive(Clone, Debug)]
pub struct StageTime {
    /// What the stage does.
    pub name: &'static str,
    /// CPU seconds, summed over threads.
    pub seconds: f64,
    /// Wall-clock seconds, summed over threads (more than `seconds` where the stage waits).
    pub wall_seconds: f64,
    /// Timed regions entered.
    pub calls: u64,
    /// Bytes those regions processed (0 where a stage does not count them).
    pub bytes: u64,
}

/// One entropy route's sections so far (see [`Route`]).
#[derive(Clone, Debug)]
pub struct RouteTally {
    /// What the route is.
    pub name: &'static str,
    /// Sections that took it.
    pub sections: u64,
    /// Their bytes before coding.
    pub raw_bytes: u64,
    /// Their bytes as stored.
    pub coded_bytes: u64,
}

/// The counters so far, stages never entered left out.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    /// Stages in a fixed order (commit's first, then checkout's).
    pub stages: Vec<StageTime>,
    /// The entropy routes, in [`Route`]'s order; empty where no section was coded.
    pub routes: Vec<RouteTally>,
}

/// Reads the counters.
pub fn read() -> Profile {
    let stages = NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| CALLS[*i].load(Relaxed) > 0)
        .map(|(i, name)| StageTime {
            name,
            seconds: CPU_NANOS[i].load(Relaxed) as f64 * 1e-9,
            wall_seconds: WALL_NANOS[i].load(Relaxed) as f64 * 1e-9,
            calls: CALLS[i].load(Relaxed),
            bytes: BYTES[i].load(Relaxed),
        })
        .collect();
    let routes = if ROUTE_SECTIONS.iter().all(|n| n.load(Relaxed) == 0) {
        Vec::new()
    } else {
        (0..ROUTE_NAMES.len())
            .map(|i| RouteTally {
                name: ROUTE_NAMES[i],
                sections: ROUTE_SECTIONS[i].load(Relaxed),
                raw_bytes: ROUTE_IN[i].load(Relaxed),
                coded_bytes: ROUTE_OUT[i].load(Relaxed),
            })
            .collect()
    };
    Profile { stages, routes }
}

impl Profile {
    /// CPU seconds over every stage.
    pub fn total(&self) -> f64 {
        self.stages.iter().map(|s| s.seconds).sum()
    }

    /// Wall-clock seconds over every stage.
    pub fn wall_total(&self) -> f64 {
        self.stages.iter().map(|s| s.wall_seconds).sum()
    }
}

impl fmt::Display for Profile {
    /// A Markdown table: stage, CPU ms, its share of the timed CPU total, wall ms, calls, MB,
    /// and MB per CPU second.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.total().max(1e-12);
        writeln!(
            f,
            "| stage | CPU ms | share | wall ms | calls | MB | MB/s (CPU) |"
        )?;
        writeln!(f, "|---|---:|---:|---:|---:|---:|---:|")?;
        for s in &self.stages {
            let (mb, rate) = match s.bytes {
                0 => (String::new(), String::new()),
                b => (
                    format!("{:.1}", b as f64 / 1e6),
                    format!("{:.0}", b as f64 / 1e6 / s.seconds.max(1e-12)),
                ),
            };
            writeln!(
                f,
                "| {} | {:.1} | {:.1}% | {:.1} | {} | {mb} | {rate} |",
                s.name,
                s.seconds * 1e3,
                100.0 * s.seconds / total,
                s.wall_seconds * 1e3,
                s.calls
            )?;
        }
        writeln!(
            f,
            "| **timed total** | {:.1} | 100% | {:.1} | | | |",
            total * 1e3,
            self.wall_total() * 1e3
        )?;
        if self.routes.is_empty() {
            return Ok(());
        }
        let raw: u64 = self.routes.iter().map(|r| r.raw_bytes).sum();
        writeln!(
            f,
            "\n| entropy route | sections | raw MB | share of raw | coded MB |"
        )?;
        writeln!(f, "|---|---:|---:|---:|---:|")?;
        for r in &self.routes {
            writeln!(
                f,
                "| {} | {} | {:.2} | {:.1}% | {:.2} |",
                r.name,
                r.sections,
                r.raw_bytes as f64 / 1e6,
                100.0 * r.raw_bytes as f64 / raw.max(1) as f64,
                r.coded_bytes as f64 / 1e6
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_stages_count_exclusive_time() {
        let ms = |stage: Stage| THIS_THREAD.with(|t| t[stage as usize].get()) as f64 * 1e-6;
        enable();
        {
            let _outer = time(Stage::Layout);
            std::thread::sleep(std::time::Duration::from_millis(10));
            {
                let _inner = time(Stage::Zstd);
                std::thread::sleep(std::time::Duration::from_millis(60));
            }
        }
        // Inclusive timing would give the outer stage 70 ms or more.
        let (layout, zstd) = (ms(Stage::Layout), ms(Stage::Zstd));
        assert!((10.0..60.0).contains(&layout), "layout {layout} ms");
        assert!(zstd >= 60.0, "zstd {zstd} ms");
        assert!(read().to_string().contains("| **timed total** |"));
    }

    #[test]
    fn routes_are_tallied_with_their_bytes() {
        enable();
        // Other tests code sections beside this one: the counters only grow.
        let before = read()
            .routes
            .get(Route::Sparse as usize)
            .map_or(0, |r| r.raw_bytes);
        route(Route::Sparse, 1000, 10);
        let p = read();
        let sparse = &p.routes[Route::Sparse as usize];
        assert_eq!(sparse.name, "sparse or rANS (gaps from the bytes)");
        assert!(sparse.sections >= 1 && sparse.raw_bytes >= before + 1000);
        assert!(p
            .to_string()
            .contains("| sparse or rANS (gaps from the bytes) |"));
    }
}
