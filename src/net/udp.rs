//! Outgoing UDP datagrams in batches: runs of equal-size datagrams to one address go to the
//! kernel in one `sendmsg` with UDP generic segmentation offload (GSO, a `UDP_SEGMENT` control
//! message), so a burst of QUIC packets costs one system call instead of one each.
//!
//! This module owns the batch buffer and the GSO decision. It never builds a packet (quiche
//! writes straight into [`Transmit::space`]) and never reads a socket. A kernel or device that
//! refuses GSO is detected on the first refused batch, which is then sent one datagram per
//! `send_to`, as is everything after it.

use std::io;
use std::net::{SocketAddr, UdpSocket};

/// Bytes of datagrams batched at most: the largest UDP payload over IPv4 (65 535 minus the IP
/// and UDP headers), the size limit of one GSO send.
const MAX_BATCH: usize = 65_507;

/// Datagrams batched at most (the kernel's `UDP_MAX_SEGMENTS`).
const MAX_SEGMENTS: usize = 64;

/// Datagrams written back to back, waiting to be sent together: every one but the last is
/// `segment` bytes long, and all go to `to` (the rules of one GSO send).
pub(super) struct Transmit {
    buf: Vec<u8>,
    /// Bytes of complete datagrams in `buf`.
    len: usize,
    segment: usize,
    count: usize,
    to: Option<SocketAddr>,
    /// The last datagram is shorter than `segment`: nothing more can join the batch.
    closed: bool,
    /// Whether GSO is still believed to work.
    gso: bool,
}

impl Transmit {
    pub(super) fn new() -> Self {
        Transmit {
            buf: vec![0; MAX_BATCH],
            len: 0,
            segment: 0,
            count: 0,
            to: None,
            closed: false,
            gso: cfg!(target_os = "linux"),
        }
    }

    /// Room for one more datagram of up to `max` bytes; sends the batch first when that datagram
    /// could not join it, or when the batch would pass `limit` bytes (a burst bound such as
    /// quiche's send quantum; one datagram always fits).
    pub(super) fn space(
        &mut self,
        socket: &UdpSocket,
        max: usize,
        limit: usize,
    ) -> io::Result<&mut [u8]> {
        let limit = limit.min(MAX_BATCH).max(max);
        if self.count > 0
            && (self.closed
                || max > self.segment
                || self.len + max > limit
                || self.count == MAX_SEGMENTS)
        {
            self.flush(socket)?;
        }
        let end = (self.len + max).min(MAX_BATCH);
        Ok(&mut self.buf[self.len..end])
    }

    /// The datagram of `n` bytes just written into [`Transmit::space`] goes to `to`. A datagram
    /// that cannot join the batch (another address, or longer than the batch's segments) sends
    /// the batch first and starts the next one.
    pub(super) fn commit(
        &mut self,
        socket: &UdpSocket,
        n: usize,
        to: SocketAddr,
    ) -> io::Result<()> {
        let mut sent = Ok(());
        if self.count > 0 && (self.to != Some(to) || n > self.segment) {
            let start = self.len;
            sent = self.flush(socket);
            // The datagram moves to the front even when the batch failed: it is still sendable.
            self.buf.copy_within(start..start + n, 0);
        }
        if self.count == 0 {
            self.segment = n;
            self.to = Some(to);
        }
        self.closed = n < self.segment;
        self.len += n;
        self.count += 1;
        sent
    }

    /// Sends the batch (if any) and empties it, whether or not the kernel took it: QUIC loss
    /// recovery resends what a failed send lost, as for a datagram lost on the path.
    pub(super) fn flush(&mut self, socket: &UdpSocket) -> io::Result<()> {
        let (len, count, segment) = (self.len, self.count, self.segment);
        self.len = 0;
        self.count = 0;
        self.closed = false;
        let Some(to) = self.to.take() else {
            return Ok(());
        };
        let data = &self.buf[..len];
        if count == 1 || !self.gso {
            return send_each(socket, data, segment, to);
        }
        match send_segments(socket, data, segment, to) {
            Ok(()) => Ok(()),
            Err(e) if refuses_gso(&e) => {
                log::info!("UDP GSO refused ({e}); sending one datagram per system call");
                self.gso = false;
                send_each(socket, data, segment, to)
            }
            Err(e) => Err(e),
        }
    }
}

