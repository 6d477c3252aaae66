//! The pseudo-terminal a virtual device sits on: the host opens the slave (`/dev/pts/N`) as if it
//! were a USB serial adapter; the simulator reads and writes the master.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::pty::{PtyMaster, grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::termios::{self, SetArg};

mod ioctl {
    nix::ioctl_read_bad!(tcgets2, nix::libc::TCGETS2, nix::libc::termios2);
}
use ioctl::tcgets2;

/// The master side of a pseudo-terminal, plus a slave fd the simulator keeps open.
///
/// Holding the slave open means the master never reads EIO while no host is attached (a real
/// adapter's UART does not vanish when nobody has the port open either).
#[derive(Debug)]
pub struct Pty {
    master: PtyMaster,
    _slave: File,
    path: PathBuf,
}

impl Pty {
    /// Opens a new pseudo-terminal in raw mode at 115200 baud.
    pub fn open() -> io::Result<Pty> {
        let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY)?;
        grantpt(&master)?;
        unlockpt(&master)?;
        let path = PathBuf::from(ptsname_r(&master)?);
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_NOCTTY)
            .open(&path)?;
        let mut t = termios::tcgetattr(&slave)?;
        termios::cfmakeraw(&mut t);
        termios::cfsetspeed(&mut t, termios::BaudRate::B115200)?;
        termios::tcsetattr(&slave, SetArg::TCSANOW, &t)?;
        // Non-blocking writes: a UART never blocks, and a host that stopped reading must not
        // wedge the simulator.
        let flags = OFlag::from_bits_truncate(fcntl(&master, FcntlArg::F_GETFL)?);
        fcntl(&master, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        Ok(Pty { master, _slave: slave, path })
    }

    /// The path a host opens, e.g. `/dev/pts/7`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The baud rate the host last set on its end (master and slave share one termios).
    ///
    /// Read with TCGETS2 so rates set as a number (serialport-rs, pyserial's custom rates) come
    /// out right, not only the classic `Bxxx` constants.
    pub fn host_baud(&self) -> io::Result<u32> {
        let mut t: nix::libc::termios2 = unsafe { std::mem::zeroed() };
        // SAFETY: TCGETS2 fills a termios2 struct; the fd is a valid tty master.
        unsafe { tcgets2(self.master.as_raw_fd(), &mut t) }?;
        Ok(t.c_ospeed)
    }

    /// Waits up to `timeout` for bytes from the host and reads what is there.
    /// `Ok(0)` means nothing arrived in time.
    pub fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        if !wait(self.master.as_fd(), PollFlags::POLLIN, timeout)? {
            return Ok(0);
        }
        match self.master.read(buf) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Sends bytes to the host. Gives up (the bytes are lost, as from a UART nobody listens to)
    /// when the host has not read for `give_up`.
    pub fn write_all(&mut self, mut bytes: &[u8], give_up: Duration) -> io::Result<()> {
        let deadline = Instant::now() + give_up;
        while !bytes.is_empty() {
            match self.master.write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        log::debug!("virtual device: host is not reading; {} bytes dropped", bytes.len());
                        return Ok(());
                    }
                    wait(self.master.as_fd(), PollFlags::POLLOUT, left.min(Duration::from_millis(50)))?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Throws away bytes sent to the host that it has not read yet.
    pub fn discard_output(&mut self) {
        if let Err(e) = termios::tcflush(&self._slave, termios::FlushArg::TCIFLUSH) {
            log::debug!("virtual device: could not drop the host's unread bytes: {e}");
        }
    }

    /// Throws away bytes the host sent that were not read yet.
    pub fn discard_input(&mut self) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.master.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
    }
}

fn wait(fd: BorrowedFd<'_>, events: PollFlags, timeout: Duration) -> io::Result<bool> {
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    let mut fds = [PollFd::new(fd, events)];
    match poll(&mut fds, PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)) {
        Ok(0) => Ok(false),
        Ok(_) => Ok(true),
        Err(nix::errno::Errno::EINTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_bytes_reach_the_master_and_the_host_baud_is_visible() {
        let mut pty = Pty::open().unwrap();
        let mut host = std::fs::OpenOptions::new().read(true).write(true).open(pty.path()).unwrap();
        let mut t = termios::tcgetattr(&host).unwrap();
        termios::cfmakeraw(&mut t);
        termios::cfsetspeed(&mut t, termios::BaudRate::B921600).unwrap();
        termios::tcsetattr(&host, SetArg::TCSANOW, &t).unwrap();
        assert_eq!(pty.host_baud().unwrap(), 921_600);

        host.write_all(&[0xC0, 0x00, 0xC0]).unwrap();
        let mut buf = [0u8; 16];
        let n = pty.read_timeout(&mut buf, Duration::from_secs(2)).unwrap();
        assert_eq!(&buf[..n], &[0xC0, 0x00, 0xC0]);

        pty.write_all(b"OHAI", Duration::from_secs(1)).unwrap();
        let mut got = [0u8; 4];
        host.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"OHAI");
    }

    #[test]
    fn no_host_means_timeouts_not_errors() {
        let mut pty = Pty::open().unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(pty.read_timeout(&mut buf, Duration::from_millis(20)).unwrap(), 0);
        // Nobody reads: the write is dropped after the grace period instead of blocking.
        let big = vec![0x55u8; 1 << 20];
        let t = Instant::now();
        pty.write_all(&big, Duration::from_millis(100)).unwrap();
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
