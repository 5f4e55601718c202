//! The dashboard's application: the state fold plus what the viewer chose
//! (tab, scroll, filter, freeze, device, open request, help), the keys that
//! change it, and the loop that feeds it. Everything outside (request
//! events, terminal input, signals, the clock, the capture size) comes in
//! through `Outside`, so tests drive the whole app on a `TestBackend`
//! without threads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, after, never, select, tick};
use jiff::Timestamp;
use ratatui::Terminal;
use ratatui::backend::Backend;
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::dashboard::app::detail::Detail;
use crate::dashboard::app::filter::Filter;
use crate::dashboard::app::layout::{header_height, pages};
use crate::dashboard::state::{Device, LogLine, State, TypeStats};
use crate::dashboard::theme::Theme;
use crate::event::RequestEvent;
use crate::receiver::respond::{self, MENU, Scope};
use crate::upstream::{ForwardBoard, ForwardStatus};

pub mod detail;
pub mod filter;
pub mod layout;

/// How often ages and the capture size are refreshed.
pub const TICK: Duration = Duration::from_secs(1);
/// Longest time spent folding queued events before a redraw is due.
pub const DRAIN_BUDGET: Duration = Duration::from_millis(40);
/// Shortest time between two redraws caused by requests: a flood of
/// uploads is shown 20 times a second, not once per request.
pub const MIN_REDRAW: Duration = Duration::from_millis(50);

/// The four tabs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tab {
    #[default]
    Live,
    Requests,
    Types,
    Uplink,
}

impl Tab {
    /// Every tab in key order (keys 1 to 4).
    pub const ALL: [Tab; 4] = [Tab::Live, Tab::Requests, Tab::Types, Tab::Uplink];

    /// The tab's name on screen.
    pub fn title(self) -> &'static str {
        match self {
            Tab::Live => "Live",
            Tab::Requests => "Requests",
            Tab::Types => "Types",
            Tab::Uplink => "Uplink",
        }
    }

    /// Where the tab is in `ALL`.
    fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }

    /// The tab Tab moves to.
    fn next(self) -> Tab {
        Tab::ALL[(self.index() + 1) % Tab::ALL.len()]
    }

    /// The tab Shift-Tab moves to.
    fn previous(self) -> Tab {
        Tab::ALL[(self.index() + Tab::ALL.len() - 1) % Tab::ALL.len()]
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
    /// Of them, those too short (warned of at start on stderr, which the
    /// dashboard hides: said in the header too, a UX review).
    pub short_tokens: usize,
    pub capture_path: String,
    /// The file `s` saves a body beside, named after it: the capture, or
    /// in `view` the first of the captures (`capture_path` is their names
    /// joined for the header, and was taken as a path: `view a b` saved
    /// to `a, b-captured-3.json`, a review).
    pub save_beside: std::path::PathBuf,
    /// Refreshed on each tick.
    pub capture_bytes: Option<u64>,
    /// Events the listener dropped because the screen was too slow.
    pub dropped_events: u64,
    /// What became of the capture file while running (deleted, replaced,
    /// cut short) and when, the latest: shown for the rest of the run.
    pub capture_taken: Option<String>,
    /// `--demo`: the uploads come from the built-in simulated device.
    pub demo: bool,
    /// This run began with a restart in place, then (`--restart-held`):
    /// what the dashboard shows was read back from the capture.
    pub restarted: Option<jiff::Timestamp>,
    /// The receiver's answer mode, which `m` changes (None: no receiver
    /// behind this screen).
    pub respond: Option<Arc<respond::Control>>,
    /// Where the forwarders post their state (read on each tick).
    pub forward_board: Option<Arc<ForwardBoard>>,
    /// Each `--forward` target's state as of the last tick.
    pub forward: Vec<ForwardStatus>,
    /// `autopi-rx view`: captures looked back at, no listener.
    pub viewing: bool,
}

