//! Opening the serial port in a way that can always be stopped: Cancel, a vanished device and a
//! silent board all end in an error within moments, never a hang.
//!
//! espflash owns the port while it works and blocks in `ppoll` for up to its command timeout.
//! [`Cancel`] can cut the port from another thread at any moment: it puts a dead pipe in place of
//! the port's file descriptor (every later read or write fails at once) and interrupts the
//! blocked `ppoll` with a signal. The descriptor is only touched while the flashing thread has it
//! registered, so a closed-and-reused descriptor number is never hit.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use serialport::{SerialPort, TTYPort};

use super::diagnosis::FlashError;

/// Stops a running flash or monitor from any thread. Clones share the same switch.
#[derive(Clone, Default)]
pub struct Cancel {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    cancelled: AtomicBool,
    /// The port being used and the thread using it, while registered.
    port: Mutex<Option<(RawFd, nix::libc::pthread_t)>>,
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancel").field("cancelled", &self.is_cancelled()).finish()
    }
}

/// The signal used to wake a thread blocked on the port; its handler does nothing.
const WAKE: Signal = Signal::SIGUSR2;

extern "C" fn ignore_wake(_: nix::libc::c_int) {}

fn install_wake_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // No SA_RESTART: ppoll returns EINTR, which std's byte reader retries against the dead
        // pipe, which then reports a hang-up.
        let action = SigAction::new(SigHandler::Handler(ignore_wake), SaFlags::empty(), SigSet::empty());
        // SAFETY: the handler is async-signal-safe (it does nothing).
        if let Err(e) = unsafe { sigaction(WAKE, &action) } {
            log::warn!("cannot install the port wake-up handler: {e}");
        }
    });
}

impl Cancel {
    /// A fresh, not-cancelled switch.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks the work to stop now. Safe to call at any time, from any thread, more than once.
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        self.cut();
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// Breaks the registered port, if any: later I/O on it fails at once.
    fn cut(&self) {
        let guard = self.inner.port.lock().unwrap_or_else(|p| p.into_inner());
        let Some((fd, thread)) = *guard else { return };
        install_wake_handler();
        if let Ok((read_end, write_end)) = nix::unistd::pipe() {
            drop(write_end); // a pipe with no writer: poll says "hung up"
            // SAFETY: `fd` is open (it stays registered until the owner closes it, and closing
            // waits for this lock); dup2 atomically replaces it with the dead pipe.
            unsafe { nix::libc::dup2(read_end.as_raw_fd(), fd) };
        }
        // Wake the owner if it is blocked in ppoll on the old file.
        // SAFETY: the thread is alive: it unregisters (under this lock) before it ends.
        unsafe { nix::libc::pthread_kill(thread, WAKE as nix::libc::c_int) };
    }

    fn register(&self, fd: RawFd) {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { nix::libc::pthread_self() };
        *self.inner.port.lock().unwrap_or_else(|p| p.into_inner()) = Some((fd, me));
        if self.is_cancelled() {
            self.cut();
        }
    }

