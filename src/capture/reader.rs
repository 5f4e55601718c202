//! Reading captures back: the tolerant line reader and, at open, the scan
//! that cuts a torn last line and rebuilds the duplicate index.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{DeviceBatch, Recovered, Seen, device_batch};

/// One line of the capture as written. Records stay raw JSON.
#[derive(Debug, Serialize, Deserialize)]
pub struct CapturedBatch {
    pub received: String,
    pub peer: String,
    pub unit_id: Option<String>,
    pub encoding: String,
    pub wire_bytes: u64,
    pub batch_hash: String,
    pub duplicate_of: Option<String>,
    /// `received` of the first identical batch when none of its copies
    /// had been acknowledged yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<String>,
    /// Whether a 2xx was sent (lines from before answer modes: always).
    #[serde(default = "acked_by_default")]
    pub acked: bool,
    /// The answer mode in force (absent before answer modes: `ok`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    pub records: Box<serde_json::value::RawValue>,
}

fn acked_by_default() -> bool {
    true
}

/// The fields of a line needed to rebuild the duplicate index.
#[derive(Deserialize)]
struct LineHead {
    received: String,
    #[serde(default)]
    unit_id: Option<String>,
    batch_hash: String,
    #[serde(default = "acked_by_default")]
    acked: bool,
}

/// Cuts a torn last line and indexes the batch hashes already captured.
pub(super) fn repair_and_index(
    file: &mut File,
    seen: &mut HashMap<DeviceBatch, Seen>,
) -> io::Result<Recovered> {
    let mut recovered = Recovered::default();
    file.seek(SeekFrom::Start(0))?;
    let mut reader = BufReader::new(&*file);
    let mut line = Vec::new();
    let mut complete_len = 0u64;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') {
            recovered.torn_bytes = n as u64;
            break;
        }
        complete_len += n as u64;
        recovered.lines += 1;
        match serde_json::from_slice::<LineHead>(&line)
            .ok()
            .and_then(|h| {
                let hash = blake3::Hash::from_hex(&h.batch_hash).ok()?;
                Some((
                    device_batch(h.unit_id.as_deref(), hash.as_bytes()),
                    h.received,
                    h.acked,
                ))
            }) {
            Some((hash, received, acked)) => {
                seen.entry(hash)
                    .or_insert_with(|| Seen {
                        first: received.clone(),
                        acked: None,
                    })
                    .note(&received, acked);
            }
            None => recovered.unreadable += 1,
        }
    }
    drop(reader);
    if recovered.torn_bytes > 0 {
        file.set_len(complete_len)?;
        file.sync_all()?;
    }
    file.seek(SeekFrom::End(0))?;
    Ok(recovered)
}

/// Reads a capture file line by line; a line that is not a capture line
/// (such as a torn last line not yet repaired) is an error item.
pub fn read(path: &Path) -> io::Result<impl Iterator<Item = Result<CapturedBatch, String>>> {
    let reader = BufReader::new(File::open(path)?);
    let mut lines = reader.split(b'\n').enumerate();
    Ok(std::iter::from_fn(move || {
        let (i, line) = lines.next()?;
        let line = match line {
            Ok(l) => l,
            Err(e) => return Some(Err(format!("line {}: {e}", i + 1))),
        };
        Some(
            serde_json::from_slice::<CapturedBatch>(&line)
                .map_err(|e| format!("line {}: {e}", i + 1)),
        )
    }))
}
