//! Loading a frame sequence: a directory of PNG frames, a `.npy` array, or raw bytes with a
//! shape (what a safetensors tensor gives).

use std::fs;
use std::io::BufReader;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::{npy, FrameDims, FrameDtype, FrameError};

/// A sequence of frames held in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameSeq {
    /// Element type.
    pub dtype: FrameDtype,
    /// Frames.
    pub t: usize,
    /// Rows per frame.
    pub h: usize,
    /// Columns per frame.
    pub w: usize,
    /// Channels per pixel.
    pub c: usize,
    /// Elements, little-endian, `[T, H, W, C]` row-major.
    pub data: Vec<u8>,
    /// The frame file names when the sequence came from PNGs (one per frame), else empty.
    pub names: Vec<String>,
    /// Whether the shape has a channel axis: `[T,H,W,C]` (`c` may be 1), not `[T,H,W]`. A
    /// `[T,H,W,1]` array keeps its shape through a commit.
    pub channel_axis: bool,
    /// The file or directory the frames were read from, for messages (`None` for frames made in
    /// memory or checked out).
    pub source: Option<PathBuf>,
}

impl FrameSeq {
    /// A sequence from raw little-endian bytes of shape `[T,H,W]` or `[T,H,W,C]`. Every
    /// dimension must be at least 1 and `bytes` exactly as long as the shape needs.
    pub fn from_raw(dtype: FrameDtype, shape: &[u64], bytes: Vec<u8>) -> Result<Self, FrameError> {
        let (t, h, w, c) = match *shape {
            [t, h, w] => (t, h, w, 1),
            [t, h, w, c] => (t, h, w, c),
            _ => {
                return Err(FrameError::Shape(format!(
                    "shape {shape:?} is not [T,H,W] or [T,H,W,C]"
                )))
            }
        };
        if shape.contains(&0) {
            return Err(FrameError::Shape(format!(
                "shape {shape:?} has a zero dimension"
            )));
        }
        let need = [t, h, w, c]
            .iter()
            .try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= usize::MAX as u64)
            .ok_or_else(|| FrameError::Shape(format!("shape {shape:?} is too large")))?;
        if need != bytes.len() as u64 {
            return Err(FrameError::Shape(format!(
                "shape {shape:?} of {dtype} needs {need} bytes, got {}",
                bytes.len()
            )));
        }
        Ok(FrameSeq {
            dtype,
            t: t as usize,
            h: h as usize,
            w: w as usize,
            c: c as usize,
            data: bytes,
            names: Vec::new(),
            channel_axis: shape.len() == 4,
            source: None,
        })
    }

    /// The shape of one frame.
    pub fn dims(&self) -> FrameDims {
        FrameDims {
            h: self.h,
            w: self.w,
            c: self.c,
        }
    }

    /// The shape as stored and written back: `[T,H,W,C]`, or `[T,H,W]` without a channel axis.
    pub fn shape(&self) -> Vec<u64> {
        let mut shape = vec![self.t as u64, self.h as u64, self.w as u64];
        if self.channel_axis || self.c != 1 {
            shape.push(self.c as u64);
        }
        shape
    }

    /// What the frames are called in messages: their source, else "frames".
    pub fn describe_source(&self) -> String {
        self.source
            .as_ref()
            .map_or_else(|| "frames".to_string(), |p| p.display().to_string())
    }

    /// Bytes per frame.
    pub fn frame_bytes(&self) -> usize {
        self.h * self.w * self.c * self.dtype.size()
    }

    /// The bytes of frames `range` (an error when the range is empty, reversed or too long).
    pub fn frames(&self, range: Range<usize>) -> Result<&[u8], FrameError> {
        if range.start >= range.end || range.end > self.t {
            return Err(FrameError::Range {
                start: range.start,
                end: range.end,
                t: self.t,
            });
        }
        let fb = self.frame_bytes();
        Ok(&self.data[range.start * fb..range.end * fb])
    }
}

/// Loads a `.npy` file (see `parse_npy` for what is accepted).
pub fn load_npy(path: impl AsRef<Path>) -> Result<FrameSeq, FrameError> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|error| FrameError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let mut seq = npy::parse_npy(&bytes).map_err(|problem| FrameError::Npy {
        path: path.to_path_buf(),
        problem,
    })?;
    seq.source = Some(path.to_path_buf());
    Ok(seq)
}

/// One decoded PNG.
struct Png {
    dtype: FrameDtype,
    w: usize,
    h: usize,
    c: usize,
    /// Little-endian samples.
    data: Vec<u8>,
}

