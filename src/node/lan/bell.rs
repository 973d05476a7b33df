//! [`Bell`]: a doorbell one thread rings for another (a Linux `eventfd`), and [`wait`], which
//! sleeps until a client's socket is readable or hung up, or a bell rang, or a timeout passed.
//!
//! A viewer's thread sleeps in one `ppoll` over its client's socket, its own bell (rung when a
//! chunk is queued for it or its stream ended) and the hub's stop bell, so it wakes only when
//! there is something to do, instead of on a timer to look. This module decides nothing and
//! never reads or writes the socket; it only waits.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// An `eventfd`: readable from the first ring until cleared.
pub struct Bell(File);

impl Bell {
    /// A bell not rung.
    pub fn new() -> io::Result<Bell> {
        // SAFETY: `eventfd` takes no pointers; a negative result is checked before the
        // descriptor is used.
        #[allow(unsafe_code)]
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a descriptor just opened, owned by nothing else; the `File` becomes its
        // only owner and closes it once.
        #[allow(unsafe_code)]
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Bell(File::from(owned)))
    }

    /// Rings it; it stays rung until [`Bell::clear`].
    pub fn ring(&self) {
        // An eventfd write adds to a counter; it fails only when the counter is at its maximum,
        // and then the bell is rung already.
        let _ = (&self.0).write(&1u64.to_ne_bytes());
    }

    /// Clears a ring (nothing if it was not rung).
    pub fn clear(&self) {
        // Non-blocking: a bell not rung answers `WouldBlock`, which is the cleared state.
        let _ = (&self.0).read(&mut [0u8; 8]);
    }
}

/// Why [`wait`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Woken {
    /// The client's socket is readable: it sent something, hung up, or has an error.
    Client,
    /// A bell rang.
    Rung,
    /// The timeout passed (or a signal interrupted the wait).
    Timeout,
}

/// Sleeps until `client` is readable or hung up, or one of `bells` rang, or `timeout` passed
/// (`None`: no timeout). Nothing is read: the caller clears the bell it owns and reads the socket.
pub fn wait(client: &impl AsFd, bells: &[&Bell], timeout: Option<Duration>) -> io::Result<Woken> {
    let watch = |fd: std::os::fd::RawFd, events| libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let mut fds: Vec<libc::pollfd> = Vec::with_capacity(1 + bells.len());
    fds.push(watch(
        client.as_fd().as_raw_fd(),
        libc::POLLIN | libc::POLLRDHUP,
    ));
    fds.extend(bells.iter().map(|b| watch(b.0.as_raw_fd(), libc::POLLIN)));
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as _,
    });
    // SAFETY: `fds` is a live vector of `fds.len()` initialised pollfds whose descriptors are
    // open for the call (borrowed from `client` and `bells`); `ppoll` writes only their
    // `revents`. The timespec is a live local or null (no timeout), and a null signal mask means
    // "leave it".
    #[allow(unsafe_code)]
    let ready = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            ts.as_ref().map_or(std::ptr::null(), |t| t as *const _),
            std::ptr::null(),
        )
    };
    if ready < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::Interrupted => Ok(Woken::Timeout),
            _ => Err(e),
        };
    }
    Ok(if fds[0].revents != 0 {
        Woken::Client
    } else if fds[1..].iter().any(|f| f.revents != 0) {
        Woken::Rung
    } else {
        Woken::Timeout
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    /// A connected pair of loopback sockets: (the server's end, the client's end).
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (listener.accept().unwrap().0, client)
    }

    #[test]
    fn a_wait_ends_on_a_ring_a_client_that_writes_or_leaves_and_a_timeout() {
        let (server, mut client) = pair();
        let (bell, stop) = (Bell::new().unwrap(), Bell::new().unwrap());
        let short = Some(Duration::ZERO);
        assert_eq!(
            wait(&server, &[&bell, &stop], short).unwrap(),
            Woken::Timeout
        );
        bell.ring();
        bell.ring();
        assert_eq!(wait(&server, &[&bell, &stop], None).unwrap(), Woken::Rung);
        bell.clear();
        assert_eq!(
            wait(&server, &[&bell, &stop], short).unwrap(),
            Woken::Timeout
        );
        // A bell never cleared stays rung for every waiter.
        stop.ring();
        for _ in 0..2 {
            assert_eq!(wait(&server, &[&bell, &stop], None).unwrap(), Woken::Rung);
        }
        let quiet = Bell::new().unwrap();
        client.write_all(b"x").unwrap();
        assert_eq!(wait(&server, &[&quiet], None).unwrap(), Woken::Client);
        let (server, client) = pair();
        drop(client);
        assert_eq!(wait(&server, &[&quiet], None).unwrap(), Woken::Client);
    }

    #[test]
    fn a_ring_from_another_thread_wakes_a_waiter_with_no_timeout() {
        let (server, _client) = pair();
        let bell = std::sync::Arc::new(Bell::new().unwrap());
        let ringer = std::thread::spawn({
            let bell = bell.clone();
            move || bell.ring()
        });
        assert_eq!(wait(&server, &[&bell], None).unwrap(), Woken::Rung);
        ringer.join().unwrap();
    }
}
