//! Answer modes: how the receiver answers a valid batch, so a bench
//! engineer can make the device fail on purpose and watch what it does.
//!
//! Whatever the mode, the batch is decoded and captured first; the mode
//! only decides what the device is told. `Control` is the one place the
//! mode lives: the workers take a decision from it per upload, and the
//! dashboard (or `--respond`) sets it. Nothing else is shared.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Longest `late:SECS`: past any device timeout (60 s at most), and short
/// enough that a worker is not held for long.
pub const MAX_LATE_SECS: u64 = 600;

/// How valid batches are answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// 200 once saved (the normal receiver).
    #[default]
    Ok,
    /// Saved, then refused with this status (401, 413, 500 or 503).
    Refuse(u16),
    /// Saved, then answered 200 only after this long.
    Late(Duration),
    /// Saved, then no answer at all.
    Hangup,
    /// This percentage of uploads answered 500, the rest as `Ok`.
    Flaky(u8),
}

/// The statuses `Mode::Refuse` may take.
pub const REFUSALS: [u16; 4] = [500, 503, 401, 413];

impl Mode {
    /// Parses `ok`, `500`, `503`, `401`, `413`, `late:SECS`, `hangup` or
    /// `flaky:PCT`.
    pub fn parse(text: &str) -> Result<Mode, String> {
        let t = text.trim().to_ascii_lowercase();
        let expected = "expected ok, 500, 503, 401, 413, late:SECS, hangup or flaky:PCT";
        if t == "ok" {
            return Ok(Mode::Ok);
        }
        if t == "hangup" {
            return Ok(Mode::Hangup);
        }
        if let Some(secs) = t.strip_prefix("late:") {
            let secs: u64 = secs
                .parse()
                .map_err(|_| format!("late:SECS wants whole seconds, got {secs:?}"))?;
            if !(1..=MAX_LATE_SECS).contains(&secs) {
                return Err(format!(
                    "late:SECS wants 1 to {MAX_LATE_SECS} seconds, got {secs}"
                ));
            }
            return Ok(Mode::Late(Duration::from_secs(secs)));
        }
        if let Some(pct) = t.strip_prefix("flaky:") {
            let pct: u8 = pct
                .parse()
                .ok()
                .filter(|p| (1..=99).contains(p))
                .ok_or_else(|| format!("flaky:PCT wants a percentage from 1 to 99, got {pct:?}"))?;
            return Ok(Mode::Flaky(pct));
        }
        match t.parse::<u16>() {
            Ok(code) if REFUSALS.contains(&code) => Ok(Mode::Refuse(code)),
            _ => Err(format!("unknown answer mode {text:?}: {expected}")),
        }
    }

    /// What the device does while this mode is in force, in one line.
    pub fn consequence(&self) -> &'static str {
        match self {
            Mode::Ok => "the device deletes each batch once it is acknowledged",
            Mode::Refuse(401) => {
                "401: the device keeps the batch in its retry queue and re-sends it every cycle \
                 (the simulator stops: it treats 401 as a wrong token)"
            }
            Mode::Refuse(_) => {
                "the device keeps this batch in its retry queue and re-sends it next cycle; \
                 after max-retry failures it parks it until a reboot"
            }
            Mode::Late(_) => {
                "later than the device's timeout (10 s in its code, up to 60 s set), it gives \
                 up waiting and re-sends the identical bytes next cycle: expect duplicates"
            }
            Mode::Hangup => {
                "no answer: the device waits for its timeout, then re-sends the identical \
                 bytes next cycle"
            }
            Mode::Flaky(_) => {
                "refused batches stay in the retry queue and come back next cycle, \
                 next to the new ones"
            }
        }
    }

    /// The answer for one upload; `roll` is uniform in 0..100 (only
    /// `Flaky` looks at it).
    pub fn decide(&self, roll: u8) -> Answer {
        match *self {
            Mode::Ok => Answer::Ack,
            Mode::Refuse(code) => Answer::Refuse(code),
            Mode::Late(d) => Answer::Late(d),
            Mode::Hangup => Answer::Hangup,
            Mode::Flaky(pct) if roll < pct => Answer::Refuse(500),
            Mode::Flaky(_) => Answer::Ack,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Ok => f.write_str("ok"),
            Mode::Refuse(code) => write!(f, "{code}"),
            Mode::Late(d) => write!(f, "late:{}", d.as_secs()),
            Mode::Hangup => f.write_str("hangup"),
            Mode::Flaky(pct) => write!(f, "flaky:{pct}"),
        }
    }
}

