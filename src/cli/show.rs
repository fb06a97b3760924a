//! `snapstore show`: a snapshot's header and, per tensor, dtype, shape, encoding, stored bytes
//! and ratio.

use anyhow::Result;
use serde_json::json;
use snapstore::{CheckpointFile, Manifest, Repo};

use super::print::{human, json_pretty, ratio_text, sizes};

#[derive(clap::Args)]
pub struct Args {
    /// Snapshot.
    #[arg(value_name = "REF", default_value = "HEAD")]
    spec: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `snapstore show`.
pub fn run(repo: &Repo, args: Args) -> Result<()> {
    let (id, m) = repo.show(&args.spec)?;
    if args.json {
        return json_pretty(&json!({
            "id": id,
            "logical_bytes": m.logical_bytes(),
            "stored_bytes": m.stored_bytes(),
            "manifest": &*m
        }));
    }
    println!("snapshot {id}");
    println!(
        "parents  {}",
        m.parents
            .iter()
            .map(|p| p.short())
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "branch   {}   bound {}   keyframe every {}",
        m.branch, m.bound, m.keyframe_every
    );
    println!("message  {}", m.message);
    for (k, v) in &m.meta {
        println!("meta     {k}={v}");
    }
    // A checkpoint directory: what `checkout -o DIR` writes.
    for file in &m.files {
        match file {
            CheckpointFile::Safetensors { name, tensors, .. } => {
                println!("file     {name} ({tensors} tensors)")
            }
            CheckpointFile::Text { name, text } => {
                println!("file     {name} ({})", human(text.len() as u64))
            }
        }
    }
    print_table(&table(&m)?);
    println!("total {}", sizes(m.logical_bytes(), m.stored_bytes()));
    Ok(())
}

const COLUMNS: usize = 11;

/// The tensor table, a header row first.
fn table(m: &Manifest) -> Result<Vec<[String; COLUMNS]>> {
    let mut rows = vec![[
        "tensor", "dtype", "shape", "encoding", "bound", "bytes", "stored", "ratio", "depth",
        "zero%", "exact%",
    ]
    .map(String::from)];
    for t in &m.tensors {
        let stat = |k: &str| {
            t.stats
                .get(k)
                .map_or("-".to_string(), |v| format!("{:.1}", v * 100.0))
        };
        let shape: Vec<String> = t.shape.iter().map(u64::to_string).collect();
        rows.push([
            t.name.clone(),
            t.dtype.to_string(),
            format!("[{}]", shape.join(",")),
            serde_json::to_value(t.encoding)?
                .as_str()
                .unwrap_or("?")
                .to_string(),
            t.bound.to_string(),
            human(t.len),
            human(t.stored_bytes()),
            if t.stored_bytes() == 0 {
                "dedup".to_string()
            } else {
                ratio_text(t.len, t.stored_bytes())
            },
            t.depth.to_string(),
            stat("zero_codes"),
            stat("exceptions"),
        ]);
    }
    Ok(rows)
}

/// Columns as wide as their widest cell: long names and shapes stay aligned.
fn print_table(rows: &[[String; COLUMNS]]) {
    let widths: Vec<usize> = (0..COLUMNS)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, &w))| match c {
                0 | 2 | 3 | 4 => format!("{cell:<w$}"),
                _ => format!("{cell:>w$}"),
            })
            .collect();
        println!("{}", cells.join(" ").trim_end());
    }
}
