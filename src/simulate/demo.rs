//! `autopi-rx --demo`: the receiver on loopback with a generated token, fed
//! over real HTTP by the simulated device about once a second.
//!
//! Unlike `simulate`, the demo paces the generated session to the wall
//! clock: each upload carries the records whose time has come, so the
//! screen shows ages as a real car would produce them. Parked hours between
//! drives are cut short, so the demo keeps moving.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryRecvError, bounded, select};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use crate::simulate::{
    Answer, MAX_FAILURES, Payload, Session, Stamps, Target, Uploader, encode, format_ts,
    unit_id_for,
};
use crate::time::parse_timestamp;

/// The seed of the demo's drive (any would do; fixed so demos look alike).
const SEED: u64 = 7;
/// Time between upload cycles.
const CYCLE: Duration = Duration::from_secs(1);
/// A quiet stretch longer than this (the car parked) is cut to a second.
const LONGEST_PAUSE: SignedDuration = SignedDuration::from_secs(20);
/// Most records in one upload (the device's own batch size).
const BATCH: usize = 100;
/// Most batches waiting to be sent again (an hour of cycles).
const MAX_PENDING: usize = 3600;

/// A fresh random token for this demo run, never shown.
pub fn generate_token() -> String {
    format!("demo-{:032x}", rand::random::<u128>())
}

/// How long a stop waits for the upload in flight before it leaves it.
const STOP_WAIT: Duration = Duration::from_secs(1);

/// The simulated device running on its own thread.
pub struct Demo {
    stop: Sender<()>,
    /// Disconnected when the thread ends.
    ended: Receiver<()>,
    thread: JoinHandle<()>,
}

impl Demo {
    /// Starts posting to the receiver at `addr` with `token`.
    pub fn start(addr: SocketAddr, token: &str) -> std::io::Result<Demo> {
        let target = Arc::new(Target::new(
            format!("http://{addr}/logbook/storage"),
            format!("token {token}"),
            unit_id_for(SEED),
            Duration::from_secs(10),
        ));
        let (stop, stopped) = bounded::<()>(0);
        let (ending, ended) = bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("demo-device".into())
            .spawn(move || {
                let _ending = ending;
                run(Uploader::new(target), &stopped);
            })?;
        Ok(Demo {
            stop,
            ended,
            thread,
        })
    }

    /// Stops the simulated device: waits up to `STOP_WAIT` for its upload
    /// in flight, then leaves it (it posts nothing after it). An answer
    /// mode that answers late or never held the quit for the upload's
    /// whole 10 s timeout.
    pub fn stop(self) {
        drop(self.stop);
        match self.ended.recv_timeout(STOP_WAIT) {
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            _ => {
                let _ = self.thread.join();
            }
        }
    }
}

/// Once a cycle: batch the records that are due and send what is pending,
/// oldest first. A batch that fails stays for the next cycle, byte for
/// byte, until it has failed `MAX_FAILURES` times (the device then moves it
/// to its fail queue, which the demo simply drops); at most `MAX_PENDING`
/// wait, oldest dropped first, so a receiver refusing for hours costs
/// bounded memory.
fn run(uploader: Uploader, stop: &Receiver<()>) {
    let mut clock = PacedSession::new(Timestamp::now());
    let mut pending: VecDeque<(Payload, u32)> = VecDeque::new();
    let mut number = 0;
    loop {
        select! {
            recv(stop) -> _ => return,
            default(CYCLE) => {}
        }
        let due = clock.due(Timestamp::now());
        if !due.is_empty() {
            if pending.len() == MAX_PENDING {
                pending.pop_front();
            }
            pending.push_back((encode(number, &due, Some(9)), 0));
            number += 1;
        }
        if !send_pending(&uploader, &mut pending, stop) {
            return;
        }
    }
}

/// Sends what is pending, oldest first, until one fails; false when told
/// to stop (asked between uploads: a backlog built while an answer mode
/// refused, up to `MAX_PENDING`, held the quit until all of it was sent, a
/// review).
fn send_pending(
    uploader: &Uploader,
    pending: &mut VecDeque<(Payload, u32)>,
    stop: &Receiver<()>,
) -> bool {
    while let Some((payload, failures)) = pending.front_mut() {
        if !matches!(stop.try_recv(), Err(TryRecvError::Empty)) {
            return false;
        }
        match uploader.post(payload) {
            Answer::Acknowledged { .. } => {
                pending.pop_front();
            }
            Answer::Refused { .. } | Answer::NoAnswer { .. } => {
                *failures += 1;
                if *failures >= MAX_FAILURES {
                    pending.pop_front();
                }
                break;
            }
        }
    }
    true
}