fn decode_png(path: &Path) -> Result<Png, FrameError> {
    let file = open_regular(path)?;
    let not_png = |reason: String| FrameError::NotPng {
        path: path.to_path_buf(),
        reason,
    };
    let mut dec = png::Decoder::new(BufReader::new(file));
    // Palettes become RGB(A), low bit depths 8 bits, tRNS an alpha channel; 16 bits stay.
    dec.set_transformations(png::Transformations::EXPAND);
    let mut reader = dec.read_info().map_err(|e| not_png(e.to_string()))?;
    let mut buf = vec![0u8; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| not_png(e.to_string()))?;
    buf.truncate(info.buffer_size());
    let c = info.color_type.samples();
    let (w, h) = (info.width as usize, info.height as usize);
    let line = w
        * c
        * if info.bit_depth == png::BitDepth::Sixteen {
            2
        } else {
            1
        };
    let mut data = Vec::with_capacity(line * h);
    for row in buf.chunks(info.line_size).take(h) {
        data.extend_from_slice(&row[..line]);
    }
    let dtype = match info.bit_depth {
        png::BitDepth::Sixteen => {
            for s in data.chunks_exact_mut(2) {
                s.swap(0, 1); // PNG samples are big-endian
            }
            FrameDtype::U16
        }
        png::BitDepth::Eight => FrameDtype::U8,
        d => {
            return Err(not_png(format!(
                "unexpected bit depth {d:?} after expansion"
            )))
        }
    };
    Ok(Png {
        dtype,
        w,
        h,
        c,
        data,
    })
}

/// Opens a frame file for reading, refusing anything but a regular file (a FIFO named
/// `*.png` blocked the commit for ever). Opened without blocking, then checked on the open file,
/// so a file swapped after listing is caught too.
fn open_regular(path: &Path) -> Result<fs::File, FrameError> {
    let io = |error| FrameError::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path).map_err(io)?;
    let kind = file.metadata().map_err(io)?.file_type();
    if !kind.is_file() {
        return Err(FrameError::NotAFile {
            path: path.to_path_buf(),
            kind: file_kind(kind),
        });
    }
    Ok(file)
}

/// What a file that is not a regular file is, for messages.
fn file_kind(kind: fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_block_device() || kind.is_char_device() {
            return "a device";
        }
    }
    if kind.is_dir() {
        "a directory"
    } else {
        "a special file"
    }
}

/// Natural order of file names: runs of digits compare by their number, so `frame_2` comes
/// before `frame_10`; names equal that way (`f01`, `f1`) fall back to byte order.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < x.len() && j < y.len() {
        if x[i].is_ascii_digit() && y[j].is_ascii_digit() {
            let run =
                |s: &[u8], k: usize| k + s[k..].iter().take_while(|c| c.is_ascii_digit()).count();
            let (ie, je) = (run(x, i), run(y, j));
            // The numbers without leading zeros: the longer is larger, else compare digits.
            fn strip(s: &[u8]) -> &[u8] {
                &s[s.iter().take_while(|&&c| c == b'0').count()..]
            }
            let (p, q) = (strip(&x[i..ie]), strip(&y[j..je]));
            match p.len().cmp(&q.len()).then_with(|| p.cmp(q)) {
                Ordering::Equal => (i, j) = (ie, je),
                other => return other,
            }
        } else {
            match x[i].cmp(&y[j]) {
                Ordering::Equal => (i, j) = (i + 1, j + 1),
                other => return other,
            }
        }
    }
    (x.len() - i).cmp(&(y.len() - j)).then_with(|| a.cmp(b))
}

fn describe(p: &Png) -> String {
    format!("{}x{}, {} channel(s), {}", p.w, p.h, p.c, p.dtype)
}

