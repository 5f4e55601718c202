//! A cap on request heads, from outside tiny_http.
//!
//! tiny_http 0.12 reads a request's head line by line into a growing
//! `Vec`, with no limit on a line or on the head, before the receiver sees
//! the request: a client sending header bytes without end makes it hold
//! them all. What the kernel counts per connection is the lever left: its
//! TCP information (`tcpi_bytes_received`), less what still waits unread,
//! is what tiny_http has read from the socket. Read while no request of the
//! connection is in hand and none came since, that can only be a head (a
//! body is read while its request is in hand). Past `HEAD_LIMIT`, the
//! connection is due to be shut.
//!
//! The counts come from the kernel's socket diagnostics (`sock_diag`
//! netlink, as `ss` reads them): one dump of the established TCP sockets
//! per look, filtered to our port here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::inet::nlas::Nla;
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::{AF_INET, AF_INET6, IPPROTO_TCP, SockDiagMessage};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;

use super::closer::Activity;

/// Bytes tiny_http may read for one head (request line and headers)
/// before the connection is shut. A device's head is under 1 KiB.
pub const HEAD_LIMIT: u64 = 1024 * 1024;

/// One of our connections as the kernel counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counted {
    pub peer: SocketAddr,
    pub inode: u64,
    /// Bytes the process has read from it so far.
    pub read: u64,
}

/// A socket for the kernel's socket diagnostics.
pub struct Diag {
    socket: netlink_sys::Socket,
}

impl Diag {
    pub fn open() -> std::io::Result<Diag> {
        let mut socket = netlink_sys::Socket::new(NETLINK_SOCK_DIAG)?;
        socket.bind_auto()?;
        socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
        Ok(Diag { socket })
    }

    /// Our established connections accepted on `listening` (by its port,
    /// as their local end), with what the process has read of each; None
    /// when the kernel did not answer as expected. Only the listener's
    /// family is asked: an IPv6 listener's IPv4 clients are IPv6 sockets
    /// with mapped addresses.
    pub fn counted(&self, listening: SocketAddr) -> Option<Vec<Counted>> {
        let mut found = Vec::new();
        let family = if listening.is_ipv4() {
            AF_INET
        } else {
            AF_INET6
        };
        self.dump(family, listening.port(), &mut found)?;
        Some(found)
    }

    fn dump(&self, family: u8, port: u16, found: &mut Vec<Counted>) -> Option<()> {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let socket_id = if family == AF_INET {
            SocketId::new_v4()
        } else {
            SocketId::new_v6()
        };
        let mut request = NetlinkMessage::new(
            header,
            SockDiagMessage::InetRequest(InetRequest {
                family,
                protocol: IPPROTO_TCP,
                extensions: ExtensionFlags::INFO,
                states: StateFlags::ESTABLISHED,
                socket_id,
            })
            .into(),
        );
        request.finalize();
        let mut out = vec![0; request.buffer_len()];
        request.serialize(&mut out);
        self.socket.send(&out, 0).ok()?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let size = self.socket.recv(&mut &mut buf[..], 0).ok()?;
            let mut at = 0;
            while at < size {
                let message =
                    NetlinkMessage::<SockDiagMessage>::deserialize(&buf[at..size]).ok()?;
                let length = message.header.length as usize;
                match message.payload {
                    NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                        let id = &r.header.socket_id;
                        if id.source_port != port {
                            // Not ours (a client end, another service).
                        } else if let Some(received) = r.nlas.iter().find_map(|n| match n {
                            Nla::TcpInfo(info) => Some(info.bytes_received),
                            _ => None,
                        }) {
                            found.push(Counted {
                                peer: SocketAddr::new(id.destination_address, id.destination_port),
                                inode: u64::from(r.header.inode),
                                read: received.saturating_sub(u64::from(r.header.recv_queue)),
                            });
                        }
                    }
                    NetlinkPayload::Done(_) => return Some(()),
                    NetlinkPayload::Error(_) | NetlinkPayload::Overrun(_) => return None,
                    _ => {}
                }
                if length == 0 {
                    break;
                }
                at += length;
            }
        }
    }
}

/// What the watch remembers of a connection.
#[derive(Clone, Copy, Debug)]
struct Head {
    /// Read when its current head began (as far as the watch saw).
    from: u64,
    /// When its last request came or was done, as last seen.
    last: Option<Instant>,
}

/// Follows what tiny_http reads of each connection between requests.
#[derive(Default)]
pub struct HeadWatch {
    heads: HashMap<u64, Head>,
}

