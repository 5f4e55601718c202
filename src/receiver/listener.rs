//! The listening socket, built by us (socket2) so that its options are
//! ours: on Linux, accepted sockets inherit them, which is the only way to
//! set them on the connections tiny_http 0.12 accepts and keeps to itself.
//!
//! - a receive timeout: an idle or stalled connection is dropped (tiny_http
//!   answers 408 to a request that stops mid-head; a body read fails);
//! - a send timeout and `TCP_USER_TIMEOUT`: a client that never reads its
//!   answers cannot hold a worker (the kernel aborts the connection once
//!   written data has waited that long);
//! - TCP keepalive: a device that vanished mid-upload is noticed in about a
//!   minute even with no timeout running;
//! - `TCP_NODELAY`: an answer goes out when written. With Nagle's algorithm
//!   an answer written while the one before it was not yet acknowledged
//!   waited for the client's delayed acknowledgement (about 40 ms), so
//!   answers to pipelined requests came 44 ms apart (a probe).
//!
//! The receive timeout also bounds `accept`, which ends tiny_http's accept
//! thread on an idle listener: the server module supervises that.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

/// Pending connections the kernel queues while every accept thread is busy
/// (or none can accept for want of descriptors).
const BACKLOG: i32 = 1024;
/// Keepalive: first probe after this much silence, then every interval,
/// given up after this many unanswered probes (30 + 3 × 10 s).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_PROBES: u32 = 3;

/// Binds `addr` with the options every accepted connection inherits.
pub fn bind(addr: &str, read_timeout: Duration) -> io::Result<TcpListener> {
    let target = resolve(addr)?;
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    // As std's TcpListener::bind does on Unix: a restart finds the port
    // free while old connections linger in TIME_WAIT.
    socket.set_reuse_address(true)?;
    set_connection_options(&SockRef::from(&socket), read_timeout)?;
    socket.bind(&target.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// The listening socket on descriptor `fd`, which this process inherited
/// from the one it replaced (a restart in place: see `run`). It keeps
/// the connections waiting in its backlog meanwhile, and is given the
/// options `bind` sets again. What is returned is a duplicate of `fd` taken through the
/// process's own pidfd (the one way to own an inherited descriptor without
/// `unsafe`); `fd` itself stays open, for the next restart to hand on.
pub fn inherit(fd: std::os::fd::RawFd, read_timeout: Duration) -> io::Result<TcpListener> {
    use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};
    let me = pidfd_open(getpid(), PidfdFlags::empty())?;
    let socket = Socket::from(pidfd_getfd(&me, fd, PidfdGetfdFlags::empty())?);
    if !socket.is_listener().unwrap_or(false) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {fd} is not a listening socket"),
        ));
    }
    // The process before stopped its accepting with a short timeout.
    set_connection_options(&SockRef::from(&socket), read_timeout)?;
    Ok(socket.into())
}

/// The options a connection needs, set on the listener to be inherited.
fn set_connection_options(socket: &SockRef<'_>, read_timeout: Duration) -> io::Result<()> {
    socket.set_read_timeout(Some(read_timeout))?;
    socket.set_write_timeout(Some(read_timeout))?;
    socket.set_tcp_nodelay(true)?;
    socket.set_keepalive(true)?;
    socket.set_tcp_keepalive(
        &TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_INTERVAL)
            .with_retries(KEEPALIVE_PROBES),
    )?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    socket.set_tcp_user_timeout(Some(read_timeout))?;
    Ok(())
}

fn resolve(addr: &str) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr} names no address"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    #[test]
    fn accepted_connections_inherit_the_timeouts_nodelay_and_keepalive() {
        let timeout = Duration::from_secs(7);
        let listener = bind("127.0.0.1:0", timeout).unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert_eq!(accepted.read_timeout().unwrap(), Some(timeout));
        assert_eq!(accepted.write_timeout().unwrap(), Some(timeout));
        let s = SockRef::from(&accepted);
        assert!(s.tcp_nodelay().unwrap());
        assert!(s.keepalive().unwrap());
        assert_eq!(s.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
        #[cfg(target_os = "linux")]
        assert_eq!(s.tcp_user_timeout().unwrap(), Some(timeout));
    }

    #[test]
    fn accept_times_out_on_an_idle_listener() {
        let listener = bind("127.0.0.1:0", Duration::from_millis(50)).unwrap();
        let e = listener.accept().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
    }

    #[test]
    fn an_inherited_listener_is_the_same_socket_with_its_options() {
        use std::os::fd::AsRawFd;
        let timeout = Duration::from_secs(9);
        let listener = bind("127.0.0.1:0", timeout).unwrap();
        // The process before left a short timeout: set right again.
        SockRef::from(&listener)
            .set_read_timeout(Some(Duration::from_millis(1)))
            .unwrap();
        let inherited = inherit(listener.as_raw_fd(), timeout).unwrap();
        assert_eq!(
            inherited.local_addr().unwrap(),
            listener.local_addr().unwrap()
        );
        assert_ne!(inherited.as_raw_fd(), listener.as_raw_fd());
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = inherited.accept().unwrap();
        assert_eq!(accepted.read_timeout().unwrap(), Some(timeout));
        // A connection or a file is refused.
        let not = inherit(accepted.as_raw_fd(), timeout).unwrap_err();
        assert!(not.to_string().contains("not a listening socket"), "{not}");
    }

    #[test]
    fn a_name_without_address_is_an_error() {
        assert!(bind("no-such-host.invalid:80", Duration::from_secs(1)).is_err());
    }
}
