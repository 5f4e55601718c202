//! The capture wing: the file that is the record of truth. `writer` owns
//! the file and commits in groups (write every pending line, one fsync,
//! then answer every waiter); `reader` reads captures back tolerantly and
//! rebuilds the duplicate index when a capture is reopened, and follows
//! the file for the forwarders (`Tail`, up to the writer's `Durable` length).

mod reader;
mod writer;

pub use reader::{CapturedBatch, OutboxLine, Tail, read};
pub use writer::{Capture, CaptureHandle, Durable, Entry, FileSink, Recovered, Saved, Sink};
