//! The dashboard in the real terminal: raw mode and the alternate screen
//! (restored on exit and on panic), a thread turning terminal input into
//! channel messages, and the URLs the device can be pointed at.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};
use jiff::Timestamp;
use ratatui::crossterm::event::{self, Event};

use crate::dashboard::app::{self, App, Outside, Probed, Setup};
use crate::dashboard::state::State;
use crate::dashboard::theme::Theme;
use crate::event::RequestEvent;

/// How long the input thread waits for a key before checking it should stop.
const INPUT_POLL: Duration = Duration::from_millis(100);

/// Shows the dashboard, starting from `so_far`, until q, Ctrl-C or `stop`;
/// the terminal is given back as it was found, whatever happens.
pub fn run(
    so_far: State,
    setup: Setup,
    events: Receiver<RequestEvent>,
    stop: Receiver<()>,
    probe: Box<dyn FnMut() -> Probed + Send>,
) -> io::Result<()> {
    let mut app = App::new(setup, Theme::from_env(), Timestamp::now());
    app.replace_state(so_far);
    // crossterm opens its input reader (an epoll and a signal pipe) on the
    // first poll, once for the process: done here, before the screen is up,
    // so that a flood of connections holding every descriptor later cannot
    // leave the keys dead for good.
    event::poll(Duration::ZERO)?;
    let (input_tx, input_rx) = bounded(256);
    let quit = Arc::new(AtomicBool::new(false));
    let reader = spawn_input(input_tx, quit.clone())?;
    // From here a panic on this thread restores the terminal before its
    // message; other threads' panics are held until the terminal is back.
    let screen = crate::panic::screen_up(restore);
    let mut terminal = init_terminal()?;
    let outside = Outside {
        events,
        input: input_rx,
        stop,
        clock: Box::new(Timestamp::now),
        probe,
    };
    let result = app::run(&mut terminal, &mut app, outside);
    restore();
    for message in screen.finish() {
        crate::say!(
            "autopi-rx: a thread panicked while the dashboard was up (its request was answered 500): {message}"
        );
    }
    // Not joined: after a hang-up (SSH gone) crossterm's poll can spin
    // inside one call without returning, and the process is ending anyway.
    quit.store(true, Ordering::Relaxed);
    drop(reader);
    result
}

/// Raw mode and the alternate screen, as `ratatui::try_init` sets them up
/// but without its panic hook: the process's one hook (`crate::panic`)
/// restores the terminal.
pub(crate) fn init_terminal() -> io::Result<Screen> {
    use ratatui::crossterm::{execute, terminal};
    terminal::enable_raw_mode()?;
    execute!(io::stdout(), terminal::EnterAlternateScreen)?;
    ratatui::Terminal::new(ratatui::backend::CrosstermBackend::new(io::stdout()))
        .map(|t| Screen(Some(t)))
}

/// `ratatui::restore`, saying a failure through `say!`: ratatui says it
/// with `eprintln!`, which panics on a stderr whose reader has gone, and
/// in the panic hook (which restores too) that second panic aborted the
/// process (SIGABRT when the terminal closed under a receiver whose
/// stderr was a pipe nobody read any more).
pub(crate) fn restore() {
    if let Err(e) = ratatui::try_restore() {
        crate::say!("autopi-rx: cannot give the terminal back: {e}");
    }
}

/// The dashboard's terminal. Dropping a ratatui `Terminal` whose cursor
/// is hidden shows it again and says a failure with `eprintln!` (see
/// `restore`): here the cursor is shown first, and a terminal that cannot
/// show it any more (it is gone) is let go of without its drop.
pub(crate) struct Screen(Option<ratatui::DefaultTerminal>);

impl std::ops::Deref for Screen {
    type Target = ratatui::DefaultTerminal;
    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("a screen until dropped")
    }
}

impl std::ops::DerefMut for Screen {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.0.as_mut().expect("a screen until dropped")
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        if let Some(mut terminal) = self.0.take()
            && terminal.show_cursor().is_err()
        {
            std::mem::forget(terminal);
        }
    }
}

