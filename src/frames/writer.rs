//! Writing frames back out: one PNG per frame (under its original name, or
//! `frame_00000.png`...), or one `.npy` array.

use std::fs;
use std::io::BufWriter;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::{npy, FrameDtype, FrameError, FrameSeq};

/// Refuses a frame name that is not a plain file name: empty, `.`, `..`, containing `/`, `\` or
/// NUL, or longer than 255 bytes.
pub fn check_file_name(name: &str) -> Result<(), FrameError> {
    let bad = |reason| {
        Err(FrameError::BadName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name == "." || name == ".." {
        return bad("not a file name");
    }
    if name.contains('/') || name.contains('\\') {
        return bad("contains a path separator (names must be plain file names)");
    }
    if name.contains('\0') {
        return bad("contains NUL");
    }
    if name.len() > 255 {
        return bad("longer than 255 bytes");
    }
    Ok(())
}

/// The file a frame without a name of its own is written as: `frame_00007.png` for frame 7.
pub(crate) fn frame_file_name(index: usize) -> String {
    format!("frame_{index:05}.png")
}

/// The file names frames `range` are written under: the sequence's own names when it has one
/// per frame, else `frame_00000.png`... numbered by frame index. Every name is checked with
/// [`check_file_name`] and must be unique.
fn frame_names(seq: &FrameSeq, range: Range<usize>) -> Result<Vec<String>, FrameError> {
    let names: Vec<String> = if seq.names.len() == seq.t {
        seq.names[range].to_vec()
    } else {
        range.map(frame_file_name).collect()
    };
    let mut seen = std::collections::HashSet::new();
    for n in &names {
        check_file_name(n)?;
        if !seen.insert(n.as_str()) {
            return Err(FrameError::BadName {
                name: n.clone(),
                reason: "used by two frames",
            });
        }
    }
    Ok(names)
}

/// Writes frames `range` of a U8 or U16 sequence with 1 to 4 channels as PNGs into `dir`
/// (created if missing); returns the paths written, in frame order.
pub fn write_pngs(
    seq: &FrameSeq,
    dir: impl AsRef<Path>,
    range: Range<usize>,
) -> Result<Vec<PathBuf>, FrameError> {
    let dir = dir.as_ref();
    let unsupported = |reason: String| FrameError::Unsupported {
        what: "PNG frames".into(),
        reason,
    };
    let depth = match seq.dtype {
        FrameDtype::U8 => png::BitDepth::Eight,
        FrameDtype::U16 => png::BitDepth::Sixteen,
        FrameDtype::F32 => {
            return Err(unsupported("F32 frames have no PNG form (use .npy)".into()))
        }
    };
    let color = match seq.c {
        1 => png::ColorType::Grayscale,
        2 => png::ColorType::GrayscaleAlpha,
        3 => png::ColorType::Rgb,
        4 => png::ColorType::Rgba,
        c => return Err(unsupported(format!("{c} channels (PNG holds 1 to 4)"))),
    };
    let (w, h) = match (u32::try_from(seq.w), u32::try_from(seq.h)) {
        (Ok(w), Ok(h)) => (w, h),
        _ => return Err(unsupported(format!("{}x{} is too large", seq.w, seq.h))),
    };
    seq.frames(range.clone())?;
    let names = frame_names(seq, range.clone())?;
    refuse_other_pngs(dir, &names)?;
    fs::create_dir_all(dir).map_err(|error| FrameError::Io {
        path: dir.to_path_buf(),
        error,
    })?;
    let mut paths = Vec::with_capacity(names.len());
    let mut be = Vec::new();
    for (i, name) in range.zip(names) {
        let path = dir.join(name);
        let io = |error| FrameError::Io {
            path: path.clone(),
            error,
        };
        let mut frame = seq.frames(i..i + 1)?;
        if depth == png::BitDepth::Sixteen {
            be.clear();
            be.extend(frame.chunks_exact(2).flat_map(|s| [s[1], s[0]]));
            frame = &be;
        }
        let file = fs::File::create(&path).map_err(io)?;
        let mut enc = png::Encoder::new(BufWriter::new(file), w, h);
        enc.set_color(color);
        enc.set_depth(depth);
        let png_err = |e: png::EncodingError| FrameError::Io {
            path: path.clone(),
            error: std::io::Error::other(e),
        };
        let mut writer = enc.write_header().map_err(png_err)?;
        writer.write_image_data(frame).map_err(png_err)?;
        writer.finish().map_err(png_err)?;
        paths.push(path);
    }
    Ok(paths)
}

/// Refuses an existing `dir` that holds a `*.png` not among `names` (an earlier checkout of a
/// longer sequence, or another range): the directory would mix two snapshots' frames.
fn refuse_other_pngs(dir: &Path, names: &[String]) -> Result<(), FrameError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => {
            return Err(FrameError::Io {
                path: dir.to_path_buf(),
                error,
            })
        }
    };
    let written: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    let mut others: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.to_ascii_lowercase().ends_with(".png") && !written.contains(n.as_str()))
        .collect();
    others.sort();
    match others.first() {
        None => Ok(()),
        Some(example) => Err(FrameError::StaleFrames {
            dir: dir.to_path_buf(),
            count: others.len(),
            example: example.clone(),
        }),
    }
}

