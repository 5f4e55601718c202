//! The dashboard's application: the state fold plus what the viewer chose
//! (tab, scroll, filter, freeze, device, open request, help), the keys that
//! change it, and the loop that feeds it. Everything outside (request
//! events, terminal input, signals, the clock, the capture size) comes in
//! through `Outside`, so tests drive the whole app on a `TestBackend`
//! without threads.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, after, never, select, tick};
use jiff::Timestamp;
use ratatui::Terminal;
use ratatui::backend::Backend;
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::dashboard::state::State;
use crate::dashboard::ui::theme::Theme;
use crate::event::RequestEvent;

/// Lines moved by PgUp/PgDn.
pub const PAGE: usize = 10;
/// How often ages and the capture size are refreshed.
pub const TICK: Duration = Duration::from_secs(1);
/// Longest time spent folding queued events before a redraw is due.
pub const DRAIN_BUDGET: Duration = Duration::from_millis(40);
/// Shortest time between two redraws caused by requests: a flood of
/// uploads is shown 20 times a second, not once per request.
pub const MIN_REDRAW: Duration = Duration::from_millis(50);

/// The three tabs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tab {
    #[default]
    Live,
    Requests,
    Types,
}

impl Tab {
    /// Every tab in key order.
    pub const ALL: [Tab; 3] = [Tab::Live, Tab::Requests, Tab::Types];

    /// The tab's name on screen.
    pub fn title(self) -> &'static str {
        match self {
            Tab::Live => "Live",
            Tab::Requests => "Requests",
            Tab::Types => "Types",
        }
    }

    /// The tab Tab moves to.
    fn next(self) -> Tab {
        match self {
            Tab::Live => Tab::Requests,
            Tab::Requests => Tab::Types,
            Tab::Types => Tab::Live,
        }
    }

    /// The tab Shift-Tab moves to.
    fn previous(self) -> Tab {
        self.next().next()
    }
}

/// Facts for the header that do not come from requests.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// `http://IP:PORT/` the device can be pointed at.
    pub urls: Vec<String>,
    /// Said beside the URLs (e.g. that a loopback address is unreachable).
    pub url_note: Option<String>,
    /// Configured tokens; 0 means `--no-auth`.
    pub tokens: usize,
    pub capture_path: String,
    /// Refreshed on each tick.
    pub capture_bytes: Option<u64>,
    /// Events the listener dropped because the screen was too slow.
    pub dropped_events: u64,
    /// `--demo`: the uploads come from the built-in simulated device.
    pub demo: bool,
    /// `autopi-rx view`: captures looked back at, no listener.
    pub viewing: bool,
}

/// What the viewer chose to see.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub tab: Tab,
    pub help: bool,
    /// The chosen device; None shows the first one.
    pub device: Option<String>,
    /// Event lines scrolled up from the newest; 0 follows new ones.
    pub events_scroll: usize,
    pub filter: String,
    pub filter_editing: bool,
    /// Selected request id; None follows the newest.
    pub selected: Option<u64>,
    /// Request id whose detail is open.
    pub detail: Option<u64>,
    pub detail_scroll: usize,
    pub types_scroll: usize,
}

/// The state as shown while frozen, and the time it was frozen at.
#[derive(Clone, Debug)]
struct Frozen {
    state: Box<State>,
    now: Timestamp,
}

/// State plus view: all a frame is drawn from.
#[derive(Clone, Debug)]
pub struct App {
    live: State,
    frozen: Option<Frozen>,
    now: Timestamp,
    pub setup: Setup,
    pub theme: Theme,
    pub view: View,
    /// Terminal size of the last frame, for page sizes and scroll limits.
    size: (u16, u16),
    /// The open request's body, laid out once when opened rather than in
    /// every frame (a 1000-record batch is some 12 000 lines).
    detail_body: Vec<String>,
    /// `autopi-rx view`: where the cursor is, drawn at the bottom.
    pub timeline: Option<crate::dashboard::timeline::Cursor>,
}

/// What a key asks of the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    Quit,
}

impl App {
    /// A fresh dashboard at time `now`.
    pub fn new(setup: Setup, theme: Theme, now: Timestamp) -> App {
        App {
            live: State::default(),
            frozen: None,
            now,
            setup,
            theme,
            view: View::default(),
            size: (0, 0),
            detail_body: Vec::new(),
            timeline: None,
        }
    }

