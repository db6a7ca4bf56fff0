//! Same-run baselines of the raw machine, so storage figures are reported as ratios:
//! what `dd if=/dev/zero of=FILE bs=1M` (page-cache write) and `dd if=FILE of=/dev/null bs=1M`
//! (cached read) reach on the same disk, in the same process, right before or after the run.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

const CHUNK: usize = 1 << 20;

/// Writes back every dirty page on the machine (`sync`), outside any timed region, so each
/// measured phase starts from the same page-cache state. Without it the phase that runs
/// second pays for the first one's write-back (the kernel throttles writers once dirty pages
/// pass its background threshold), which biases every ratio.
pub(crate) fn settle() -> anyhow::Result<()> {
    let status = std::process::Command::new("sync")
        .status()
        .context("running sync")?;
    anyhow::ensure!(status.success(), "sync exited with {status}");
    Ok(())
}

fn create_empty(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// Writes `total_bytes` of zeros to `path` in 1 MiB writes without syncing; returns the time.
pub(crate) fn write_like_dd(path: &Path, total_bytes: u64) -> anyhow::Result<Duration> {
    let buf = vec![0u8; CHUNK];
    let mut f = create_empty(path)?;
    let start = Instant::now();
    let mut left = total_bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    drop(f);
    Ok(start.elapsed())
}

/// Reads every file in `paths` to the end in 1 MiB reads; returns (bytes, time).
pub(crate) fn read_like_dd(paths: &[std::path::PathBuf]) -> anyhow::Result<(u64, Duration)> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    let start = Instant::now();
    for p in paths {
        let mut f = File::open(p).with_context(|| format!("opening {}", p.display()))?;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    Ok((total, start.elapsed()))
}

/// One synced write of `size` bytes per call, `count` times: the cost of fsyncing every
/// append without group commit. Returns the time.
pub(crate) fn fsync_each_write(path: &Path, size: usize, count: u64) -> anyhow::Result<Duration> {
    let buf = vec![0x5au8; size];
    let mut f = create_empty(path)?;
    let start = Instant::now();
    for _ in 0..count {
        f.write_all(&buf)?;
        f.sync_data()?;
    }
    Ok(start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines_write_and_read_the_bytes_they_claim() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("raw");
        write_like_dd(&p, 3 * CHUNK as u64 + 17).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 3 * CHUNK as u64 + 17);
        let (n, _) = read_like_dd(std::slice::from_ref(&p)).unwrap();
        assert_eq!(n, 3 * CHUNK as u64 + 17);
        fsync_each_write(&p, 1000, 3).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 3000);
    }
}