/// What the viewer chose to see.
#[derive(Clone, Debug, Default)]
pub struct Viewer {
    pub tab: Tab,
    pub help: bool,
    /// The device picked with d/D; None follows the one that uploaded last.
    pub device: Option<String>,
    /// Event lines scrolled up from the newest; 0 follows new ones.
    pub events_scroll: usize,
    pub filter: Filter,
    /// Selected request id; None follows the newest.
    pub selected: Option<u64>,
    /// Request id whose detail is open.
    pub detail: Option<u64>,
    pub detail_scroll: usize,
    pub types_scroll: usize,
    /// Devices scrolled past at the top of the Uplink tab.
    pub uplink_scroll: usize,
    /// What `s` did last: the file a request's body was saved to, or why
    /// it was not.
    pub saved: Option<Result<String, String>>,
    /// `r` on the Requests tab: only refused requests are listed.
    pub refused_only: bool,
    /// `a`: the map shows every drive kept, not only the last.
    pub all_drives: bool,
    /// `m`: the answer-mode menu is open.
    pub mode_menu: Option<ModeMenu>,
    /// `v`: the Vehicle and sensors panel over the whole Live tab.
    pub vehicle_focus: bool,
    pub vehicle_scroll: usize,
}

/// The answer-mode menu: a line of `MENU` and for how long it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModeMenu {
    pub selected: usize,
    pub scope: Scope,
}

/// Every figure as shown while frozen: the state, the time, and the
/// probes' readings (capture size, dropped events) at that moment.
#[derive(Clone, Debug)]
struct Frozen {
    state: Box<State>,
    now: Timestamp,
    capture_bytes: Option<u64>,
    dropped_events: u64,
}