    fn unregister(&self) {
        *self.inner.port.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Something that owns the open port (the port itself, an espflash `Connection` or `Flasher`).
/// [`Link`] keeps it registered with [`Cancel`] and unregisters before closing it.
pub struct Link<T> {
    held: Option<T>,
    /// `None` once the port was handed on to another link.
    cancel: Option<Cancel>,
}

impl<T> Link<T> {
    /// The holder.
    pub fn get(&mut self) -> &mut T {
        self.held.as_mut().expect("a link holds its port until dropped")
    }

    fn hand_over(&mut self) -> (T, Cancel) {
        let held = self.held.take().expect("a link holds its port until dropped");
        let cancel = self.cancel.take().expect("a link is registered until dropped");
        (held, cancel)
    }

    /// Passes the open port on to a new holder (e.g. a Connection becomes a Flasher).
    pub fn map<U>(mut self, f: impl FnOnce(T) -> U) -> Link<U> {
        let (held, cancel) = self.hand_over();
        Link { held: Some(f(held)), cancel: Some(cancel) }
    }

    /// Like [`Link::map`] for a hand-over that can fail and give back the old holder.
    pub fn try_map<U, E>(
        mut self,
        f: impl FnOnce(T) -> Result<U, Box<(E, T)>>,
    ) -> Result<Link<U>, (E, Link<T>)> {
        let (held, cancel) = self.hand_over();
        match f(held) {
            Ok(u) => Ok(Link { held: Some(u), cancel: Some(cancel) }),
            Err(b) => {
                let (e, t) = *b;
                Err((e, Link { held: Some(t), cancel: Some(cancel) }))
            }
        }
    }
}

impl<T> Drop for Link<T> {
    fn drop(&mut self) {
        // Unregister first, so a concurrent cancel never touches a closed (and reusable) fd.
        if let Some(cancel) = self.cancel.take() {
            cancel.unregister();
        }
        drop(self.held.take());
    }
}

/// How the board can be reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetLines {
    /// DTR and RTS work (a USB bridge): the board can be put into download mode and reset.
    Available,
    /// No modem lines (a pseudo-terminal, some adapters): the board must already be waiting.
    None,
}

/// Opens a serial port at `baud` for flashing, registered with `cancel`. Errors are diagnosed:
/// missing port, permission, busy.
pub fn open(path: &str, baud: u32, cancel: &Cancel) -> Result<(Link<TTYPort>, ResetLines), FlashError> {
    let port = serialport::new(path, baud)
        .timeout(Duration::from_secs(3))
        .open_native()
        .map_err(|e| super::diagnosis::open_error(path, e))?;
    // TIOCMGET fails on a pty (ENOTTY): no DTR/RTS to reset with.
    let mut probe = port;
    let lines = if probe.read_carrier_detect().is_ok() { ResetLines::Available } else { ResetLines::None };
    cancel.register(probe.as_raw_fd());
    Ok((Link { held: Some(probe), cancel: Some(cancel.clone()) }, lines))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::Instant;

    /// A pty pair: the master stays with the test, the slave path is opened as a port.
    fn pty() -> (nix::pty::OpenptyResult, String) {
        let pair = nix::pty::openpty(None, None).expect("openpty");
        let path = nix::unistd::ttyname(&pair.slave).expect("ttyname").display().to_string();
        (pair, path)
    }

    #[test]
    fn cancel_wakes_a_blocked_read_at_once() {
        let (_pair, path) = pty();
        let cancel = Cancel::new();
        let (mut link, lines) = open(&path, 115_200, &cancel).expect("open pty");
        assert_eq!(lines, ResetLines::None, "a pty has no modem lines");
        link.get().set_timeout(Duration::from_secs(30)).unwrap();
        let c = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            c.cancel();
        });
        let started = Instant::now();
        let mut buf = [0u8; 16];
        let result = link.get().read(&mut buf);
        assert!(started.elapsed() < Duration::from_secs(5), "blocked for {:?}", started.elapsed());
        assert!(result.is_err(), "{result:?}");
        assert!(cancel.is_cancelled());
    }

    #[test]
    fn cancel_before_open_cuts_at_registration() {
        let (_pair, path) = pty();
        let cancel = Cancel::new();
        cancel.cancel();
        let (mut link, _) = open(&path, 115_200, &cancel).expect("open pty");
        let mut buf = [0u8; 4];
        assert!(link.get().read(&mut buf).is_err());
    }

    #[test]
    fn cancel_after_close_is_harmless() {
        let (_pair, path) = pty();
        let cancel = Cancel::new();
        let (link, _) = open(&path, 115_200, &cancel).expect("open pty");
        drop(link);
        // The fd number may be reused by now; cancelling must not touch it.
        let file = tempfile::tempfile().unwrap();
        cancel.cancel();
        assert!(file.metadata().is_ok());
    }
}