/// What one upload is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 200 at once.
    Ack,
    /// This 4xx/5xx status.
    Refuse(u16),
    /// 200 after this long.
    Late(Duration),
    /// Nothing.
    Hangup,
}

impl Answer {
    /// Whether a 2xx goes out.
    pub fn acked(&self) -> bool {
        matches!(self, Answer::Ack | Answer::Late(_))
    }
}

/// The modes the dashboard's menu offers (`--respond` takes any).
pub const MENU: [Mode; 9] = [
    Mode::Ok,
    Mode::Refuse(500),
    Mode::Refuse(503),
    Mode::Refuse(401),
    Mode::Refuse(413),
    Mode::Late(Duration::from_secs(15)),
    Mode::Late(Duration::from_secs(70)),
    Mode::Hangup,
    Mode::Flaky(50),
];

/// For how long a mode set while running holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The next valid upload only; then the lasting mode again.
    NextUpload,
    /// Every upload until set again.
    UntilChanged,
}

/// The mode in force, shared between whoever sets it and the workers.
#[derive(Debug)]
pub struct Control {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    lasting: Mode,
    next: Option<Mode>,
    /// Answers taken so far: an undo applies only to the last one.
    taken: u64,
    /// Times the operator set a mode: an undo does not bring back a mode
    /// for the next upload that the operator has replaced since.
    sets: u64,
    /// Seeded: the same sequence of uploads gets the same flaky answers
    /// every run, so a bench run can be repeated.
    rng: ChaCha8Rng,
}

/// What a display needs to know of the control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shown {
    pub lasting: Mode,
    /// Set for the next upload only.
    pub next: Option<Mode>,
}

impl Shown {
    /// The mode the next upload meets.
    pub fn upcoming(&self) -> Mode {
        self.next.unwrap_or(self.lasting)
    }
}

impl Default for Control {
    fn default() -> Control {
        Control::new(Mode::Ok)
    }
}

