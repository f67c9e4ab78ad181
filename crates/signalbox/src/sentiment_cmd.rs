//! `signalbox sentiment`: VADER scores for text lines, for scripting and spot checks.

use std::io::{BufRead, BufWriter, Write};

use anyhow::Context;

/// Reads lines from stdin and writes `{"compound":…,"pos":…,"neu":…,"neg":…}` per line, in
/// order. Lines are split on `\n` (a trailing `\r` is kept, as the text may contain it); bytes
/// that are not UTF-8 are replaced, never fatal.
pub fn run() -> anyhow::Result<()> {
    let stdin = std::io::stdin().lock();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut analyzer = sentiment::Analyzer::new();
    let mut reader = std::io::BufReader::new(stdin);
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("stdin: read failed after line {number}"))?;
        if read == 0 {
            break;
        }
        number += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let text = String::from_utf8_lossy(&line);
        let scores = analyzer.score(&text);
        serde_json::to_writer(&mut out, &scores).context("stdout: write failed")?;
        out.write_all(b"\n").context("stdout: write failed")?;
    }
    out.flush().context("stdout: write failed")?;
    Ok(())
}
