//! The view's timeline: the dashboard as it stood after any batch of a
//! capture. The state at the cursor is the same pure fold the live
//! receiver runs (`State::apply`) over the batches up to it; stepping back
//! starts from the nearest saved state before the cursor and folds forward.
//! At the bottom of the screen:
//! ```text
//!  ← → step  Home End  space play  + - speed      upload 1,234 of 5,000 · 08:12:03 · ▶ 60×
//!  2026-11-27 08:00:07 ━━━━━━━━━━━━━━━━●─────────────────────── 2026-11-27 18:40:00
//! ```

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select, tick};
use jiff::Timestamp;
use ratatui::Terminal;
use ratatui::backend::Backend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use crate::dashboard::app::{Action, App};
use crate::dashboard::format::count;
use crate::dashboard::state::State;
use crate::event::RequestEvent;

/// The timeline's keys, as the help shows them.
pub const KEYS: &[(&str, &str)] = &[
    ("← →", "previous / next upload (d D switch device here)"),
    ("Home End", "first / last upload"),
    ("space  + -", "play or pause; faster / slower"),
];

/// Lines the timeline takes at the bottom of the screen.
pub const HEIGHT: u16 = 2;
/// Playing speeds, times the capture's own pace.
pub const SPEEDS: [u32; 11] = [1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];
/// 60×: a minute of capture per second.
const DEFAULT_SPEED: usize = 5;
/// How often playing moves the cursor.
const PLAY_TICK: Duration = Duration::from_millis(100);
/// While playing, a silence longer than this (on screen) is skipped.
const LONGEST_WAIT: Duration = Duration::from_secs(3);
/// Fewest batches between saved states, unless the source says otherwise.
const MIN_SPACING: u64 = 128;
/// Most saved states kept.
const MAX_SAVED: usize = 64;

/// What the timeline bar shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Cursor {
    /// Batches folded so far (the cursor is after this many).
    pub position: usize,
    pub batches: usize,
    /// The time the panels are shown at.
    pub at: Option<Timestamp>,
    pub first: Option<Timestamp>,
    pub last: Option<Timestamp>,
    pub playing: bool,
    pub speed: u32,
    /// Batches that could not be read again since the view began (the
    /// file changed under it): said on the bar, not only at exit.
    pub unreadable: u64,
}

/// Where the timeline's batches come from, by index in time order.
pub trait Batches {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// When batch `i` arrived.
    fn received(&self, i: usize) -> Timestamp;
    /// Batch `i` as the listener reported it (None if it cannot be read
    /// again: the file changed under us).
    fn event(&mut self, i: usize) -> Option<RequestEvent>;
    /// What folding batch `i` costs, in any unit (the default: one per
    /// batch). Saved states are spaced by it, so stepping back costs about
    /// the same whatever the batches' sizes.
    fn weight(&self, _i: usize) -> u64 {
        1
    }
    /// Least weight between two saved states.
    fn min_spacing(&self) -> u64 {
        MIN_SPACING
    }
}

/// The cursor over a capture's batches and the saved states behind it.
pub struct Timeline<S: Batches> {
    source: S,
    /// Batches folded into the app's state: 0 (none) to `len`.
    folded: usize,
    /// (batches folded, the state then, without request bodies).
    saved: Vec<(usize, State)>,
    /// Weight folded between two saved states, and since the last one.
    spacing: u64,
    since_saved: u64,
    playing: bool,
    speed: usize,
    /// While playing: the time shown, between two batches.
    play_clock: Option<Timestamp>,
    /// Batches that could not be read again, each once however often
    /// the cursor passes it.
    unread: std::collections::BTreeSet<usize>,
}

impl<S: Batches> Timeline<S> {
    /// A timeline over `source`, nothing folded yet.
    pub fn new(source: S) -> Timeline<S> {
        let total: u64 = (0..source.len()).map(|i| source.weight(i)).sum();
        let spacing = total.div_ceil(MAX_SAVED as u64).max(source.min_spacing());
        Timeline {
            source,
            folded: 0,
            saved: vec![(0, State::default())],
            spacing,
            since_saved: 0,
            playing: false,
            speed: DEFAULT_SPEED,
            play_clock: None,
            unread: std::collections::BTreeSet::new(),
        }
    }