/// Errors that say the kernel or the device cannot segment, not that this send failed.
fn refuses_gso(e: &io::Error) -> bool {
    #[cfg(target_os = "linux")]
    {
        matches!(
            e.raw_os_error(),
            Some(libc::EINVAL | libc::EIO | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
        )
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = e;
        true
    }
}

fn send_each(socket: &UdpSocket, data: &[u8], segment: usize, to: SocketAddr) -> io::Result<()> {
    for d in data.chunks(segment.max(1)) {
        socket.send_to(d, to)?;
    }
    Ok(())
}

/// One `sendmsg` of `data` with a `UDP_SEGMENT` control message: the kernel cuts it into
/// datagrams of `segment` bytes (the last one may be shorter).
#[cfg(target_os = "linux")]
fn send_segments(
    socket: &UdpSocket,
    data: &[u8],
    segment: usize,
    to: SocketAddr,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let segment = u16::try_from(segment)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment above 65535 bytes"))?;
    let addr = socket2::SockAddr::from(to);
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // Room for one cmsghdr and a u16, aligned for cmsghdr (CMSG_SPACE(2) is 24 bytes on 64-bit
    // Linux, 16 on 32-bit).
    let mut control = [0u64; 4];
    // SAFETY: `msg` is zero-initialised (valid for every field, including the padding some libcs
    // add) and then points at live locals: the address, one iovec over `data` and `control`,
    // which is 8-byte aligned and at least CMSG_SPACE(2) bytes long, so CMSG_FIRSTHDR returns a
    // non-null pointer inside `control` and CMSG_DATA leaves room for the u16 (written
    // unaligned, as CMSG_DATA promises no alignment). `sendmsg` only reads from these buffers,
    // which outlive the call; its result is checked.
    #[allow(unsafe_code)]
    let sent = unsafe {
        let space = libc::CMSG_SPACE(std::mem::size_of::<u16>() as libc::c_uint) as usize;
        debug_assert!(space <= std::mem::size_of_val(&control));
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = addr.as_ptr() as *mut libc::c_void;
        msg.msg_namelen = addr.len();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as libc::c_uint) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment);
        libc::sendmsg(socket.as_raw_fd(), &msg, 0)
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until `socket` has a datagram to read or `timeout` has passed; true when readable.
///
/// `ppoll` sleeps on a high-resolution timer, so the loop wakes within tens of microseconds of
/// its deadline; a socket read timeout would be rounded up to the kernel's tick (4 ms at
/// `HZ=250`), too coarse for pacing (see `net::pacing`).
pub(super) fn wait_readable(socket: &UdpSocket, timeout: std::time::Duration) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let mut fd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    #[cfg(target_os = "linux")]
    let ready = {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as _,
        };
        // SAFETY: `fd` and `ts` are live locals for the whole call; `ppoll` reads one pollfd and
        // the timespec, writes only `fd.revents`, and takes a null signal mask as "leave it".
        #[allow(unsafe_code)]
        unsafe {
            libc::ppoll(&mut fd, 1, &ts, std::ptr::null())
        }
    };
    // Elsewhere `poll`, in whole milliseconds rounded up.
    #[cfg(not(target_os = "linux"))]
    let ready = {
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
        // SAFETY: `fd` is a live local; `poll` reads it and writes only `fd.revents`.
        #[allow(unsafe_code)]
        unsafe {
            libc::poll(&mut fd, 1, ms)
        }
    };
    match ready {
        n if n > 0 => Ok(true),
        0 => Ok(false),
        _ => {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => Ok(false),
                _ => Err(e),
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn send_segments(_: &UdpSocket, _: &[u8], _: usize, _: SocketAddr) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pair() -> (UdpSocket, UdpSocket) {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        (UdpSocket::bind("127.0.0.1:0").unwrap(), rx)
    }

    fn push(t: &mut Transmit, tx: &UdpSocket, to: SocketAddr, n: usize, fill: u8) {
        let space = t.space(tx, 1350, usize::MAX).unwrap();
        space[..n].fill(fill);
        t.commit(tx, n, to).unwrap();
    }

    fn received(rx: &UdpSocket, count: usize) -> Vec<(usize, u8)> {
        let mut buf = [0u8; 65535];
        (0..count)
            .map(|_| {
                let (n, _) = rx.recv_from(&mut buf).unwrap();
                assert!(
                    buf[..n].iter().all(|b| *b == buf[0]),
                    "a datagram mixes two packets"
                );
                (n, buf[0])
            })
            .collect()
    }

    #[test]
    fn a_batch_arrives_as_the_datagrams_it_was_given_with_or_without_gso() {
        for gso in [true, false] {
            a_batch_arrives_as_the_datagrams_it_was_given(gso);
        }
    }

    fn a_batch_arrives_as_the_datagrams_it_was_given(gso: bool) {
        let (tx, rx) = pair();
        let to = rx.local_addr().unwrap();
        let mut t = Transmit::new();
        t.gso &= gso;
        for i in 0..5 {
            push(&mut t, &tx, to, 1350, i);
        }
        push(&mut t, &tx, to, 300, 5);
        // A short datagram closes the batch: this one starts the next.
        push(&mut t, &tx, to, 1350, 6);
        t.flush(&tx).unwrap();
        let sizes = [1350, 1350, 1350, 1350, 1350, 300, 1350];
        let want: Vec<(usize, u8)> = sizes.iter().copied().zip(0..).collect();
        assert_eq!(received(&rx, 7), want);
    }

    #[test]
    fn a_longer_datagram_or_another_address_starts_a_new_batch() {
        let (tx, rx) = pair();
        let (_, rx2) = pair();
        let (to, to2) = (rx.local_addr().unwrap(), rx2.local_addr().unwrap());
        let mut t = Transmit::new();
        push(&mut t, &tx, to, 40, 1);
        push(&mut t, &tx, to, 1350, 2);
        push(&mut t, &tx, to2, 1350, 3);
        push(&mut t, &tx, to, 1350, 4);
        t.flush(&tx).unwrap();
        assert_eq!(received(&rx, 3), vec![(40, 1), (1350, 2), (1350, 4)]);
        assert_eq!(received(&rx2, 1), vec![(1350, 3)]);
    }

    #[test]
    fn a_batch_never_passes_the_limit_or_the_segment_count() {
        let (tx, rx) = pair();
        let to = rx.local_addr().unwrap();
        let mut t = Transmit::new();
        for i in 0..100u8 {
            t.space(&tx, 1000, 10_000).unwrap()[..1000].fill(i);
            t.commit(&tx, 1000, to).unwrap();
            assert!(t.len <= 10_000 && t.count <= MAX_SEGMENTS);
        }
        t.flush(&tx).unwrap();
        let want: Vec<(usize, u8)> = (0..100).map(|i| (1000, i)).collect();
        assert_eq!(received(&rx, 100), want);
    }
}