/// The generated session, its timestamps moved so it unfolds in real time.
struct PacedSession {
    session: std::iter::Peekable<Session>,
    /// Parked time cut out so far.
    skipped: SignedDuration,
}

impl PacedSession {
    fn new(start: Timestamp) -> PacedSession {
        PacedSession {
            session: Session::new(SEED, start, Stamps::Naive).peekable(),
            skipped: SignedDuration::ZERO,
        }
    }

    /// The records whose (moved) time is not after `now`, at most `BATCH`.
    fn due(&mut self, now: Timestamp) -> Vec<Value> {
        let mut due = Vec::new();
        while due.len() < BATCH {
            let Some(at) = self.session.peek().and_then(record_time) else {
                break;
            };
            let at = at - self.skipped;
            let wait = at.duration_since(now);
            if wait > LONGEST_PAUSE {
                self.skipped += wait - SignedDuration::from_secs(1);
            }
            if wait > SignedDuration::ZERO {
                break;
            }
            let mut record = self.session.next().expect("peeked");
            record["@ts"] = Value::String(format_ts(at.as_microsecond(), Stamps::Naive));
            due.push(record);
        }
        due
    }
}

fn record_time(record: &Value) -> Option<Timestamp> {
    parse_timestamp(record["@ts"].as_str()?).map(|(t, _)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stopped while its upload waits for an answer that never comes (an
    /// answer mode that hangs), the demo is left after a second, not
    /// waited for through the upload's 10 s timeout.
    #[test]
    fn a_stop_leaves_an_upload_that_gets_no_answer() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (taken_tx, taken) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                held.push(conn);
                let _ = taken_tx.send(());
            }
        });
        let demo = Demo::start(addr, "t").unwrap();
        taken
            .recv_timeout(Duration::from_secs(30))
            .expect("the demo's first upload");
        let asked = std::time::Instant::now();
        demo.stop();
        let took = asked.elapsed();
        assert!(took < Duration::from_secs(5), "the stop took {took:?}");
    }

    /// Told to stop, the backlog is left: no upload after it. Until told,
    /// every pending batch goes, oldest first.
    #[test]
    fn a_backlog_is_left_once_told_to_stop() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let (taken_tx, taken) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let _ = taken_tx.send(());
                let mut buf = [0u8; 65536];
                let mut got = Vec::new();
                // Head and body (its length from the head), then 200.
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length: usize = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |n| n.trim().parse().unwrap());
                        if got.len() >= end + 4 + length {
                            let _ = conn.write_all(
                                b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                            );
                            break;
                        }
                    }
                }
            }
        });
        let target = Arc::new(Target::new(
            url,
            "token t".into(),
            "u".into(),
            Duration::from_secs(10),
        ));
        let uploader = Uploader::new(target);
        let record = serde_json::json!({"@t": "obd.rpm", "@ts": "2026-11-27T08:00:00", "value": 1});
        let backlog = || -> VecDeque<(Payload, u32)> {
            (0..3)
                .map(|n| (encode(n, std::slice::from_ref(&record), None), 0))
                .collect()
        };
        let (stop_tx, stop) = bounded::<()>(0);
        let mut pending = backlog();
        assert!(send_pending(&uploader, &mut pending, &stop));
        assert_eq!((pending.len(), taken.try_iter().count()), (0, 3));
        drop(stop_tx);
        let mut pending = backlog();
        assert!(!send_pending(&uploader, &mut pending, &stop));
        assert_eq!((pending.len(), taken.try_iter().count()), (3, 0));
    }

    #[test]
    fn records_come_due_with_the_clock_and_parking_is_cut_short() {
        let start: Timestamp = "2026-11-27T08:00:00Z".parse().unwrap();
        let mut paced = PacedSession::new(start);
        let mut now = start;
        let mut last = start;
        let mut seen = 0;
        // Several simulated hours, one cycle at a time.
        for _ in 0..3 * 3600 {
            now += SignedDuration::from_secs(1);
            for record in paced.due(now) {
                let at = record_time(&record).unwrap();
                assert!(at <= now, "a record from the future: {record}");
                assert!(at >= last, "records out of order");
                last = at;
                seen += 1;
            }
            assert!(
                now.duration_since(last) <= LONGEST_PAUSE + SignedDuration::from_secs(2),
                "the demo went quiet at {now}"
            );
        }
        assert!(seen > 1000, "{seen} records in three hours");
        assert!(
            paced.skipped > SignedDuration::ZERO,
            "no parked time was cut"
        );
    }
}
