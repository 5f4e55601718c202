//! The process's one panic hook, installed once at start.
//!
//! Two things need a say in what a panic does, and they used to swap hooks
//! in and out (leaving a gap between `take_hook` and `set_hook`):
//! - a wing may *claim* panics it understands (the receiver claims the
//!   death of tiny_http's accept thread and ends the run with its reason);
//!   a claimed panic prints nothing here;
//! - while the dashboard owns the terminal, a panic on its thread restores
//!   the terminal before the message, and a panic on any other thread (a
//!   worker survives it, answering 500) is held and printed once the
//!   terminal is back, so it cannot tear the screen down.
//!
//! Neither side knows the other: this module knows no HTTP and no terminal.

use std::panic::PanicHookInfo;
use std::sync::{Mutex, Once};
use std::thread::ThreadId;

/// A function that takes a panic it recognises (returns true) and acts on it.
pub type Claim = fn(&PanicHookInfo<'_>) -> bool;

/// While a full-screen UI is up: its thread, how to give the terminal back,
/// and the messages of other threads' panics held until then.
struct Screen {
    thread: ThreadId,
    restore: fn(),
    held: Vec<String>,
}

static CLAIMS: Mutex<Vec<Claim>> = Mutex::new(Vec::new());
static SCREEN: Mutex<Option<Screen>> = Mutex::new(None);
static INSTALL: Once = Once::new();

/// Installs the hook (once per process; later calls do nothing). The
/// standard hook it wraps prints what is not claimed or held.
pub fn install() {
    INSTALL.call_once(|| {
        let print = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let claims = CLAIMS.lock().map(|c| c.clone()).unwrap_or_default();
            if claims.iter().any(|claim| claim(info)) {
                return;
            }
            let mut screen = SCREEN.lock().unwrap_or_else(|p| p.into_inner());
            match screen.as_mut() {
                Some(s) if s.thread == std::thread::current().id() => {
                    // Given back outside the lock: a terminal that takes
                    // no output must not hold `give_screen_back` too.
                    let restore = s.restore;
                    *screen = None;
                    drop(screen);
                    restore();
                    print(info);
                }
                Some(s) => s.held.push(info.to_string()),
                None => {
                    drop(screen);
                    print(info);
                }
            }
        }));
    });
}

/// Adds a claim (once: the same function twice is kept once) and makes
/// sure the hook is installed.
pub fn claim(f: Claim) {
    install();
    let mut claims = CLAIMS.lock().unwrap_or_else(|p| p.into_inner());
    if !claims.iter().any(|c| std::ptr::fn_addr_eq(*c, f)) {
        claims.push(f);
    }
}

/// Marks the calling thread as owning the terminal until the guard is
/// finished or dropped; `restore` gives the terminal back.
pub fn screen_up(restore: fn()) -> ScreenGuard {
    install();
    *SCREEN.lock().unwrap_or_else(|p| p.into_inner()) = Some(Screen {
        thread: std::thread::current().id(),
        restore,
        held: Vec::new(),
    });
    ScreenGuard { done: false }
}

/// The terminal is owned by a UI until this is finished or dropped.
pub struct ScreenGuard {
    done: bool,
}

impl ScreenGuard {
    /// The terminal is back: returns the messages of panics held meanwhile.
    pub fn finish(mut self) -> Vec<String> {
        self.done = true;
        take_screen()
    }
}

impl Drop for ScreenGuard {
    fn drop(&mut self) {
        if !self.done {
            for message in take_screen() {
                crate::say!("autopi-rx: {message}");
            }
        }
    }
}

/// Gives the terminal back from another thread, if a UI has it, and
/// prints the panics held meanwhile: for an exit while the UI's own thread
/// is stuck. The restore runs on a thread of its own and gets at most
/// `within`, so a terminal that takes no output cannot hold the exit.
pub fn give_screen_back(within: std::time::Duration) {
    let Some(screen) = SCREEN.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        return;
    };
    let (done_tx, done) = std::sync::mpsc::channel();
    let restore = screen.restore;
    let _ = std::thread::Builder::new()
        .name("give-screen-back".into())
        .spawn(move || {
            restore();
            let _ = done_tx.send(());
        });
    let _ = done.recv_timeout(within);
    for message in screen.held {
        crate::say!("autopi-rx: {message}");
    }
}

/// When a signal should end the process at once, from the thread that
/// receives signals: when the one it delivered before has waited untaken
/// for `STUCK`, whatever should take it (a screen's loop, a start reading
/// a capture) is stuck, or too busy to be waited for. A signal that finds
/// the one before it untaken sooner (the two SIGHUPs of a dropped SSH
/// session) is let go.
#[derive(Debug, Default)]
pub struct Untaken {
    delivered_at: Option<std::time::Instant>,
}

/// How long a delivered signal may wait untaken before the next one ends
/// the process.
pub const STUCK: std::time::Duration = std::time::Duration::from_secs(2);

impl Untaken {
    /// Notes a signal at `now`: `delivered` when the channel took it, false
    /// when the one before is still there (the channel holds one, and only
    /// this thread sends on it). How long that one has waited, when that
    /// is `STUCK` or more.
    pub fn stuck(
        &mut self,
        delivered: bool,
        now: std::time::Instant,
    ) -> Option<std::time::Duration> {
        if delivered {
            self.delivered_at = Some(now);
            return None;
        }
        let waited = now.saturating_duration_since(self.delivered_at?);
        (waited >= STUCK).then_some(waited)
    }

    /// `stuck` now; when it is, gives the terminal back (at most 500 ms),
    /// says `why(waited)` on stderr and exits 1.
    pub fn exit_if_stuck(&mut self, delivered: bool, why: impl FnOnce(f64) -> String) {
        if let Some(waited) = self.stuck(delivered, std::time::Instant::now()) {
            give_screen_back(std::time::Duration::from_millis(500));
            crate::say!("{}", why(waited.as_secs_f64()));
            std::process::exit(1);
        }
    }
}

fn take_screen() -> Vec<String> {
    SCREEN
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .map(|s| s.held)
        .unwrap_or_default()
}

/// Locks `m`, taking over a lock whose holder panicked: every lock the
/// process shares guards state that stays consistent between statements
/// (counters, queues, maps), and a worker's panic is answered 500 and
/// survived, so its locks must stay usable.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A signal that finds the one before untaken ends the process only
    /// once that one has waited `STUCK`; one taken in time resets it.
    #[test]
    fn a_signal_ends_the_process_only_when_the_one_before_waited_too_long() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut u = Untaken::default();
        // Nothing delivered yet (a full channel it did not fill): no.
        assert_eq!(u.stuck(false, at(0)), None);
        assert_eq!(u.stuck(true, at(0)), None);
        // The two SIGHUPs of a dropped session, 10 ms apart: let go.
        assert_eq!(u.stuck(false, at(10)), None);
        assert_eq!(u.stuck(false, at(1_999)), None);
        assert_eq!(
            u.stuck(false, at(2_500)),
            Some(Duration::from_millis(2_500))
        );
        // Taken meanwhile: the next one is delivered and waits afresh.
        assert_eq!(u.stuck(true, at(10_000)), None);
        assert_eq!(u.stuck(false, at(11_000)), None);
        assert_eq!(u.stuck(false, at(12_000)), Some(STUCK));
    }
}