    /// Shows `state` in place of the current one (the view's timeline
    /// stepping back to a saved state).
    pub fn replace_state(&mut self, state: State) {
        self.live = state;
        self.frozen = None;
    }

    /// Tells the app the terminal size it is drawn at.
    pub fn resize(&mut self, width: u16, height: u16) {
        self.size = (width, height);
    }

    /// Folds one request event (also while frozen: only the display stops).
    pub fn apply(&mut self, e: &RequestEvent) {
        let before = self.device().map_or(0, |d| d.events_seen);
        self.live.apply(e);
        if self.view.events_scroll > 0 && !self.is_frozen() {
            self.keep_events_in_place(before);
        }
    }

    /// Scrolled back, the lines in view stay put as new events arrive
    /// below them (only following shows the newest).
    fn keep_events_in_place(&mut self, seen_before: u64) {
        let Some(device) = self.device() else {
            return;
        };
        let new = (device.events_seen - seen_before).min(device.events.len() as u64) as usize;
        let needle = self.view.filter.to_lowercase();
        let matching = device
            .events
            .iter()
            .rev()
            .take(new)
            .filter(|l| needle.is_empty() || crate::dashboard::ui::events::matches(l, &needle))
            .count();
        self.view.events_scroll += matching;
    }

    /// Moves the clock the ages are measured against.
    pub fn tick(&mut self, now: Timestamp) {
        self.now = now;
    }

    /// The state on screen: the live one, or the snapshot when frozen.
    pub fn shown(&self) -> &State {
        self.frozen.as_ref().map_or(&self.live, |f| &f.state)
    }

    /// The live state, frozen or not.
    pub fn live(&self) -> &State {
        &self.live
    }

    /// The time ages are measured against on screen.
    pub fn now(&self) -> Timestamp {
        self.frozen.as_ref().map_or(self.now, |f| f.now)
    }

    /// True while the display is frozen.
    pub fn is_frozen(&self) -> bool {
        self.frozen.is_some()
    }

    /// The device whose panels are shown, if any sent a batch.
    pub fn device(&self) -> Option<&crate::dashboard::state::Device> {
        let devices = &self.shown().devices;
        self.view
            .device
            .as_deref()
            .and_then(|id| devices.iter().find(|d| d.unit_id == id))
            .or_else(|| devices.first())
    }