/// State plus view: all a frame is drawn from.
#[derive(Clone, Debug)]
pub struct App {
    live: State,
    frozen: Option<Frozen>,
    now: Timestamp,
    pub setup: Setup,
    pub theme: Theme,
    pub viewer: Viewer,
    /// Terminal size of the last frame, for page sizes and scroll limits.
    size: (u16, u16),
    /// The open request, laid out once when opened rather than in every
    /// frame (a 1000-record batch is some 12 000 lines).
    detail: Detail,
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
            viewer: Viewer::default(),
            size: (0, 0),
            detail: Detail::default(),
            timeline: None,
        }
    }

    /// Shows `state` in place of the current one (the view's timeline
    /// stepping back to a saved state).
    pub fn replace_state(&mut self, state: State) {
        self.live = state;
        self.frozen = None;
    }

    /// Tells the app the terminal size it is drawn at; an open request is
    /// laid out again for a new width.
    pub fn resize(&mut self, width: u16, height: u16) {
        self.size = (width, height);
        let new_width = self.detail_width();
        if let Some(id) = self
            .viewer
            .detail
            .filter(|_| self.detail.width != new_width)
        {
            let let_go = self.shown().body_let_go(id);
            let head = self
                .shown()
                .requests
                .iter()
                .find(|r| r.id == id)
                .map(|r| detail::head(r, let_go, new_width, self.detail.pretty));
            // The body is not wrapped: it stays as laid out.
            if let Some(head) = head {
                self.detail.head = head;
                self.detail.width = new_width;
            }
        }
    }

    /// Columns inside the detail's borders (0 before the first frame:
    /// nothing is wrapped).
    fn detail_width(&self) -> u16 {
        self.size.0.saturating_sub(2)
    }

    /// Folds one request event (also while frozen: only the display stops).
    pub fn apply(&mut self, e: &RequestEvent) {
        let anchor = (self.viewer.events_scroll > 0 && !self.is_frozen())
            .then(|| Some((self.bottom_event()?, self.device()?.unit_id.clone())))
            .flatten();
        // Whether tokens are asked is the receiver's (`setup`), not the
        // state's.
        self.live.apply_asking(e, self.setup.tokens > 0);
        if let Some((anchor, unit_id)) = anchor {
            // Following the last device to upload, and another did: the
            // anchor is a line of the one before, and the view starts at
            // the new one's newest (it jumped to its oldest: a review).
            if self.device().is_some_and(|d| d.unit_id == unit_id) {
                self.keep_events_in_place(anchor);
            } else {
                self.viewer.events_scroll = 0;
            }
        }
    }

    /// The key of the newest event line in view when scrolled back.
    fn bottom_event(&self) -> Option<(Timestamp, u64)> {
        let matching = self.matching_events();
        let page = pages(self.size.0, self.size.1, header_height(&self.setup)).events;
        let scroll = self
            .viewer
            .events_scroll
            .min(matching.len().saturating_sub(page));
        let index = matching.len().checked_sub(scroll + 1)?;
        Some(matching[index].key())
    }

    /// Scrolled back, the lines in view stay put as new events arrive
    /// (only following shows the newest): the view keeps ending at the same
    /// line, wherever in device time the new ones landed.
    fn keep_events_in_place(&mut self, anchor: (Timestamp, u64)) {
        let below = self
            .matching_events()
            .iter()
            .filter(|l| l.key() > anchor)
            .count();
        self.viewer.events_scroll = below;
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

    /// The capture file's size on screen (as read when frozen, if frozen).
    pub fn capture_bytes(&self) -> Option<u64> {
        self.frozen
            .as_ref()
            .map_or(self.setup.capture_bytes, |f| f.capture_bytes)
    }

    /// Events the screen missed, as shown (as read when frozen, if frozen).
    pub fn dropped_events(&self) -> u64 {
        self.frozen
            .as_ref()
            .map_or(self.setup.dropped_events, |f| f.dropped_events)
    }

    /// True while the display is frozen.
    pub fn is_frozen(&self) -> bool {
        self.frozen.is_some()
    }

    /// The device whose panels are shown, if any sent a batch: the one the
    /// viewer picked, else the one that uploaded last (a device coming
    /// online is shown at once, not behind one that went quiet).
    pub fn device(&self) -> Option<&Device> {
        let devices = &self.shown().devices;
        self.viewer
            .device
            .as_deref()
            .and_then(|id| devices.iter().find(|d| d.unit_id == id))
            .or_else(|| devices.iter().max_by_key(|d| d.last_upload))
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
        if self.viewer.filter.editing {
            self.edit_filter(key.code);
            return Action::Continue;
        }
        if self.viewer.mode_menu.is_some() {
            self.mode_menu_key(key.code);
            return Action::Continue;
        }
        match key.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Char('?') => self.viewer.help = !self.viewer.help,
            KeyCode::Esc => self.escape(),
            KeyCode::Tab => self.switch(self.viewer.tab.next()),
            KeyCode::BackTab => self.switch(self.viewer.tab.previous()),
            KeyCode::Char(c @ '1'..='4') => self.switch(Tab::ALL[c as usize - '1' as usize]),
            KeyCode::Char('f' | ' ') => self.toggle_freeze(),
            KeyCode::Char('/') => self.viewer.filter.editing = true,
            KeyCode::Char('d') | KeyCode::Right => self.cycle_device(1),
            KeyCode::Char('D') | KeyCode::Left => self.cycle_device(-1),
            KeyCode::Enter => self.open_detail(),
            KeyCode::Char('p') if self.viewer.detail.is_some() => self.toggle_pretty(),
            KeyCode::Char('s') if self.viewer.tab == Tab::Requests => {
                self.viewer.saved = Some(self.save_body());
            }
            KeyCode::Char('r') if self.viewer.tab == Tab::Requests => {
                self.viewer.refused_only = !self.viewer.refused_only;
                self.viewer.selected = None;
            }
            KeyCode::Char('m') if self.setup.respond.is_some() => self.open_mode_menu(),
            KeyCode::Char('a') if self.viewer.tab == Tab::Live => {
                self.viewer.all_drives = !self.viewer.all_drives;
            }
            KeyCode::Char('v') if self.viewer.tab == Tab::Live => {
                self.viewer.vehicle_focus = !self.viewer.vehicle_focus;
                self.viewer.vehicle_scroll = 0;
            }
            code => self.scroll_key(code),
        }
        Action::Continue
    }

    /// The answer mode in force and any set for the next upload only.
    pub fn mode(&self) -> Option<respond::Shown> {
        self.setup.respond.as_ref().map(|c| c.shown())
    }

    /// Opens the menu on the mode in force.
    fn open_mode_menu(&mut self) {
        let upcoming = self.mode().map(|m| m.upcoming()).unwrap_or_default();
        self.viewer.mode_menu = Some(ModeMenu {
            selected: MENU.iter().position(|m| *m == upcoming).unwrap_or(0),
            scope: Scope::UntilChanged,
        });
    }

    /// In the menu: ↑ ↓ pick a mode, Tab switches between "until changed"
    /// and "next upload only", Enter sets it, Esc or m closes.
    fn mode_menu_key(&mut self, code: KeyCode) {
        let Some(menu) = self.viewer.mode_menu.as_mut() else {
            return;
        };
        match code {
            KeyCode::Up | KeyCode::Char('k') => {
                menu.selected = menu.selected.checked_sub(1).unwrap_or(MENU.len() - 1);
            }
            KeyCode::Down | KeyCode::Char('j') => menu.selected = (menu.selected + 1) % MENU.len(),
            KeyCode::Tab | KeyCode::BackTab | KeyCode::Char('n') => {
                menu.scope = match menu.scope {
                    Scope::UntilChanged => Scope::NextUpload,
                    Scope::NextUpload => Scope::UntilChanged,
                };
            }
            KeyCode::Enter => {
                if let Some(control) = &self.setup.respond {
                    control.set(MENU[menu.selected], menu.scope);
                }
                self.viewer.mode_menu = None;
            }
            KeyCode::Esc | KeyCode::Char('m' | 'q') => self.viewer.mode_menu = None,
            _ => {}
        }
    }

    /// Types into the filter; Enter keeps it, Esc drops it.
    fn edit_filter(&mut self, code: KeyCode) {
        match code {
            KeyCode::Char(c) => self.viewer.filter.push(c),
            KeyCode::Backspace => self.viewer.filter.pop(),
            KeyCode::Enter => self.viewer.filter.editing = false,
            KeyCode::Esc => {
                self.viewer.filter.clear();
                self.viewer.filter.editing = false;
            }
            _ => {}
        }
        self.viewer.events_scroll = 0;
        self.viewer.types_scroll = 0;
    }

    /// Esc closes the innermost thing open: help, detail, then the filter.
    fn escape(&mut self) {
        if self.viewer.help {
            self.viewer.help = false;
        } else if self.viewer.vehicle_focus && self.viewer.tab == Tab::Live {
            self.viewer.vehicle_focus = false;
        } else if self.viewer.detail.is_some() {
            self.viewer.detail = None;
        } else {
            self.viewer.filter.clear();
        }
    }

    /// Shows `tab`, closing an open request.
    fn switch(&mut self, tab: Tab) {
        self.viewer.tab = tab;
        self.viewer.detail = None;
        self.viewer.saved = None;
    }

    /// Freezes the display on a snapshot of the state, or thaws it.
    fn toggle_freeze(&mut self) {
        self.frozen = match self.frozen {
            Some(_) => None,
            None => Some(Frozen {
                state: Box::new(self.live.clone()),
                now: self.now,
                capture_bytes: self.setup.capture_bytes,
                dropped_events: self.setup.dropped_events,
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
        self.viewer.device = Some(devices[next].unit_id.clone());
        self.viewer.events_scroll = 0;
        self.viewer.types_scroll = 0;
    }

    /// Opens the highlighted request on the Requests tab.
    fn open_detail(&mut self) {
        if self.viewer.tab == Tab::Requests && self.viewer.detail.is_none() {
            let chosen = self.selected_request();
            let let_go = chosen.is_some_and(|r| self.shown().body_let_go(r.id));
            let width = self.detail_width();
            let detail = chosen
                .map(|r| Detail::of(r, let_go, width, false))
                .unwrap_or_default();
            self.viewer.detail = chosen.map(|r| r.id);
            self.detail = detail;
            self.viewer.detail_scroll = 0;
        }
    }

    /// Shows the open batch pretty-printed, or one record a line again.
    fn toggle_pretty(&mut self) {
        let Some(id) = self.viewer.detail else {
            return;
        };
        let let_go = self.shown().body_let_go(id);
        let pretty = !self.detail.pretty;
        let width = self.detail_width();
        let laid_out = self
            .shown()
            .requests
            .iter()
            .find(|r| r.id == id)
            .map(|r| Detail::of(r, let_go, width, pretty));
        if let Some(d) = laid_out {
            self.detail = d;
            self.viewer.detail_scroll = 0;
        }
    }

    /// Writes the open (else the highlighted) request's body next to the
    /// capture file: `<capture name>-request-<id>.json` (`-captured-<n>`
    /// for one loaded from the capture, `load::request_names`). A batch in the
    /// capture is written as `export --format batches` writes it (one
    /// shared writer, `capture::export::write_batch`: its records array as
    /// captured, then a newline), so the file equals
    /// `export --format batches --received <its received>`. A refused body
    /// is not a batch: it is written as received (`.bin` when it is not
    /// JSON). The path written, or why nothing was.
    fn save_body(&self) -> Result<String, String> {
        let id = self
            .viewer
            .detail
            .or_else(|| self.selected_request().map(|r| r.id))
            .ok_or("no request selected")?;
        let r = self
            .shown()
            .requests
            .iter()
            .find(|r| r.id == id)
            .ok_or("this request is no longer kept")?;
        let body = r.body.as_deref().ok_or(format!(
            "request {}: no body held to save",
            crate::capture::load::request_names(id).0
        ))?;
        let capture = self.setup.save_beside.as_path();
        let stem = capture
            .file_stem()
            .map_or("autopi-rx".into(), |s| s.to_string_lossy());
        let ext = if r.captured || detail::is_json(body) {
            "json"
        } else {
            "bin"
        };
        let path = capture
            .parent()
            .unwrap_or(std::path::Path::new(""))
            .join(format!(
                "{stem}-{}.{ext}",
                crate::capture::load::request_names(id).1
            ));
        let write = |path: &std::path::Path| -> std::io::Result<()> {
            if r.captured {
                let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
                crate::capture::export::write_batch(&mut file, body)?;
                std::io::Write::flush(&mut file)
            } else {
                std::fs::write(path, body)
            }
        };
        write(&path)
            .map(|()| crate::text::path(&path).to_string())
            .map_err(|e| format!("could not save to {}: {e}", crate::text::path(&path)))
    }

    /// The open request, as laid out when it was opened.
    pub fn detail(&self) -> &Detail {
        &self.detail
    }

    /// Requests that pass the filter (and, with `r`, were refused), oldest
    /// first.
    pub fn filtered_requests(&self) -> Vec<&RequestEvent> {
        let filter = &self.viewer.filter;
        let refused_only = self.viewer.refused_only;
        self.shown()
            .requests
            .iter()
            .filter(|r| filter.request(r) && !(refused_only && r.accepted()))
            .collect()
    }

    /// The chosen device's event lines that pass the filter, oldest first.
    pub fn matching_events(&self) -> Vec<&LogLine> {
        let filter = &self.viewer.filter;
        self.device()
            .map(|d| d.events.iter().filter(|l| filter.event(l)).collect())
            .unwrap_or_default()
    }

    /// The chosen device's record types that pass the filter, by name.
    pub fn matching_types(&self) -> Vec<(&str, &TypeStats)> {
        let filter = &self.viewer.filter;
        self.device()
            .map(|d| {
                d.types
                    .iter()
                    .filter(|(name, s)| filter.record_type(name, s))
                    .map(|(name, s)| (name.as_str(), s))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The highlighted request: the chosen one, else the newest.
    pub fn selected_request(&self) -> Option<&RequestEvent> {
        let list = self.filtered_requests();
        let chosen = self
            .viewer
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
        let pages = pages(
            self.size.0,
            self.size.1,
            header_height(&self.setup) + footer,
        );
        let page = |rows: usize| rows.saturating_sub(1).max(1) as isize;
        let page_rows = match (self.viewer.detail, self.viewer.tab) {
            (Some(_), _) => pages.detail,
            (None, Tab::Live) if self.viewer.vehicle_focus => pages.detail,
            (None, Tab::Live) => pages.events,
            (None, Tab::Requests) => pages.requests,
            (None, Tab::Types) => pages.types,
            (None, Tab::Uplink) => pages.types,
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
        if self.viewer.detail.is_some() {
            let max = self.detail.len().saturating_sub(pages.detail);
            self.viewer.detail_scroll = apply_step(self.viewer.detail_scroll, step, max);
            return;
        }
        match self.viewer.tab {
            Tab::Live if self.viewer.vehicle_focus => {
                let max = self.device().map_or(0, Device::vehicle_rows);
                let max = max.saturating_sub(pages.detail);
                self.viewer.vehicle_scroll = apply_step(self.viewer.vehicle_scroll, step, max);
            }
            // Events count up from the newest line: "up" means older.
            Tab::Live => {
                let max = self.matching_events().len().saturating_sub(pages.events);
                self.viewer.events_scroll =
                    apply_step(self.viewer.events_scroll, step.saturating_neg(), max);
            }
            Tab::Requests => self.move_selection(step),
            Tab::Types => {
                let max = self.matching_types().len().saturating_sub(pages.types);
                self.viewer.types_scroll = apply_step(self.viewer.types_scroll, step, max);
            }
            // One device at a time (a device takes one line or two).
            Tab::Uplink => {
                let max = self.shown().uplinks.len().saturating_sub(1);
                let step = step.clamp(-(max as isize) - 1, max as isize + 1);
                self.viewer.uplink_scroll = apply_step(self.viewer.uplink_scroll, step, max);
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
            .viewer
            .selected
            .and_then(|id| ids.iter().position(|&x| x == id))
            .unwrap_or(last);
        let next = apply_step(current, step, last);
        // Back on the newest row means following new requests again.
        self.viewer.selected = (next != last).then(|| ids[next]);
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

/// Everything the loop reads from outside the app.
pub struct Outside {
    pub events: Receiver<RequestEvent>,
    pub input: Receiver<Event>,
    /// SIGINT/SIGTERM.
    pub stop: Receiver<()>,
    pub clock: Box<dyn FnMut() -> Timestamp>,
    /// Readings taken on each tick.
    pub probe: Box<dyn FnMut() -> Probed>,
}

/// What the loop reads on each tick besides the clock.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Probed {
    /// The capture file's size.
    pub capture_bytes: Option<u64>,
    /// Events the listener dropped because the screen was too slow.
    pub dropped_events: u64,
    /// Tokens configured now (SIGHUP reads `--token-file` again), and
    /// how many are too short; None when no receiver can say.
    pub tokens: Option<usize>,
    pub short_tokens: Option<usize>,
    /// What became of the capture file while running, if anything.
    pub capture_taken: Option<String>,
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
    let probed = (outside.probe)();
    app.setup.capture_bytes = probed.capture_bytes;
    app.setup.dropped_events = probed.dropped_events;
    if probed.capture_taken.is_some() {
        app.setup.capture_taken = probed.capture_taken;
    }
    if let Some(tokens) = probed.tokens {
        app.setup.tokens = tokens;
    }
    if let Some(short) = probed.short_tokens {
        app.setup.short_tokens = short;
    }
    if let Some(board) = &app.setup.forward_board {
        app.setup.forward = board.snapshot();
    }
}