    /// Folds `events` (one per batch from 0 on, in order, None for a batch
    /// that could not be read: the fast first pass) into `app`, saving
    /// states on the way; `progress` hears each count.
    pub fn load(
        &mut self,
        app: &mut App,
        events: impl Iterator<Item = Option<RequestEvent>>,
        mut progress: impl FnMut(usize),
    ) {
        for e in events.take(self.source.len() - self.folded) {
            match e {
                Some(e) => app.apply(&e),
                None => {
                    self.unread.insert(self.folded);
                }
            }
            self.folded += 1;
            self.save(app, self.folded - 1);
            progress(self.folded);
        }
        self.show_time(app);
    }

    /// Counts batch `i` as folded, keeping the state once `spacing` weight
    /// has been folded since the last state kept.
    fn save(&mut self, app: &App, i: usize) {
        self.since_saved += self.source.weight(i);
        let last = self.saved.last().map_or(0, |s| s.0);
        if self.since_saved >= self.spacing && self.folded > last {
            self.since_saved = 0;
            let mut state = app.live().clone();
            state.forget_bodies();
            self.saved.push((self.folded, state));
        }
    }

    /// Moves the cursor so that `target` batches are folded.
    pub fn seek(&mut self, app: &mut App, target: usize) {
        let target = target.min(self.source.len());
        if target < self.folded {
            let (at, state) = self
                .saved
                .iter()
                .rev()
                .find(|(n, _)| *n <= target)
                .map(|(n, s)| (*n, s.clone()))
                .unwrap_or_default();
            app.replace_state(state);
            self.folded = at;
            self.since_saved = 0;
        }
        while self.folded < target {
            match self.source.event(self.folded) {
                Some(e) => app.apply(&e),
                None => {
                    self.unread.insert(self.folded);
                }
            }
            self.folded += 1;
            self.save(app, self.folded - 1);
        }
        self.play_clock = None;
        self.show_time(app);
    }

    /// Ages on screen are measured from the cursor's time.
    fn show_time(&self, app: &mut App) {
        if let Some(t) = self.play_clock.or_else(|| self.cursor_time()) {
            app.tick(t);
        }
        app.timeline = Some(self.cursor());
    }

    /// When the last folded batch arrived.
    fn cursor_time(&self) -> Option<Timestamp> {
        self.folded.checked_sub(1).map(|i| self.source.received(i))
    }

    /// What the bar shows.
    pub fn cursor(&self) -> Cursor {
        let n = self.source.len();
        Cursor {
            position: self.folded,
            batches: n,
            at: self.play_clock.or_else(|| self.cursor_time()),
            first: (n > 0).then(|| self.source.received(0)),
            last: n.checked_sub(1).map(|i| self.source.received(i)),
            playing: self.playing,
            speed: SPEEDS[self.speed],
            unreadable: self.unreadable(),
        }
    }

    /// Batches that could not be read again since the view began.
    pub fn unreadable(&self) -> u64 {
        self.unread.len() as u64
    }

    /// Batches folded.
    pub fn position(&self) -> usize {
        self.folded
    }

    /// Handles a timeline key; false when the key is not one.
    pub fn handle_key(&mut self, app: &mut App, key: KeyEvent) -> bool {
        match key.code {
            KeyCode::Right => self.seek(app, self.folded + 1),
            KeyCode::Left => self.seek(app, self.folded.saturating_sub(1).max(1)),
            KeyCode::Home => self.seek(app, 1),
            KeyCode::End => self.seek(app, self.source.len()),
            KeyCode::Char(' ') => {
                self.playing = !self.playing;
                if self.playing && self.folded >= self.source.len() {
                    // Playing from the end starts again from the start.
                    self.seek(app, 1);
                }
                self.show_time(app);
            }
            KeyCode::Char('+' | '=') => {
                self.speed = (self.speed + 1).min(SPEEDS.len() - 1);
                self.show_time(app);
            }
            KeyCode::Char('-' | '_') => {
                self.speed = self.speed.saturating_sub(1);
                self.show_time(app);
            }
            // Freezing means nothing here: the view does not move by itself.
            KeyCode::Char('f') => {}
            _ => return false,
        }
        true
    }