impl Control {
    pub fn new(mode: Mode) -> Control {
        Control {
            state: Mutex::new(State {
                lasting: mode,
                next: None,
                taken: 0,
                sets: 0,
                rng: ChaCha8Rng::seed_from_u64(0x6175_746f_7069),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set(&self, mode: Mode, scope: Scope) {
        let mut s = self.lock();
        s.sets += 1;
        match scope {
            Scope::NextUpload => s.next = Some(mode),
            Scope::UntilChanged => {
                s.lasting = mode;
                s.next = None;
            }
        }
    }

    pub fn shown(&self) -> Shown {
        let s = self.lock();
        Shown {
            lasting: s.lasting,
            next: s.next,
        }
    }

    /// The mode in force for one valid upload and its answer; a mode set
    /// for the next upload only is used up.
    pub fn take(&self) -> (Mode, Answer) {
        let (mode, answer, _) = self.take_undoable();
        (mode, answer)
    }

    /// `take`, for an upload whose records are checked after its answer
    /// was chosen: when they fail, `undo` puts the control back as it was,
    /// so the mode meant for the next upload meets the next valid one and
    /// the flaky sequence stays what it would have been.
    pub fn take_undoable(&self) -> (Mode, Answer, Undo) {
        let mut s = self.lock();
        let undo = Undo {
            next: s.next,
            rng: s.rng.clone(),
            taken: s.taken,
            sets: s.sets,
        };
        let mode = s.next.take().unwrap_or(s.lasting);
        let roll = s.rng.random_range(0..100u8);
        s.taken += 1;
        (mode, mode.decide(roll), undo)
    }

    /// Takes back the last answer taken, unless another was taken since
    /// (then only the mode for the next upload is put back, unless the
    /// operator set a mode meanwhile).
    pub fn undo(&self, undo: Undo) {
        let mut s = self.lock();
        if s.taken == undo.taken + 1 {
            s.rng = undo.rng;
            s.taken = undo.taken;
        }
        if s.next.is_none() && s.sets == undo.sets {
            s.next = undo.next;
        }
    }
}

/// How to take back one `take_undoable`.
pub struct Undo {
    next: Option<Mode>,
    rng: ChaCha8Rng,
    taken: u64,
    sets: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print_back() {
        for text in [
            "ok", "500", "503", "401", "413", "late:15", "hangup", "flaky:50",
        ] {
            let mode = Mode::parse(text).unwrap();
            assert_eq!(mode.to_string(), text);
        }
        assert_eq!(
            Mode::parse(" LATE:3 ").unwrap(),
            Mode::Late(Duration::from_secs(3))
        );
        for bad in [
            "",
            "404",
            "late:",
            "late:0",
            "late:x",
            "flaky:0",
            "flaky:100",
            "hang",
        ] {
            let err = Mode::parse(bad).unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
    }

    #[test]
    fn an_undone_take_leaves_the_next_upload_and_the_flaky_sequence_as_they_were() {
        let control = Control::new(Mode::Flaky(50));
        let first: Vec<Answer> = (0..20).map(|_| control.take().1).collect();
        let control = Control::new(Mode::Flaky(50));
        control.set(Mode::Refuse(503), Scope::NextUpload);
        let (mode, _, undo) = control.take_undoable();
        assert_eq!(mode, Mode::Refuse(503));
        control.undo(undo);
        assert_eq!(control.take().0, Mode::Refuse(503));
        // A mode the operator set meanwhile is not overridden.
        control.set(Mode::Refuse(500), Scope::NextUpload);
        let (_, _, undo) = control.take_undoable();
        control.set(Mode::Flaky(50), Scope::UntilChanged);
        control.undo(undo);
        assert_eq!(control.shown().next, None);
        let control = Control::new(Mode::Flaky(50));
        control.take();
        for want in &first[1..] {
            let (_, _, undo) = control.take_undoable();
            control.undo(undo);
            assert_eq!(control.take().1, *want);
        }
    }

    #[test]
    fn answers_follow_the_mode() {
        assert_eq!(Mode::Ok.decide(0), Answer::Ack);
        assert_eq!(Mode::Refuse(503).decide(99), Answer::Refuse(503));
        assert_eq!(Mode::Hangup.decide(0), Answer::Hangup);
        assert_eq!(Mode::Flaky(30).decide(29), Answer::Refuse(500));
        assert_eq!(Mode::Flaky(30).decide(30), Answer::Ack);
        assert!(Answer::Late(Duration::from_secs(1)).acked());
        assert!(!Answer::Hangup.acked() && !Answer::Refuse(500).acked());
    }

    #[test]
    fn a_mode_for_the_next_upload_is_used_once() {
        let c = Control::new(Mode::Refuse(500));
        c.set(Mode::Hangup, Scope::NextUpload);
        assert_eq!(c.shown().upcoming(), Mode::Hangup);
        assert_eq!(c.take(), (Mode::Hangup, Answer::Hangup));
        assert_eq!(c.take(), (Mode::Refuse(500), Answer::Refuse(500)));
        c.set(Mode::Ok, Scope::UntilChanged);
        assert_eq!(c.take().0, Mode::Ok);
        assert_eq!(c.shown().next, None);
    }

    #[test]
    fn flaky_refuses_about_its_share() {
        let c = Control::new(Mode::Flaky(50));
        let refused = (0..1000).filter(|_| !c.take().1.acked()).count();
        assert!((400..600).contains(&refused), "{refused}");
    }
}
