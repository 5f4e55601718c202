//! `autopi-rx --demo`: the receiver on loopback with a generated token, fed
//! over real HTTP by the simulated device about once a second.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};

use crate::simulate::{Settings, Stamps, Target, run_settings, unit_id_for};

/// Records per upload: about one second of the simulated drive, so the
/// screen moves at the pace of a real car.
const RECORDS_PER_UPLOAD: usize = 5;
/// The seed of the demo's drive (any would do; fixed so demos look alike).
const SEED: u64 = 7;

/// A fresh random token for this demo run, never shown.
pub fn generate_token() -> String {
    format!("demo-{:032x}", rand::random::<u128>())
}

/// The simulated device running on its own thread.
pub struct Demo {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Demo {
    /// Starts posting to the receiver at `addr` with `token`.
    pub fn start(addr: SocketAddr, token: &str) -> std::io::Result<Demo> {
        let target = Target::new(
            format!("http://{addr}/logbook/storage"),
            format!("token {token}"),
            unit_id_for(SEED),
            Duration::from_secs(10),
        );
        let settings = Settings {
            target: Arc::new(target),
            gzip: Some(9),
            batch: RECORDS_PER_UPLOAD,
            interval: Duration::from_secs(1),
            count: None,
            concurrency: 1,
            seed: SEED,
            stamps: Stamps::Naive,
            start: jiff::Timestamp::now(),
            notes: false,
        };
        let (stop, stopped) = bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("demo-device".into())
            .spawn(move || {
                // Its failures show up as refused requests on the receiver.
                let _ = run_settings(&settings, &stopped);
            })?;
        Ok(Demo { stop, thread })
    }

    /// Stops the simulated device and waits for its upload in flight.
    pub fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}