/// Reads terminal input on its own thread until told to stop.
pub(crate) fn spawn_input(tx: Sender<Event>, quit: Arc<AtomicBool>) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("input".into())
        .spawn(move || {
            while !quit.load(Ordering::Relaxed) {
                match event::poll(INPUT_POLL) {
                    Ok(true) => {
                        let sent = event::read().map(|e| tx.send(e).is_ok());
                        if !matches!(sent, Ok(true)) {
                            return;
                        }
                    }
                    Ok(false) => {}
                    Err(_) => return,
                }
            }
        })
}

/// The URLs to type into the device's Cloud Storage setting for a
/// listener on `addr`, given the machine's interface addresses, and a note
/// when the device could not reach any of them.
pub fn device_urls(addr: SocketAddr, interfaces: &[IpAddr]) -> (Vec<String>, Option<String>) {
    let url = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => format!("http://{v4}:{}/", addr.port()),
        IpAddr::V6(v6) => format!("http://[{v6}]:{}/", addr.port()),
    };
    let ip = addr.ip();
    if ip.is_loopback() {
        let note = format!("(loopback only: --listen 0.0.0.0:{})", addr.port());
        return (vec![url(ip)], Some(note));
    }
    if !ip.is_unspecified() {
        return (vec![url(ip)], None);
    }
    // 0.0.0.0 takes IPv4 only; [::] takes both. Link-local IPv6 needs a zone
    // the device cannot be given, so it is left out.
    let usable = |i: &&IpAddr| match i {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_unspecified(),
        IpAddr::V6(v6) => {
            ip.is_ipv6()
                && !v6.is_loopback()
                && !v6.is_unspecified()
                && (v6.segments()[0] & 0xffc0) != 0xfe80
        }
    };
    let urls: Vec<String> = interfaces.iter().filter(usable).map(|&i| url(i)).collect();
    let note = urls
        .is_empty()
        .then(|| "(no network address found: is the PC connected?)".to_string());
    (urls, note)
}

/// The machine's interface addresses (none if they cannot be listed).
pub fn interface_addresses() -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
        .map(|list| list.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default();
    ips.sort();
    ips.dedup();
    ips
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn any_ipv4_lists_every_outside_ipv4_address() {
        let found = ips(&[
            "127.0.0.1",
            "192.168.1.20",
            "10.8.0.3",
            "::1",
            "2001:db8::5",
            "fe80::1",
        ]);
        let (urls, note) = device_urls("0.0.0.0:8000".parse().unwrap(), &found);
        assert_eq!(urls, ["http://192.168.1.20:8000/", "http://10.8.0.3:8000/"]);
        assert_eq!(note, None);
    }

    #[test]
    fn any_ipv6_adds_routable_ipv6() {
        let found = ips(&["127.0.0.1", "192.168.1.20", "::1", "2001:db8::5", "fe80::1"]);
        let (urls, _) = device_urls("[::]:8123".parse().unwrap(), &found);
        assert_eq!(
            urls,
            ["http://192.168.1.20:8123/", "http://[2001:db8::5]:8123/"]
        );
    }

    #[test]
    fn a_specific_address_is_shown_alone() {
        let found = ips(&["192.168.1.20", "10.8.0.3"]);
        let (urls, note) = device_urls("10.8.0.3:9000".parse().unwrap(), &found);
        assert_eq!(
            (urls, note),
            (vec!["http://10.8.0.3:9000/".to_string()], None)
        );
    }

    #[test]
    fn loopback_and_nothing_found_say_so() {
        let (urls, note) = device_urls("127.0.0.1:8123".parse().unwrap(), &[]);
        assert_eq!(urls, ["http://127.0.0.1:8123/"]);
        assert_eq!(
            note.as_deref(),
            Some("(loopback only: --listen 0.0.0.0:8123)")
        );
        let (urls, note) = device_urls("0.0.0.0:8000".parse().unwrap(), &ips(&["127.0.0.1"]));
        assert!(urls.is_empty() && note.is_some());
    }
}