/// Loads the `*.png` files of `dir` (extension in any case) as frames, in natural file-name
/// order ([`natural_cmp`]: `frame_2.png` before `frame_10.png`), 8 or 16 bits; gray, gray+alpha,
/// RGB, RGBA; palettes expanded. Other files, hidden files and subdirectories are skipped, so
/// frames may sit beside other files; a `.png` that is not a regular file (a FIFO, a device) or
/// does not decode is an error naming it. All frames must match the first in size, bit depth
/// and channels; a directory without frames, or a `.png` whose name is not UTF-8, is an error.
pub fn load_png_dir(dir: impl AsRef<Path>) -> Result<FrameSeq, FrameError> {
    let dir = dir.as_ref();
    let io = |error| FrameError::Io {
        path: dir.to_path_buf(),
        error,
    };
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    let mut shards: Vec<String> = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let has = |ext: &str| {
            Path::new(&name)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case(ext))
        };
        if name.starts_with('.') || entry.file_type().map_err(io)?.is_dir() {
            continue;
        }
        if has("png") {
            // Checked before any frame is decoded: a commit stores nothing.
            if entry.file_name().to_str().is_none() {
                return Err(FrameError::NameNotUtf8 { path: entry.path() });
            }
            files.push((name, entry.path()));
        } else if has("safetensors") {
            shards.push(name);
        }
    }
    if files.is_empty() && !shards.is_empty() {
        shards.sort_by(|a, b| natural_cmp(a, b));
        return Err(FrameError::Shards {
            dir: dir.to_path_buf(),
            count: shards.len(),
            first: shards.into_iter().take(3).collect(),
        });
    }
    if files.is_empty() {
        return Err(FrameError::EmptyDir(dir.to_path_buf()));
    }
    files.sort_by(|a, b| natural_cmp(&a.0, &b.0));
    let first = decode_png(&files[0].1)?;
    let mut data = Vec::with_capacity(first.data.len() * files.len());
    data.extend_from_slice(&first.data);
    for (_, path) in &files[1..] {
        let p = decode_png(path)?;
        if (p.w, p.h, p.c, p.dtype) != (first.w, first.h, first.c, first.dtype) {
            let what = if (p.w, p.h) != (first.w, first.h) {
                format!("size {}x{}, expected {}x{}", p.w, p.h, first.w, first.h)
            } else if p.dtype != first.dtype {
                format!("{}, expected {}", p.dtype, first.dtype)
            } else {
                format!("{} channel(s), expected {}", p.c, first.c)
            };
            return Err(FrameError::Mismatch {
                path: path.clone(),
                first: format!("{} ({})", files[0].0, describe(&first)),
                what,
            });
        }
        data.extend_from_slice(&p.data);
    }
    Ok(FrameSeq {
        dtype: first.dtype,
        t: files.len(),
        h: first.h,
        w: first.w,
        c: first.c,
        data,
        names: files.into_iter().map(|(n, _)| n).collect(),
        // Gray frames are `[T,H,W]`, as before.
        channel_axis: first.c != 1,
        source: Some(dir.to_path_buf()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::write_pngs;

    fn seq(dtype: FrameDtype, t: usize, h: usize, w: usize, c: usize) -> FrameSeq {
        let n = t * h * w * c * dtype.size();
        let data = (0..n).map(|i| (i * 31 + i / 7) as u8).collect();
        FrameSeq::from_raw(dtype, &[t as u64, h as u64, w as u64, c as u64], data).unwrap()
    }

    #[test]
    fn png_round_trip_8_and_16_bit() {
        for (dtype, c) in [
            (FrameDtype::U8, 1),
            (FrameDtype::U8, 4),
            (FrameDtype::U16, 1),
            (FrameDtype::U16, 4),
            (FrameDtype::U8, 2),
            (FrameDtype::U16, 3),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let s = seq(dtype, 3, 5, 7, c);
            write_pngs(&s, dir.path(), 0..3).unwrap();
            let back = load_png_dir(dir.path()).unwrap();
            assert_eq!(
                back.names,
                ["frame_00000.png", "frame_00001.png", "frame_00002.png"]
            );
            assert_eq!(back.data, s.data, "{dtype} c={c}");
            assert_eq!(
                (back.dtype, back.t, back.h, back.w, back.c),
                (dtype, 3, 5, 7, c)
            );
        }
    }

    #[test]
    fn palette_png_expands_to_rgb() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.png");
        let f = fs::File::create(&path).unwrap();
        let mut enc = png::Encoder::new(f, 2, 1);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(vec![10, 20, 30, 40, 50, 60]);
        enc.write_header()
            .unwrap()
            .write_image_data(&[1, 0])
            .unwrap();
        let s = load_png_dir(dir.path()).unwrap();
        assert_eq!((s.c, s.dtype), (3, FrameDtype::U8));
        assert_eq!(s.data, [40, 50, 60, 10, 20, 30]);
    }

    /// Writes `one`'s single frame into `dir` beside the frames already there (`write_pngs`
    /// refuses a directory holding other PNGs).
    fn add_frame(one: &FrameSeq, dir: &std::path::Path) {
        let aside = tempfile::tempdir().unwrap();
        let written = write_pngs(one, aside.path(), 0..1).unwrap();
        let name = written[0].file_name().unwrap();
        std::fs::copy(&written[0], dir.join(name)).unwrap();
    }

    #[test]
    fn mixed_directory_names_the_odd_frame() {
        let dir = tempfile::tempdir().unwrap();
        let a = seq(FrameDtype::U8, 2, 4, 4, 3);
        write_pngs(&a, dir.path(), 0..2).unwrap();
        let mut b = seq(FrameDtype::U8, 1, 5, 4, 3);
        b.names = vec!["frame_00001b.png".into()];
        add_frame(&b, dir.path());
        let err = load_png_dir(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("frame_00001b.png") && err.contains("size 4x5, expected 4x4"),
            "{err}"
        );
        // Another channel count, then another bit depth.
        let dir = tempfile::tempdir().unwrap();
        write_pngs(&a, dir.path(), 0..2).unwrap();
        let mut g = seq(FrameDtype::U8, 1, 4, 4, 1);
        g.names = vec!["frame_00009.png".into()];
        add_frame(&g, dir.path());
        let err = load_png_dir(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("frame_00009.png") && err.contains("1 channel(s), expected 3"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        write_pngs(&a, dir.path(), 0..2).unwrap();
        let mut d = seq(FrameDtype::U16, 1, 4, 4, 3);
        d.names = vec!["frame_00009.png".into()];
        add_frame(&d, dir.path());
        let err = load_png_dir(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("frame_00009.png") && err.contains("U16, expected U8"),
            "{err}"
        );
    }

    /// A directory of safetensors shards read as frames is named as a checkpoint directory:
    /// it was reported as a directory with "no frames (no *.png files)".
    #[test]
    fn a_directory_of_shards_is_named_as_one() {
        let dir = tempfile::tempdir().unwrap();
        for k in [10, 2, 1, 3] {
            fs::write(dir.path().join(format!("model-{k}.safetensors")), b"").unwrap();
        }
        let err = load_png_dir(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(
                "no frames, but 4 safetensors file(s) (model-1.safetensors, \
                          model-2.safetensors, model-3.safetensors, ...): a checkpoint \
                          directory; commit it without --kind frames"
            ),
            "{err}"
        );
        write_pngs(&seq(FrameDtype::U8, 1, 2, 2, 1), dir.path(), 0..1).unwrap();
        assert_eq!(
            load_png_dir(dir.path()).unwrap().t,
            1,
            "frames beside them load"
        );
    }

    #[test]
    fn empty_and_non_png_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_png_dir(dir.path()).unwrap_err();
        assert!(matches!(err, FrameError::EmptyDir(_)), "{err}");
        write_pngs(&seq(FrameDtype::U8, 1, 2, 2, 1), dir.path(), 0..1).unwrap();
        fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
        assert_eq!(
            load_png_dir(dir.path()).unwrap().t,
            1,
            "other files are skipped"
        );
        fs::write(dir.path().join("broken.PNG"), b"hello").unwrap();
        let err = load_png_dir(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("broken.PNG") && err.contains("not a PNG"),
            "{err}"
        );
        let only_text = tempfile::tempdir().unwrap();
        fs::write(only_text.path().join("notes.txt"), b"hello").unwrap();
        assert!(matches!(
            load_png_dir(only_text.path()),
            Err(FrameError::EmptyDir(_))
        ));
        assert!(load_png_dir(dir.path().join("missing")).is_err());
    }

    /// Found by the audit: `frame_0.png .. frame_11.png` were read as 0, 1, 10, 11, 2, ...
    #[test]
    fn frames_are_read_in_natural_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = seq(FrameDtype::U8, 12, 2, 2, 1);
        s.names = (0..12).map(|i| format!("frame_{i}.png")).collect();
        write_pngs(&s, dir.path(), 0..12).unwrap();
        let back = load_png_dir(dir.path()).unwrap();
        assert_eq!(back.names, s.names);
        assert_eq!(back.data, s.data);
        let mut names = ["b10", "a2", "b9", "a10", "a02", "a", "b9x", "b09"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(names, ["a", "a02", "a2", "a10", "b09", "b9", "b9x", "b10"]);
    }

    /// Found by the audit: a FIFO named `*.png` blocked the commit for ever.
    #[cfg(unix)]
    #[test]
    fn a_fifo_named_png_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        write_pngs(&seq(FrameDtype::U8, 1, 2, 2, 1), dir.path(), 0..1).unwrap();
        let fifo = dir.path().join("frame_00001.png");
        let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        let err = load_png_dir(dir.path()).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}: a FIFO, not a PNG file: a frame must be a regular file",
                fifo.display()
            )
        );
    }

    #[test]
    fn from_raw_checks_shape_and_length() {
        assert!(FrameSeq::from_raw(FrameDtype::U8, &[2, 2, 2], vec![0; 8]).is_ok());
        assert!(FrameSeq::from_raw(FrameDtype::U8, &[2, 2, 2], vec![0; 7]).is_err());
        assert!(FrameSeq::from_raw(FrameDtype::F32, &[2, 2, 2], vec![0; 8]).is_err());
        assert!(FrameSeq::from_raw(FrameDtype::U8, &[8], vec![0; 8]).is_err());
        assert!(FrameSeq::from_raw(FrameDtype::U8, &[0, 2, 2], vec![]).is_err());
        assert!(FrameSeq::from_raw(FrameDtype::U8, &[u64::MAX, 2, 2, 2], vec![]).is_err());
        let s = seq(FrameDtype::U16, 4, 2, 3, 1);
        assert_eq!(s.frames(1..3).unwrap().len(), 2 * 12);
        assert!(s.frames(3..5).is_err() && s.frames(2..2).is_err());
    }
}
