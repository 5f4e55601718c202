//! Opening the files a person names on the command line: captures to read
//! back, token files, CA bundles. None of them may leave the command
//! waiting for ever, or read without end.
//!
//! A named pipe with no writer makes a plain `open` for reading wait until
//! one comes (`view fifo` hung before it could say that captures are read
//! from files, and `replay` then ignored its first SIGTERM); a device such
//! as `/dev/zero` never ends. So every such file is opened without waiting
//! (`O_NONBLOCK`, then cleared for the reads), captures must be regular
//! files, and what is read whole is read up to a bound.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use rustix::fs::OFlags;

/// Opens `path` for reading without waiting for a pipe's writer; reads
/// then block as usual (a pipe with no writer reads as empty).
pub fn open(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    let flags = rustix::fs::fcntl_getfl(&file)?;
    rustix::fs::fcntl_setfl(&file, flags.difference(OFlags::NONBLOCK))?;
    Ok(file)
}

/// `paths` with a file given again (by another name too: a link, `./`)
/// left out, each said on stderr as `who` (`view`, `export`): read twice,
/// every batch of it counted as a duplicate of itself (a probe of the
/// offline tools). Names that cannot be read stay, for the reader to
/// refuse.
pub fn distinct(paths: &[std::path::PathBuf], who: &str) -> Vec<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt as _;
    let mut seen = std::collections::HashSet::new();
    paths
        .iter()
        .filter(|p| match std::fs::metadata(p) {
            Ok(m) if !seen.insert((m.dev(), m.ino())) => {
                crate::say!(
                    "autopi-rx {who}: {} is given again: read once",
                    crate::text::path(p)
                );
                false
            }
            _ => true,
        })
        .cloned()
        .collect()
}

/// A capture's metadata, as `std::fs::metadata` gives it, but for `-`
/// when no file has that name: stdin elsewhere (`-o -` writes to
/// stdout), said so where it was "No such file or directory" (a probe of
/// the offline tools).
pub fn capture_metadata(path: &Path) -> io::Result<std::fs::Metadata> {
    std::fs::metadata(path).map_err(|e| stdin_said(path, e))
}

/// `e`, or for `-` not found, that stdin is not read (see
/// `capture_metadata`).
fn stdin_said(path: &Path, e: io::Error) -> io::Error {
    if path.as_os_str() == "-" && e.kind() == io::ErrorKind::NotFound {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "stdin is not read: captures are read from files; save it to one first",
        )
    } else {
        e
    }
}

/// Opens a capture to read: a regular file, or an error naming what it is.
pub fn open_file(path: &Path) -> io::Result<File> {
    let not_a_file = |kind| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "not a regular file ({}): captures are read from files; save it to one first",
                what_it_is(kind)
            ),
        )
    };
    let file = open(path).map_err(|e| {
        let e = stdin_said(path, e);
        // A socket cannot be opened at all: the error said "No such
        // device or address".
        match std::fs::metadata(path) {
            Ok(m) if m.file_type().is_socket() => not_a_file(m.file_type()),
            _ => e,
        }
    })?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(not_a_file(kind));
    }
    Ok(file)
}

/// Whether `file` starts with gzip's magic bytes (a capture gzipped to
/// keep, given where a capture is read or written).
pub fn gzipped(file: &File) -> bool {
    let mut magic = [0u8; 2];
    std::os::unix::fs::FileExt::read_exact_at(file, &mut magic, 0).is_ok() && magic == [0x1f, 0x8b]
}

/// What a file that is not a regular one is, in words.
pub fn what_it_is(kind: std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "a folder"
    } else if kind.is_fifo() {
        "a pipe"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_file() {
        "a file"
    } else {
        "not a file"
    }
}

/// Reads all of `path` (a file, a pipe such as `<(pass show token)`, a
/// terminal), refusing it once it passes `most` bytes.
pub fn read_at_most(path: &Path, most: u64) -> io::Result<Vec<u8>> {
    let file = open(path)?;
    if file.metadata()?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is a folder",
        ));
    }
    let mut bytes = Vec::new();
    file.take(most + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > most {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it holds more than {}", size(most)),
        ));
    }
    Ok(bytes)
}

fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fifo(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        path
    }

    #[test]
    fn a_socket_is_said_to_be_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let _socket = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let e = open_file(&path).unwrap_err();
        assert!(
            e.to_string().contains("not a regular file (a socket)"),
            "{e}"
        );
    }

    #[test]
    fn a_pipe_with_no_writer_is_opened_without_waiting_and_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = fifo(dir.path());
        // A plain open would wait here for a writer that never comes.
        assert_eq!(read_at_most(&path, 10).unwrap(), b"");
        let e = open_file(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("a pipe"), "{e}");
    }

    #[test]
    fn captures_must_be_files_and_say_what_they_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let e = open_file(dir.path()).unwrap_err();
        assert!(e.to_string().contains("(a folder)"), "{e}");
        let e = open_file(Path::new("/dev/null")).unwrap_err();
        assert!(e.to_string().contains("(a device)"), "{e}");
        let file = dir.path().join("c.jsonl");
        std::fs::write(&file, "x\n").unwrap();
        let mut text = String::new();
        open_file(&file).unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "x\n");
    }

    #[test]
    fn an_endless_device_is_read_up_to_the_bound_and_refused() {
        let e = read_at_most(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(e.to_string(), "it holds more than 1 MiB");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t");
        std::fs::write(&file, b"0123456789").unwrap();
        assert_eq!(read_at_most(&file, 10).unwrap(), b"0123456789");
        let e = read_at_most(&file, 9).unwrap_err();
        assert_eq!(e.to_string(), "it holds more than 9 bytes");
        let e = read_at_most(dir.path(), 9).unwrap_err();
        assert_eq!(e.to_string(), "it is a folder");
    }
}