impl HeadWatch {
    /// Brings the watch up to date with `counted` at `now` and returns
    /// the connections whose head passed `HEAD_LIMIT`. A connection with
    /// a request in hand, or whose last request is newer than the watch
    /// knew, starts a new head at what it has read now; one never seen
    /// before, with no request yet, started its head with its first byte.
    pub fn look(
        &mut self,
        now: Instant,
        counted: &[Counted],
        activity: &dyn Fn(SocketAddr) -> Activity,
    ) -> Vec<Counted> {
        let mut heads = HashMap::with_capacity(counted.len());
        let mut over = Vec::new();
        for c in counted {
            let seen = self.heads.get(&c.inode).copied();
            let head = match activity(c.peer) {
                Activity::Busy => Head {
                    from: c.read,
                    last: Some(now),
                },
                Activity::Quiet(ago) => {
                    let last = now.checked_sub(ago).unwrap_or(now);
                    match seen {
                        // The same last request (within the clock's
                        // rounding between looks): the head goes on.
                        Some(h) if h.last.is_some_and(|l| last <= l + Duration::from_millis(1)) => {
                            h
                        }
                        _ => Head {
                            from: c.read,
                            last: Some(last),
                        },
                    }
                }
                Activity::Unseen => seen.unwrap_or(Head {
                    from: 0,
                    last: None,
                }),
            };
            if c.read.saturating_sub(head.from) > HEAD_LIMIT {
                over.push(*c);
            }
            heads.insert(c.inode, head);
        }
        self.heads = heads;
        over
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    fn at(inode: u64, read: u64) -> Counted {
        Counted {
            peer: SocketAddr::from(([10, 0, 0, 1], 4000 + inode as u16)),
            inode,
            read,
        }
    }

    /// A head counts from the connection's first byte, or from the end of
    /// its last request; bytes read while a request is in hand never count.
    #[test]
    fn only_bytes_read_outside_a_request_count_toward_a_head() {
        let mut w = HeadWatch::default();
        let t0 = Instant::now();
        let unseen = |_: SocketAddr| Activity::Unseen;
        // Never made a request: everything read is head.
        assert!(w.look(t0, &[at(1, 1000)], &unseen).is_empty());
        assert_eq!(
            w.look(t0, &[at(1, HEAD_LIMIT + 1)], &unseen),
            vec![at(1, HEAD_LIMIT + 1)]
        );

        // A 30 MiB upload read while in hand, then a small next head.
        let mut w = HeadWatch::default();
        let busy = |_: SocketAddr| Activity::Busy;
        w.look(t0, &[at(2, 500)], &busy);
        assert!(w.look(t0, &[at(2, 30 << 20)], &busy).is_empty());
        let t1 = t0 + Duration::from_millis(100);
        let done_at_t1 = move |_: SocketAddr| Activity::Quiet(Duration::ZERO);
        assert!(
            w.look(t1, &[at(2, (30 << 20) + 2000)], &done_at_t1)
                .is_empty()
        );
        // Still the same last request later: the head grows past the cap.
        let t2 = t1 + Duration::from_millis(100);
        let same = move |_: SocketAddr| Activity::Quiet(t2 - t1);
        let over = w.look(t2, &[at(2, (30 << 20) + HEAD_LIMIT + 2001)], &same);
        assert_eq!(over.len(), 1);

        // A request that came between two looks starts a new head.
        let mut w = HeadWatch::default();
        w.look(t1, &[at(3, 0)], &done_at_t1);
        let newer = move |_: SocketAddr| Activity::Quiet(Duration::from_millis(10));
        assert!(w.look(t2, &[at(3, 2 * HEAD_LIMIT)], &newer).is_empty());
        assert_eq!(w.look(t2, &[at(3, 3 * HEAD_LIMIT + 1)], &newer).len(), 1);
    }

    /// The kernel's counts: what our side read of a connection, and only
    /// connections on our port as their local end.
    #[test]
    fn the_kernel_counts_what_we_read() {
        let Ok(diag) = Diag::open() else {
            eprintln!("no sock_diag here: skipped");
            return;
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, peer) = listener.accept().unwrap();
        client.write_all(&[b'a'; 5000]).unwrap();
        let mut buf = [0u8; 3000];
        server.read_exact(&mut buf).unwrap();
        let counted = diag
            .counted(listener.local_addr().unwrap())
            .expect("the kernel answers");
        let ours: Vec<&Counted> = counted.iter().filter(|c| c.peer == peer).collect();
        assert_eq!(ours.len(), 1, "{counted:?}");
        assert_eq!(ours[0].read, 3000);
        assert!(counted.iter().all(|c| c.peer.port() != port), "{counted:?}");
    }
}
