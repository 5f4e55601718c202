//! The dashboard wing: `state` is the pure fold of request events, `app`
//! the view state and keys (`run<B: Backend>`, so tests drive it on a
//! `TestBackend`), `tui` the real terminal, and `ui` one file per panel.
//! `format` (how numbers and ages are written) and `theme` (every style)
//! are shared by the app and the drawing code. Arrows run ui → app →
//! state, never back.
//! `timeline` steps through captures for `view`, which loads them.

pub mod app;
pub mod format;
pub mod ring;
pub mod state;
pub mod theme;
pub mod timeline;
pub mod tui;
pub mod ui;
pub mod uplink;
pub mod view;
