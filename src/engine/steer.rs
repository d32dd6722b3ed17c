//! Steering a SO_REUSEPORT group: which of the listeners sharing a port the kernel hands new
//! connections to. A server that grows past one process's descriptor limit adds a worker
//! process whose listeners join the group, then steers every new connection to them, so a full
//! process keeps what it holds and is handed nothing more. Closing its listeners instead would
//! reset the connections waiting in its accept queue (unless `net.ipv4.tcp_migrate_req` is on),
//! so nothing is closed: a classic BPF program attached to the group picks the listener.
//!
//! The kernel keeps a group's listeners in the order they began listening, and a listener that
//! closes is replaced in its slot by the last one: indices hold as long as none closes. The
//! caller keeps the order and, after a listener closed (a worker died), stops steering with
//! [`release`] until a new listener joins at the end.

use socket2::Socket;
use std::io;
use std::os::fd::AsRawFd;

/// `SO_ATTACH_REUSEPORT_CBPF` (Linux 4.5); the libc crate names it only for some targets.
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

/// An index no group has: the kernel then falls back to its own hash over every listener.
const NOWHERE: u32 = u32::MAX;

fn op(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

/// Sends every new connection of `socket`'s group to one of the `n` listeners from index
/// `first`, chosen by the packet's flow hash (so one client's connections spread over them).
pub fn steer(socket: &Socket, first: u32, n: u32) -> io::Result<()> {
    let program = if n <= 1 {
        vec![op(libc::BPF_RET | libc::BPF_K, first)]
    } else {
        let rxhash = (libc::SKF_AD_OFF + libc::SKF_AD_RXHASH) as u32;
        vec![
            op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, rxhash),
            op(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, n),
            op(libc::BPF_ALU | libc::BPF_ADD | libc::BPF_K, first),
            op(libc::BPF_RET | libc::BPF_A, 0),
        ]
    };
    attach(socket, &program)
}

/// Stops steering: the kernel spreads new connections over every listener again.
pub fn release(socket: &Socket) -> io::Result<()> {
    attach(socket, &[op(libc::BPF_RET | libc::BPF_K, NOWHERE)])
}

fn attach(socket: &Socket, program: &[libc::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // `program` outlives the call, and the kernel copies it.
    let fd = socket.as_raw_fd();
    crate::sys::setsockopt(fd, libc::SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &fprog)
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Protocol, Type};
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;

    fn listener(addr: SocketAddr) -> Socket {
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        s.set_reuse_port(true).unwrap();
        s.bind(&addr.into()).unwrap();
        s.listen(128).unwrap();
        s.set_nonblocking(true).unwrap();
        s
    }

    /// Connections each listener's queue took.
    fn taken(listeners: &[Socket]) -> Vec<usize> {
        listeners
            .iter()
            .map(|l| std::iter::from_fn(|| l.accept().ok()).count())
            .collect()
    }

    fn connect(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
        let conns: Vec<TcpStream> = (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect();
        // Established once connect returns; give the last ACKs a moment to reach the queues.
        std::thread::sleep(Duration::from_millis(50));
        conns
    }

    #[test]
    fn new_connections_go_where_they_are_steered_and_the_full_keep_theirs() {
        let first = listener("127.0.0.1:0".parse().unwrap());
        let addr = first.local_addr().unwrap().as_socket().unwrap();
        // Member 0 (one listener), then member 1 (two listeners), joining in that order.
        let group = [first, listener(addr), listener(addr)];
        steer(&group[0], 1, 2).unwrap();
        let _a = connect(addr, 40);
        let got = taken(&group);
        assert_eq!(got[0], 0, "{got:?}");
        assert_eq!(got[1] + got[2], 40, "{got:?}");
        steer(&group[0], 0, 1).unwrap();
        let _b = connect(addr, 10);
        assert_eq!(taken(&group), [10, 0, 0]);
        // Released, the kernel spreads them again.
        release(&group[0]).unwrap();
        let _c = connect(addr, 60);
        let got = taken(&group);
        assert_eq!(got.iter().sum::<usize>(), 60);
        assert!(got.iter().all(|&n| n > 0), "{got:?}");
    }
}