    /// Moves the play clock on by `wall` at the chosen speed, folding the
    /// batches it passes; a long silence is skipped. True if anything moved.
    pub fn play(&mut self, app: &mut App, wall: Duration) -> bool {
        if !self.playing {
            return false;
        }
        if self.folded >= self.source.len() {
            self.playing = false;
            self.play_clock = None;
            self.show_time(app);
            return true;
        }
        let Some(now) = self.play_clock.or_else(|| self.cursor_time()) else {
            self.seek(app, 1);
            return true;
        };
        let speed = SPEEDS[self.speed] as f64;
        let next = self.source.received(self.folded);
        let gap =
            Duration::from_millis((next.as_millisecond() - now.as_millisecond()).max(0) as u64);
        let step = wall.mul_f64(speed);
        let clock = if gap.div_f64(speed) > LONGEST_WAIT {
            next
        } else {
            // Past the last time there is (9999-12-30), the clock stops
            // there: adding panicked (`view` of a capture stamped then,
            // played at 3600×; a review, December 7).
            now.checked_add(step.min(Duration::from_secs(86_400 * 365)))
                .unwrap_or(Timestamp::MAX)
        };
        let mut target = self.folded;
        while target < self.source.len() && self.source.received(target) <= clock {
            target += 1;
        }
        self.seek(app, target);
        if self.folded < self.source.len() {
            self.play_clock = Some(clock.max(self.cursor_time().unwrap_or(clock)));
        } else {
            // The end: the clock stops at the last batch.
            self.playing = false;
        }
        self.show_time(app);
        true
    }
}

/// Draws the bar: keys and position, then the span with the cursor.
pub fn render(app: &App, c: &Cursor, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let keys = [
        ("← →", " step  "),
        ("Home End", " start/end  "),
        ("space", if c.playing { " pause  " } else { " play  " }),
        ("+ -", " speed"),
    ];
    let mut spans: Vec<Span> = vec![Span::raw(" ")];
    for (k, what) in keys {
        spans.push(Span::styled(k, t.key));
        spans.push(Span::styled(what, t.label));
    }
    let state = if c.playing { "▶ playing" } else { "paused" };
    let at =
        c.at.map_or_else(|| "before the first batch".into(), long_time);
    // A capture cut short or replaced while viewed: its batches read
    // as nothing, and the panels stood empty at "batch 3,008 of 3,009"
    // with no word until the exit (a probe, December 7).
    // Every captured upload counts, copies and refused ones too: the
    // header's batches are those acknowledged ("batch 146 of 146" beside
    // "batches 40" read as a contradiction: a UX review).
    let right = |unread: &str| {
        format!(
            "upload {} of {}{unread} · {at} · {state} {}× ",
            count(c.position as u64),
            count(c.batches as u64),
            c.speed
        )
    };
    // The long form where it fits beside the first space, else a short
    // one: at 80 columns the long one cut the time and the play state.
    let right = match c.unreadable {
        0 => right(""),
        n => {
            let long = right(&format!(
                " · {} not read again: the file changed?",
                count(n)
            ));
            if long.chars().count() < area.width as usize {
                long
            } else {
                right(&format!(" · {} unread", count(n)))
            }
        }
    };
    let mut used: usize = spans.iter().map(|s| s.width()).sum();
    if used + right.chars().count() > area.width as usize {
        // Narrow: where the cursor is matters more than the key hints
        // (they are in the help).
        spans.truncate(1);
        used = 1;
    }
    let pad = (area.width as usize).saturating_sub(used + right.chars().count());
    spans.push(Span::raw(" ".repeat(pad.max(1))));
    spans.push(Span::styled(
        right,
        if c.playing { t.frozen } else { t.value },
    ));
    let rows = Rect { height: 1, ..area };
    Paragraph::new(Line::from(spans)).render(rows, buf);
    if area.height < 2 {
        return;
    }
    let bar_row = Rect {
        y: area.y + 1,
        height: 1,
        ..area
    };
    let (Some(first), Some(last)) = (c.first, c.last) else {
        Paragraph::new(Span::styled(" the capture holds no batch", t.dim)).render(bar_row, buf);
        return;
    };
    let (from, to) = (
        format!(" {} ", long_time(first)),
        format!(" {} ", long_time(last)),
    );
    let width = (area.width as usize).saturating_sub(from.chars().count() + to.chars().count());
    let span_ms = (last.as_millisecond() - first.as_millisecond()).max(1) as f64;
    let at_ms = c.at.map_or(-1.0, |a| {
        (a.as_millisecond() - first.as_millisecond()) as f64
    });
    let filled = if at_ms < 0.0 || width == 0 {
        0
    } else {
        ((at_ms / span_ms) * (width - 1) as f64)
            .round()
            .clamp(0.0, (width - 1) as f64) as usize
    };
    let mut bar = vec![
        Span::styled(from, t.dim),
        Span::styled("━".repeat(filled), t.chart),
    ];
    if width > 0 {
        bar.push(Span::styled("●", t.key));
        bar.push(Span::styled("─".repeat(width - filled - 1), t.dim));
    }
    bar.push(Span::styled(to, t.dim));
    Paragraph::new(Line::from(bar)).render(bar_row, buf);
}