    /// Changes the view for one key.
    pub fn handle_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::Continue;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && key.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        if self.view.filter_editing {
            self.edit_filter(key.code);
            return Action::Continue;
        }
        match key.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Char('?') => self.view.help = !self.view.help,
            KeyCode::Esc => self.escape(),
            KeyCode::Tab => self.switch(self.view.tab.next()),
            KeyCode::BackTab => self.switch(self.view.tab.previous()),
            KeyCode::Char(c @ '1'..='3') => self.switch(Tab::ALL[c as usize - '1' as usize]),
            KeyCode::Char('f' | ' ') => self.toggle_freeze(),
            KeyCode::Char('/') => self.view.filter_editing = true,
            KeyCode::Char('d') | KeyCode::Right => self.cycle_device(1),
            KeyCode::Char('D') | KeyCode::Left => self.cycle_device(-1),
            KeyCode::Enter => self.open_detail(),
            code => self.scroll_key(code),
        }
        Action::Continue
    }

    /// Types into the filter; Enter keeps it, Esc drops it.
    fn edit_filter(&mut self, code: KeyCode) {
        match code {
            KeyCode::Char(c) => self.view.filter.push(c),
            KeyCode::Backspace => {
                self.view.filter.pop();
            }
            KeyCode::Enter => self.view.filter_editing = false,
            KeyCode::Esc => {
                self.view.filter.clear();
                self.view.filter_editing = false;
            }
            _ => {}
        }
        self.view.events_scroll = 0;
        self.view.types_scroll = 0;
    }

    /// Esc closes the innermost thing open: help, detail, then the filter.
    fn escape(&mut self) {
        if self.view.help {
            self.view.help = false;
        } else if self.view.detail.is_some() {
            self.view.detail = None;
        } else {
            self.view.filter.clear();
        }
    }

    /// Shows `tab`, closing an open request.
    fn switch(&mut self, tab: Tab) {
        self.view.tab = tab;
        self.view.detail = None;
    }

    /// Freezes the display on a snapshot of the state, or thaws it.
    fn toggle_freeze(&mut self) {
        self.frozen = match self.frozen {
            Some(_) => None,
            None => Some(Frozen {
                state: Box::new(self.live.clone()),
                now: self.now,
            }),
        };
    }

    /// Shows the next (`step` 1) or previous (-1) device.
    fn cycle_device(&mut self, step: isize) {
        let devices = &self.shown().devices;
        if devices.len() < 2 {
            return;
        }
        let current = self
            .device()
            .and_then(|d| devices.iter().position(|x| x.unit_id == d.unit_id))
            .unwrap_or(0);
        let next = (current as isize + step).rem_euclid(devices.len() as isize) as usize;
        self.view.device = Some(devices[next].unit_id.clone());
        self.view.events_scroll = 0;
        self.view.types_scroll = 0;
    }

    /// Opens the highlighted request on the Requests tab.
    fn open_detail(&mut self) {
        if self.view.tab == Tab::Requests && self.view.detail.is_none() {
            let chosen = self.selected_request();
            let body = chosen
                .map(crate::dashboard::ui::detail::body_lines)
                .unwrap_or_default();
            let id = chosen.map(|r| r.id);
            self.detail_body = body;
            self.view.detail = id;
            self.view.detail_scroll = 0;
        }
    }

    /// The open request's body lines, as laid out when it was opened.
    pub fn detail_body(&self) -> &[String] {
        &self.detail_body
    }

    /// Requests that pass the filter, oldest first.
    pub fn filtered_requests(&self) -> Vec<&RequestEvent> {
        let needle = self.view.filter.to_lowercase();
        self.shown()
            .requests
            .iter()
            .filter(|r| needle.is_empty() || request_text(r).to_lowercase().contains(&needle))
            .collect()
    }

    /// The highlighted request: the chosen one, else the newest.
    pub fn selected_request(&self) -> Option<&RequestEvent> {
        let list = self.filtered_requests();
        let chosen = self
            .view
            .selected
            .and_then(|id| list.iter().find(|r| r.id == id));
        chosen.or(list.last()).copied()
    }

    /// Scrolls whatever the arrows, PgUp/PgDn and g/G move on this tab.
    fn scroll_key(&mut self, code: KeyCode) {
        let footer = self
            .timeline
            .as_ref()
            .map_or(0, |_| crate::dashboard::timeline::HEIGHT);
        let pages = crate::dashboard::ui::pages_above(self.size.0, self.size.1, footer);
        let page = |rows: usize| rows.saturating_sub(1).max(1) as isize;
        let page_rows = match (self.view.detail, self.view.tab) {
            (Some(_), _) => pages.detail,
            (None, Tab::Live) => pages.events,
            (None, Tab::Requests) => PAGE,
            (None, Tab::Types) => pages.types,
        };
        let step: isize = match code {
            KeyCode::Up | KeyCode::Char('k') => -1,
            KeyCode::Down | KeyCode::Char('j') => 1,
            KeyCode::PageUp => -page(page_rows),
            KeyCode::PageDown => page(page_rows),
            KeyCode::Home | KeyCode::Char('g') => isize::MIN,
            KeyCode::End | KeyCode::Char('G') => isize::MAX,
            _ => return,
        };
        // Limits leave the last page full, so scrolling back moves at once.
        if let Some(r) = self
            .view
            .detail
            .and_then(|id| self.shown().requests.iter().find(|r| r.id == id))
        {
            let lines = crate::dashboard::ui::detail::head(self, r).len() + self.detail_body.len();
            let max = lines.saturating_sub(pages.detail);
            self.view.detail_scroll = apply_step(self.view.detail_scroll, step, max);
            return;
        }
        match self.view.tab {
            // Events count up from the newest line: "up" means older.
            Tab::Live => {
                let max = crate::dashboard::ui::events::matching(self)
                    .len()
                    .saturating_sub(pages.events);
                self.view.events_scroll =
                    apply_step(self.view.events_scroll, step.saturating_neg(), max);
            }
            Tab::Requests => self.move_selection(step),
            Tab::Types => {
                let max = self
                    .device()
                    .map_or(0, |d| d.types.len())
                    .saturating_sub(pages.types);
                self.view.types_scroll = apply_step(self.view.types_scroll, step, max);
            }
        }
    }

    /// Moves the highlighted request by `step` rows.
    fn move_selection(&mut self, step: isize) {
        let ids: Vec<u64> = self.filtered_requests().iter().map(|r| r.id).collect();
        let Some(last) = ids.len().checked_sub(1) else {
            return;
        };
        let current = self
            .view
            .selected
            .and_then(|id| ids.iter().position(|&x| x == id))
            .unwrap_or(last);
        let next = apply_step(current, step, last);
        // Back on the newest row means following new requests again.
        self.view.selected = (next != last).then(|| ids[next]);
    }
}