/// Writes frames `range` as one `.npy` file at `path` (see `to_npy`).
pub fn write_npy(
    seq: &FrameSeq,
    path: impl AsRef<Path>,
    range: Range<usize>,
) -> Result<(), FrameError> {
    let path = path.as_ref();
    let bytes = npy::to_npy(seq, range)?;
    fs::write(path, bytes).map_err(|error| FrameError::Io {
        path: path.to_path_buf(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{load_npy, load_png_dir};

    #[test]
    fn names_must_be_plain() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "/abs.png",
            "..\\x",
            "nul\0.png",
            &"x".repeat(256),
        ] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
        for good in ["frame_00001.png", "a..b.png", ".hidden", &"x".repeat(255)] {
            assert!(check_file_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn writes_a_range_under_original_names() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FrameSeq::from_raw(FrameDtype::U8, &[4, 2, 3], (0..24).collect()).unwrap();
        s.names = ["d.png", "c.png", "b.png", "a.png"]
            .map(String::from)
            .to_vec();
        let paths = write_pngs(&s, dir.path().join("out"), 1..3).unwrap();
        assert_eq!(paths[0].file_name().unwrap(), "c.png");
        let back = load_png_dir(dir.path().join("out")).unwrap();
        assert_eq!(back.names, ["b.png", "c.png"]);
        assert_eq!(back.data, [&s.data[12..18], &s.data[6..12]].concat());
        s.names[1] = "../escape.png".into();
        assert!(write_pngs(&s, dir.path(), 0..4).is_err());
        s.names[1] = "a.png".into();
        assert!(write_pngs(&s, dir.path(), 0..4).is_err(), "duplicate name");
        assert!(write_pngs(&s, dir.path(), 3..9).is_err(), "range");
    }

    #[test]
    fn npy_file_round_trip_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = [0.5f32, -0.0, f32::NAN, f32::INFINITY, 1e-40, 3.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let s = FrameSeq::from_raw(FrameDtype::F32, &[3, 1, 2], data).unwrap();
        let p = dir.path().join("x.npy");
        write_npy(&s, &p, 0..3).unwrap();
        let back = load_npy(&p).unwrap();
        assert_eq!(back.source.as_deref(), Some(p.as_path()));
        assert_eq!(
            FrameSeq {
                source: None,
                ..back
            },
            s
        );
        let err = write_pngs(&s, dir.path(), 0..3).unwrap_err().to_string();
        assert!(err.contains("F32"), "{err}");
        fs::write(&p, b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f8'}").unwrap();
        let err = load_npy(&p).unwrap_err().to_string();
        assert!(err.contains("x.npy"), "{err}");
    }
}