/// `2026-11-27 08:12:03`.
fn long_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// Runs the view until q, Ctrl-C, a signal or the input closing: timeline
/// keys move the cursor, the others work as on the live dashboard.
pub fn run<B: Backend, S: Batches>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    timeline: &mut Timeline<S>,
    input: Receiver<Event>,
    stop: Receiver<()>,
) -> Result<(), B::Error> {
    let ticker = tick(PLAY_TICK);
    let mut input = input;
    let mut dirty = true;
    let mut last_tick = Instant::now();
    loop {
        if dirty {
            let size = terminal.size()?;
            app.resize(size.width, size.height);
            terminal.draw(|frame| frame.render_widget(&*app, frame.area()))?;
            dirty = false;
        }
        select! {
            recv(input) -> i => match i {
                Ok(Event::Key(key)) if key.kind != KeyEventKind::Release => {
                    let typing = app.viewer.filter.editing;
                    if (typing || !timeline.handle_key(app, key))
                        && app.handle_key(key) == Action::Quit
                    {
                        return Ok(());
                    }
                    dirty = true;
                }
                Ok(_) => dirty = true,
                Err(_) => input = crossbeam_channel::never(),
            },
            recv(stop) -> _ => return Ok(()),
            recv(ticker) -> _ => {
                let wall = last_tick.elapsed();
                last_tick = Instant::now();
                dirty |= timeline.play(app, wall);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::app::Setup;
    use crate::dashboard::theme::Theme;
    use crate::fixtures::{accepted, at};

    /// Batches one minute apart, each with one battery reading; those
    /// from the second field on cannot be read again.
    struct Fake(Vec<RequestEvent>, usize);

    impl Batches for Fake {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn received(&self, i: usize) -> Timestamp {
            self.0[i].received
        }
        fn event(&mut self, i: usize) -> Option<RequestEvent> {
            (i < self.1).then(|| self.0[i].clone())
        }
    }

    fn fake(n: usize) -> Fake {
        fake_from(at("2026-11-27T08:00:00Z"), n)
    }

    /// `n` batches a minute apart from `start`.
    fn fake_from(start: Timestamp, n: usize) -> Fake {
        Fake(
            (0..n)
                .map(|i| {
                    let t = start + Duration::from_secs(60 * i as u64);
                    let body = format!(
                        r#"[{{"@t":"obd.bat","@ts":"{}","voltage":{}.5,"state":"charging"}}]"#,
                        t,
                        10 + i
                    );
                    accepted(i as u64 + 1, t, Some("a"), &body)
                })
                .collect(),
            n,
        )
    }

    /// Played at the fastest speed near the last time there is, the clock
    /// stops there and the last batch is reached.
    #[test]
    fn playing_up_to_the_last_time_there_is_reaches_the_end() {
        let source = fake_from(at("9999-12-30T21:55:00Z"), 4);
        let events = source.0.clone();
        let mut app = App::new(Setup::default(), Theme::mono(), at("9999-12-30T21:55:00Z"));
        let mut tl = Timeline::new(source);
        tl.load(&mut app, events.into_iter().map(Some), |_| {});
        tl.handle_key(&mut app, key(KeyCode::Home));
        for _ in 0..SPEEDS.len() {
            tl.handle_key(&mut app, key(KeyCode::Char('+')));
        }
        tl.handle_key(&mut app, key(KeyCode::Char(' ')));
        tl.play(&mut app, Duration::from_secs(600));
        let c = tl.cursor();
        assert_eq!((c.position, c.playing), (4, false));
    }

    fn voltage(app: &App) -> Option<f64> {
        app.device()?.battery.as_ref()?.value.voltage
    }

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::from(code)
    }

    #[test]
    fn every_position_shows_the_fold_up_to_it() {
        let source = fake(1000);
        let events = source.0.clone();
        let mut app = App::new(Setup::default(), Theme::mono(), at("2026-11-27T08:00:00Z"));
        let mut tl = Timeline::new(source);
        tl.load(&mut app, events.clone().into_iter().map(Some), |_| {});
        assert_eq!(tl.position(), 1000);
        assert!(tl.saved.len() > 2);
        for target in [500, 3, 999, 130, 1, 257, 1000] {
            tl.seek(&mut app, target);
            let mut fresh = State::default();
            for e in &events[..target] {
                fresh.apply(e);
            }
            let got = app.live();
            assert_eq!(got.totals, fresh.totals, "at {target}");
            assert_eq!(
                format!("{:?}", got.devices),
                format!("{:?}", fresh.devices),
                "at {target}"
            );
            assert_eq!(app.now(), events[target - 1].received);
        }
    }

    #[test]
    fn keys_step_jump_and_play() {
        let source = fake(10);
        let events = source.0.clone();
        let mut app = App::new(Setup::default(), Theme::mono(), at("2026-11-27T08:00:00Z"));
        let mut tl = Timeline::new(source);
        tl.load(&mut app, events.into_iter().map(Some), |_| {});
        assert!(tl.handle_key(&mut app, key(KeyCode::Home)));
        assert_eq!((tl.position(), voltage(&app)), (1, Some(10.5)));
        tl.handle_key(&mut app, key(KeyCode::Right));
        tl.handle_key(&mut app, key(KeyCode::Right));
        assert_eq!(voltage(&app), Some(12.5));
        tl.handle_key(&mut app, key(KeyCode::Left));
        assert_eq!(voltage(&app), Some(11.5));
        tl.handle_key(&mut app, key(KeyCode::End));
        assert_eq!(voltage(&app), Some(19.5));
        // Space at the end plays from the start; at 60× a minute passes
        // in a second of wall time.
        tl.handle_key(&mut app, key(KeyCode::Char(' ')));
        assert_eq!(tl.position(), 1);
        tl.play(&mut app, Duration::from_millis(1000));
        assert_eq!(tl.position(), 2);
        tl.handle_key(&mut app, key(KeyCode::Char('+')));
        assert_eq!(tl.cursor().speed, 120);
        tl.play(&mut app, Duration::from_millis(1000));
        assert_eq!(tl.position(), 4);
        assert!(!tl.handle_key(&mut app, key(KeyCode::Char('x'))));
        // Playing to the end stops there, at the last batch's time.
        tl.play(&mut app, Duration::from_secs(3600));
        let c = tl.cursor();
        assert_eq!((c.position, c.playing, c.at), (10, false, c.last));
    }

    /// Batches that cannot be read again (the capture cut short while
    /// viewed) are counted, and the bar says so.
    #[test]
    fn batches_not_read_again_are_said_on_the_bar() {
        let mut source = fake(10);
        let events = source.0.clone();
        source.1 = 6;
        let mut app = App::new(Setup::default(), Theme::mono(), at("2026-11-27T08:00:00Z"));
        let mut tl = Timeline::new(source);
        tl.load(&mut app, events.into_iter().map(Some), |_| {});
        let bar = |tl: &Timeline<Fake>, app: &App| {
            let area = Rect::new(0, 0, 120, 2);
            let mut buf = Buffer::empty(area);
            render(app, &tl.cursor(), area, &mut buf);
            (0..120)
                .map(|x| buf[(x, 0)].symbol().to_string())
                .collect::<String>()
        };
        assert!(!bar(&tl, &app).contains("not read again"));
        // Passed twice, each is counted once.
        tl.seek(&mut app, 2);
        tl.seek(&mut app, 10);
        tl.seek(&mut app, 2);
        tl.seek(&mut app, 10);
        assert_eq!(tl.cursor().unreadable, 4);
        let shown = bar(&tl, &app);
        assert!(
            shown.contains("upload 10 of 10 · 4 not read again: the file changed?"),
            "{shown}"
        );
        // At 80 columns, a short form that leaves the time and the state.
        let area = Rect::new(0, 0, 80, 2);
        let mut buf = Buffer::empty(area);
        render(&app, &tl.cursor(), area, &mut buf);
        let narrow: String = (0..80).map(|x| buf[(x, 0)].symbol().to_string()).collect();
        assert!(
            narrow.contains("upload 10 of 10 · 4 unread · 2026-11-27 08:09:00 · paused 60× "),
            "{narrow}"
        );
    }
}
