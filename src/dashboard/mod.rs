//! The dashboard wing: `state` is the pure fold of request events, `app`
//! the view state and keys (`run<B: Backend>`, so tests drive it on a
//! `TestBackend`), `tui` the real terminal, and `ui` one file per panel;
//! `timeline` steps through captures for `view`, which loads them.

pub mod app;
pub mod state;
pub mod timeline;
pub mod tui;
pub mod ui;
pub mod view;
