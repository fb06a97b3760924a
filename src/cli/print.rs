//! Formatting every command shares: byte sizes, ratios, UTC times, JSON, progress bars.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Result;

/// Where a checkout's `-o` goes: `-` is standard output.
pub fn output_path(output: PathBuf) -> PathBuf {
    match output.as_os_str() == "-" {
        true => PathBuf::from("/dev/stdout"),
        false => output,
    }
}

/// Prints a checkout's report, as JSON or a line: on standard error where the bytes went into
/// standard output, a device or a pipe (`snapstore::is_stream`), so that it does not join them;
/// and what a replaced symbolic link named.
pub fn checkout_report<T: serde::Serialize>(
    report: &T,
    line: &str,
    json: bool,
    streamed: bool,
    replaced_link: Option<&Path>,
) -> Result<()> {
    let text = match json {
        true => serde_json::to_string_pretty(report)?,
        false => line.to_string(),
    };
    match streamed {
        true => eprintln!("{text}"),
        false => println!("{text}"),
    }
    if let (Some(named), false) = (replaced_link, json) {
        eprintln!(
            "note: the output was a symbolic link to {}; it is now the checked-out file, and {} \
             is left as it was",
            named.display(),
            named.display()
        );
    }
    Ok(())
}

/// Branches or tags as JSON: `{NAME: full id}`, in the order given.
pub fn refs_json(refs: &[(String, snapstore::ObjectId)]) -> serde_json::Value {
    let map: serde_json::Map<_, _> = refs
        .iter()
        .map(|(name, id)| (name.clone(), serde_json::json!(id)))
        .collect();
    serde_json::Value::Object(map)
}

/// Prints `value` as pretty JSON on one `println!`.
pub fn json_pretty<T: serde::Serialize + ?Sized>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints `value` as JSON on one line (a stream of reports, one per line).
pub fn json_line<T: serde::Serialize + ?Sized>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// `LOGICAL -> STORED stored (RATIO)`: how every command prints a snapshot's sizes ("stored"
/// as `Manifest::stored_bytes` defines it).
pub fn sizes(logical: u64, stored: u64) -> String {
    format!(
        "{} -> {} stored ({})",
        human(logical),
        human(stored),
        ratio_text(logical, stored)
    )
}

/// What a commit did, after its `[branch id] ` prefix: `N tensors, SIZES, BOUND, D delta,
/// K keyframe, X dedup, S.SSs`.
pub fn commit_summary(r: &snapstore::CommitReport) -> String {
    format!(
        "{} tensors, {}, {}, {} delta, {} keyframe, {} dedup, {:.2}s",
        r.tensors,
        sizes(r.logical_bytes, r.stored_bytes),
        r.bound,
        r.deltas,
        r.keyframes,
        r.deduplicated,
        r.seconds
    )
}

/// `12.34x`, or what a zero divisor means.
pub fn ratio_text(logical: u64, stored: u64) -> String {
    match (logical, stored) {
        (0, 0) => "empty".into(),
        (_, 0) => "all deduplicated".into(),
        _ => format!("{:.2}x", logical as f64 / stored as f64),
    }
}

/// Seconds since the Unix epoch as `YYYY-MM-DD HH:MM` UTC.
pub fn utc_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let (h, m) = (secs % 86_400 / 3600, secs % 3600 / 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}")
}

/// Bytes in binary units, two decimals above 1 KiB.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// Progress bars on stderr, one per task, fed by the library's progress callback.
#[derive(Default)]
pub struct Bars {
    current: Mutex<Option<(&'static str, indicatif::ProgressBar)>>,
}

impl Bars {
    /// Draws `p`, starting a new bar when the task changes.
    pub fn show(&self, p: snapstore::Progress) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_none_or(|(task, _)| *task != p.task) {
            if let Some((_, old)) = current.take() {
                old.finish_and_clear();
            }
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(p.total),
                indicatif::ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg:8} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(p.task);
            *current = Some((p.task, bar));
        }
        if let Some((_, bar)) = current.as_ref() {
            bar.set_length(p.total);
            bar.set_position(p.done);
        }
        // Gone before the command prints its result (clearing later would erase that line).
        if p.done >= p.total && p.done > 0 {
            if let Some((_, bar)) = current.take() {
                bar.finish_and_clear();
            }
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        if let Some((_, bar)) = self.current.lock().ok().and_then(|mut c| c.take()) {
            bar.finish_and_clear();
        }
    }
}
