//! Starting worker threads off the pumps. A pump that started a worker
//! itself stopped taking requests until the thread existed, and starting
//! a thread maps its stack: under a flood of hundreds of connections,
//! whose threads fault pages in all the while, that waits on the
//! process's memory-map lock for milliseconds. Meanwhile tiny_http kept
//! parsing into the pump's queue, and a pipelining connection was cut
//! only once the pump reached its ninth request. So the pumps only wake
//! this thread, which starts what is needed.

use std::io;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::receiver::accept;

/// Wakes the spawning thread; held by what needs more threads.
pub struct Spawner {
    wake: Sender<()>,
}

/// The spawning thread's end, until it is started.
pub struct Woken(Receiver<()>);

impl Spawner {
    pub fn new() -> (Spawner, Woken) {
        // One wake-up pending covers any number of calls meanwhile: the
        // thread looks at what is needed, not at how often it was asked.
        let (wake, woken) = bounded(1);
        (Spawner { wake }, Woken(woken))
    }

    /// Asks for a look at what is needed; never waits.
    pub fn wake(&self) {
        let _ = self.wake.try_send(());
    }
}

impl Woken {
    /// Starts the thread: each time it is woken it calls `grow` with
    /// `target`, which starts what is needed. It runs as far ahead as the
    /// pumps (a device's request may wait for the worker it starts), and
    /// ends once `target` is gone (its `Spawner` with it).
    pub fn run<T: Send + Sync + 'static>(
        self,
        target: Weak<T>,
        grow: fn(&Arc<T>),
    ) -> io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("worker-spawner".into())
            .spawn(move || {
                accept::step_ahead();
                while self.0.recv().is_ok() {
                    let Some(target) = target.upgrade() else {
                        break;
                    };
                    grow(&target);
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// What a test's `grow` sees and holds.
    struct Target {
        spawner: Spawner,
        grown: Arc<AtomicUsize>,
        /// `grow` waits for this before it returns.
        hold: Mutex<Option<Receiver<()>>>,
        entered: Sender<()>,
    }

    fn grow(t: &Arc<Target>) {
        t.grown.fetch_add(1, Ordering::SeqCst);
        let _ = t.entered.send(());
        let hold = t.hold.lock().unwrap().take();
        if let Some(hold) = hold {
            let _ = hold.recv();
        }
    }

    #[test]
    fn a_wake_never_waits_for_the_thread_it_starts_and_the_thread_ends_with_its_target() {
        let (spawner, woken) = Spawner::new();
        let (release, hold) = bounded::<()>(0);
        let (entered, entering) = bounded(16);
        let target = Arc::new(Target {
            spawner,
            grown: Arc::default(),
            hold: Mutex::new(Some(hold)),
            entered,
        });
        let thread = woken.run(Arc::downgrade(&target), grow).unwrap();
        target.spawner.wake();
        entering
            .recv_timeout(Duration::from_secs(10))
            .expect("woken");
        // `grow` is held now: wakes from here must come back at once, on
        // this thread, however many (a wake that started the work itself
        // would wait here for good; the test then fails at its timeout).
        let (done, finished) = bounded(1);
        let waker = target.clone();
        std::thread::spawn(move || {
            for _ in 0..1000 {
                waker.spawner.wake();
            }
            let _ = done.send(());
        });
        finished
            .recv_timeout(Duration::from_secs(10))
            .expect("wakes came back while the spawning thread was busy");
        assert_eq!(target.grown.load(Ordering::SeqCst), 1);
        drop(release);
        // The thousand wakes while it was busy make one more look.
        entering
            .recv_timeout(Duration::from_secs(10))
            .expect("woken again");
        let looks = target.grown.clone();
        drop(target);
        // The thread ends once its target is gone; counted after it has.
        let (joined, join) = bounded(1);
        std::thread::spawn(move || {
            let _ = joined.send(thread.join().is_ok());
        });
        assert_eq!(
            join.recv_timeout(Duration::from_secs(10)),
            Ok(true),
            "the spawning thread did not end with its target"
        );
        let looks = looks.load(Ordering::SeqCst);
        assert_eq!(looks, 2, "one look, then one for all the wakes meanwhile");
    }
}