/// `value + step`, kept within 0..=max (saturating for Home/End).
fn apply_step(value: usize, step: isize, max: usize) -> usize {
    let moved = if step < 0 {
        value.saturating_sub(step.unsigned_abs())
    } else {
        value.saturating_add(step as usize)
    };
    moved.min(max)
}

/// What the filter matches a request against.
fn request_text(r: &RequestEvent) -> String {
    format!(
        "{} {} {} {} {} {}",
        r.peer,
        r.unit_id.as_deref().unwrap_or(""),
        r.path,
        r.status,
        r.method,
        r.error.as_deref().unwrap_or("")
    )
}

/// Everything the loop reads from outside the app.
pub struct Outside {
    pub events: Receiver<RequestEvent>,
    pub input: Receiver<Event>,
    /// SIGINT/SIGTERM.
    pub stop: Receiver<()>,
    pub clock: Box<dyn FnMut() -> Timestamp>,
    /// The capture file's size and the listener's dropped-event count.
    pub probe: Box<dyn FnMut() -> (Option<u64>, u64)>,
}

/// Runs the dashboard until q, Ctrl-C, a signal, or the input closing.
/// Every queued request event is folded before each redraw.
pub fn run<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    mut outside: Outside,
) -> Result<(), B::Error> {
    let ticker = tick(TICK);
    let mut events = outside.events.clone();
    let mut input = outside.input.clone();
    let mut dirty = true;
    let mut last_draw: Option<Instant> = None;
    refresh(app, &mut outside);
    loop {
        // While frozen the screen cannot change, so uploads cause no redraw.
        dirty |= drain(app, &events) && !app.is_frozen();
        let wait = if dirty {
            let since = last_draw.map_or(MIN_REDRAW, |t| t.elapsed());
            if since >= MIN_REDRAW {
                let size = terminal.size()?;
                app.resize(size.width, size.height);
                terminal.draw(|frame| frame.render_widget(&*app, frame.area()))?;
                last_draw = Some(Instant::now());
                dirty = false;
                never()
            } else {
                after(MIN_REDRAW - since)
            }
        } else {
            never()
        };
        select! {
            recv(events) -> e => match e {
                Ok(e) => { app.apply(&e); dirty |= !app.is_frozen(); }
                Err(_) => events = never(),
            },
            recv(input) -> i => match i {
                Ok(Event::Key(key)) => {
                    if app.handle_key(key) == Action::Quit {
                        return Ok(());
                    }
                    dirty = true;
                    last_draw = None;
                }
                Ok(_) => { dirty = true; last_draw = None; }
                Err(_) => input = never(),
            },
            recv(outside.stop) -> _ => return Ok(()),
            recv(ticker) -> _ => { refresh(app, &mut outside); dirty = true; }
            recv(wait) -> _ => {}
        }
    }
}

/// Folds the events queued when called (not those arriving meanwhile),
/// unless that takes longer than `DRAIN_BUDGET`: under a flood of large
/// batches the screen still redraws, and the rest waits for the next turn.
/// True if there was any.
fn drain(app: &mut App, events: &Receiver<RequestEvent>) -> bool {
    let started = Instant::now();
    let queued = events.len();
    let mut folded = 0;
    while folded < queued && started.elapsed() < DRAIN_BUDGET {
        let Ok(e) = events.try_recv() else {
            break;
        };
        app.apply(&e);
        folded += 1;
    }
    folded > 0
}

/// Reads the clock and the probes (never done inside render).
fn refresh(app: &mut App, outside: &mut Outside) {
    app.tick((outside.clock)());
    let (capture_bytes, dropped) = (outside.probe)();
    app.setup.capture_bytes = capture_bytes;
    app.setup.dropped_events = dropped;
}
