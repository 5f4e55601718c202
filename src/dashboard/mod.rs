//! The dashboard wing: `state` is the pure fold of request events, `app`
//! the view state and keys (`run<B: Backend>`, so tests drive it on a
//! `TestBackend`), `tui` the real terminal, and `ui` one file per panel.

pub mod app;
pub mod state;
pub mod tui;
pub mod ui;
