//! The capture wing: the file that is the record of truth. `writer` owns
//! the file and commits in groups (write every pending line, one fsync,
//! then answer every waiter); `reader` rebuilds the duplicate index when a
//! capture is reopened; `load` reads captures back tolerantly for the view,
//! the live receiver's start, `summary`, `export` and `replay`.

pub mod export;
pub mod load;
mod reader;
pub mod replay;
pub mod summary;
mod writer;

pub use reader::{CapturedBatch, read};
pub use writer::{Capture, CaptureHandle, Entry, FileSink, Recovered, Saved, Sink};
