//! The inventory's writer thread: what the inventory records goes to SQLite in batched
//! transactions, and a batch the database refuses (a full disk, a write lock another process holds
//! past the busy timeout) is kept and tried again, so no check-in that was answered is lost unless
//! the process dies.
//!
//! The backlog stays in memory up to [`MEMORY_BACKLOG`] records, then moves to the spill file
//! ([`super::spill`]); a flush (the server stopping) while the database refuses moves it there
//! too, and the next start saves it. Only when neither the database nor the spill file can be
//! written, and memory holds [`MEMORY_BACKLOG_MAX`] records, does the oldest request history go
//! — history the database would have pruned first, then the oldest beyond that — and the event
//! says how much; device records are never dropped (there is one per device).

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, oneshot};

use super::flashed::Flashed;
use super::spill::{Line, Spill};
use crate::events::ServerEvent;
use otaforge_store::{Device, RequestRecord, Store, StoreError};

/// What the inventory hands the writer.
pub(super) enum Persist {
    Device(Box<Device>),
    Request(Box<RequestRecord>),
    Flush(oneshot::Sender<()>),
    /// A flash over USB was confirmed by the device's check-in (MAC, when).
    FlashConfirmed(String, i64),
}

/// Records kept in memory while the database refuses them, before they go to the spill file.
pub const MEMORY_BACKLOG: usize = 10_000;
/// Records kept in memory when the spill file cannot be written either (a full disk).
pub const MEMORY_BACKLOG_MAX: usize = 100_000;
/// The first retry after a failure; each further one waits twice as long, up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How long what arrives after a first record is gathered into the same transaction.
const GATHER_WINDOW: Duration = Duration::from_millis(50);
/// How often the channel is looked at within that window (the longest a flush waits extra).
const GATHER_POLL: Duration = Duration::from_millis(5);
/// How often a backlog that has not changed kind is reported again.
const REPORT_EVERY: Duration = Duration::from_secs(5);
/// After the spill file could not be written, how long until it is tried again.
const SPILL_RETRY: Duration = Duration::from_secs(30);

/// Records not in the database yet, in memory.
#[derive(Default)]
struct Backlog {
    /// The latest record of each device.
    devices: HashMap<String, Device>,
    /// Requests in the order they were answered.
    requests: VecDeque<RequestRecord>,
    confirmed: Vec<(String, i64)>,
}

impl Backlog {
    fn len(&self) -> usize {
        self.devices.len() + self.requests.len() + self.confirmed.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lines(&self) -> Vec<Line<'_>> {
        let devices = self.devices.values().map(Line::Device);
        let requests = self.requests.iter().map(Line::Request);
        let confirmed = self.confirmed.iter().map(|(mac, at)| Line::FlashConfirmed { mac, at: *at });
        devices.chain(requests).chain(confirmed).collect()
    }

    fn clear(&mut self) {
        self.devices.clear();
        self.requests.clear();
        self.confirmed.clear();
    }

    /// Drops request history the database would prune anyway (beyond its per-device and
    /// unattributed limits, oldest first); then, if still above `max`, the oldest requests.
    /// Returns how many of the latter went (the only ones truly lost).
    fn shed(&mut self, max: usize) -> usize {
        let mut seen: HashMap<Option<&str>, usize> = HashMap::new();
        let keep: Vec<bool> = self
            .requests
            .iter()
            .rev()
            .map(|r| {
                let n = seen.entry(r.mac.as_deref()).or_default();
                *n += 1;
                *n <= r.history_limit()
            })
            .collect();
        let mut keep = keep.into_iter().rev();
        self.requests.retain(|_| keep.next().unwrap_or(true));
        let over = self.len().saturating_sub(max).min(self.requests.len());
        self.requests.drain(..over);
        over
    }
}

/// While the database refuses writes.
struct Failing {
    retry_at: Instant,
    backoff: Duration,
    why: String,
    reported: Option<(Instant, usize)>,
}

pub(super) struct Writer {
    pub(super) store: Store,
    pub(super) spill: Spill,
    pub(super) events: broadcast::Sender<ServerEvent>,
    backlog: Backlog,
    failing: Option<Failing>,
    /// The spill file could not be written either (last error, and when to try it again), so
    /// memory holds more.
    spill_failed: Option<(String, Instant)>,
    /// Request records given up since the backlog began (memory and disk both full).
    dropped: u64,
    /// [`MEMORY_BACKLOG`] and [`MEMORY_BACKLOG_MAX`] (smaller in tests).
    memory: (usize, usize),
}

impl Writer {
    pub(super) fn new(store: Store, spill: Spill, events: broadcast::Sender<ServerEvent>) -> Writer {
        Writer {
            store,
            spill,
            events,
            backlog: Backlog::default(),
            failing: None,
            spill_failed: None,
            dropped: 0,
            memory: (MEMORY_BACKLOG, MEMORY_BACKLOG_MAX),
        }
    }

    fn has_work(&self) -> bool {
        !self.backlog.is_empty() || !self.spill.is_empty()
    }

    pub(super) fn run(mut self, rx: std_mpsc::Receiver<Persist>, flashed: &Flashed) {
        loop {
            // Between batches, and at least every second, pick up flashes recorded elsewhere.
            flashed.refresh(&self.store);
            let now = Instant::now();
            let wait = match &self.failing {
                Some(f) => f.retry_at.saturating_duration_since(now).min(Duration::from_secs(1)),
                // A backlog an earlier run left: save it at once.
                None if self.has_work() => Duration::ZERO,
                None => Duration::from_secs(1),
            };
            let mut waiting = Vec::new();
            match rx.recv_timeout(wait) {
                Ok(first) => self.gather(first, &rx, &mut waiting),
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                    self.finish();
                    return;
                }
            }
            // While the database refuses, a flush (someone waiting: the server stopping) does not
            // wait out another busy timeout: the backlog goes to the spill file below instead.
            let due = match &self.failing {
                None => true,
                Some(f) => waiting.is_empty() && Instant::now() >= f.retry_at,
            };
            let attempted = self.has_work() && due;
            if attempted {
                self.attempt();
            }
            if self.failing.is_some() {
                // A flush is someone waiting for the disk (the server stopping): the backlog goes
                // where the next start finds it. Otherwise memory holds MEMORY_BACKLOG records
                // (give or take what arrives between two attempts).
                let (soft, hard) = self.memory;
                let may_spill = self.spill_failed.as_ref().is_none_or(|(_, at)| Instant::now() >= *at);
                if !waiting.is_empty() || (attempted && may_spill && self.backlog.len() > soft) {
                    self.spill_backlog();
                }
                if self.backlog.len() > hard {
                    self.dropped += self.backlog.shed(hard * 9 / 10) as u64;
                    self.report(true);
                }
            }
            for ack in waiting {
                let _ = ack.send(());
            }
        }
    }

    /// Takes what arrives within a short window into the backlog (one transaction). Within the
    /// window the writer looks at the channel every few milliseconds instead of waiting on it,
    /// so the connections that send don't each have to wake this thread.
    fn gather(
        &mut self,
        first: Persist,
        rx: &std_mpsc::Receiver<Persist>,
        waiting: &mut Vec<oneshot::Sender<()>>,
    ) {
        let deadline = Instant::now() + GATHER_WINDOW;
        let mut taken = 0;
        let mut next = Some(first);
        loop {
            match next.take() {
                Some(msg) => {
                    match msg {
                        Persist::Device(d) => {
                            self.backlog.devices.insert(d.mac.clone(), *d);
                        }
                        Persist::Request(r) => self.backlog.requests.push_back(*r),
                        Persist::FlashConfirmed(mac, at) => self.backlog.confirmed.push((mac, at)),
                        Persist::Flush(ack) => {
                            waiting.push(ack);
                            return;
                        }
                    }
                    taken += 1;
                    if taken >= 2000 {
                        return;
                    }
                }
                None => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return;
                    }
                    std::thread::sleep(left.min(GATHER_POLL));
                }
            }
            next = match rx.try_recv() {
                Ok(msg) => Some(msg),
                Err(std_mpsc::TryRecvError::Empty) => None,
                // Nothing more will come (the server is gone): save now, not at the window's end.
                Err(std_mpsc::TryRecvError::Disconnected) => return,
            };
        }
    }

    /// Everything not in the database yet goes there: the spill file first (it is older), then
    /// memory. Stops at the first failure, keeping what it did not save.
    fn save(&mut self) -> Result<(), StoreError> {
        if !self.spill.is_empty() {
            let confirmed = self.spill.replay(&mut self.store)?;
            self.backlog.confirmed.extend(confirmed);
        }
        if !self.backlog.devices.is_empty() || !self.backlog.requests.is_empty() {
            let devices: Vec<Device> = self.backlog.devices.drain().map(|(_, d)| d).collect();
            match self.store.save_devices(&devices, self.backlog.requests.make_contiguous()) {
                Ok(()) => self.backlog.requests.clear(),
                Err(e) => {
                    self.backlog.devices.extend(devices.into_iter().map(|d| (d.mac.clone(), d)));
                    return Err(e);
                }
            }
        }
        let mut failed = None;
        let store = &mut self.store;
        self.backlog.confirmed.retain(|(mac, at)| match store.confirm_flashed(mac, *at) {
            Ok(_) => false,
            Err(e) => {
                log::error!("could not record that {mac} confirmed its flash: {e}");
                failed = Some(e);
                true
            }
        });
        failed.map_or(Ok(()), Err)
    }

    fn attempt(&mut self) {
        let pending = self.backlog.len() + self.spill.len();
        let from_disk = !self.spill.is_empty();
        match self.save() {
            Ok(()) => {
                let recovered = self.failing.take().is_some();
                if recovered || from_disk {
                    log::warn!(
                        "the device inventory is saved again: {pending} waiting record(s) are in the database"
                    );
                    let _ = self.events.send(ServerEvent::InventoryCaughtUp { saved: pending as u64 });
                }
                if self.dropped > 0 {
                    log::error!(
                        "{} request-history record(s) were given up while neither the database nor {} could be written",
                        self.dropped,
                        self.spill.path().display()
                    );
                }
                self.spill_failed = None;
                self.dropped = 0;
            }
            Err(e) => {
                let why = e.to_string();
                let now = Instant::now();
                let f = self.failing.get_or_insert_with(|| {
                    log::warn!("could not save the device inventory ({why}): keeping it and trying again");
                    Failing { retry_at: now, backoff: RETRY_FIRST / 2, why: why.clone(), reported: None }
                });
                f.backoff = (f.backoff * 2).min(RETRY_MAX);
                f.retry_at = now + f.backoff;
                f.why = why;
                self.report(false);
            }
        }
    }

    /// Reports the backlog: when it starts, when the spill file grows, and every few seconds.
    fn report(&mut self, force: bool) {
        let Some(f) = &mut self.failing else { return };
        let now = Instant::now();
        let spilled = self.spill.len();
        let due = match f.reported {
            None => true,
            Some((at, was_spilled)) => force || was_spilled != spilled || now - at >= REPORT_EVERY,
        };
        if !due {
            return;
        }
        f.reported = Some((now, spilled));
        let why = match &self.spill_failed {
            Some((spill, _)) => format!("{}; the spill file cannot be written either: {spill}", f.why),
            None => f.why.clone(),
        };
        let _ = self.events.send(ServerEvent::InventoryBacklog {
            held: self.backlog.len() as u64,
            spilled: spilled as u64,
            dropped: self.dropped,
            why,
        });
    }

    /// Moves the backlog in memory to the spill file (it stays in memory if that fails).
    fn spill_backlog(&mut self) {
        if self.backlog.is_empty() {
            return;
        }
        let lines = self.backlog.lines();
        let n = lines.len();
        let result = self.spill.append(&lines);
        drop(lines);
        match result {
            Ok(()) => {
                self.backlog.clear();
                self.spill_failed = None;
                log::warn!(
                    "{n} inventory record(s) moved to {} until the database takes them",
                    self.spill.path().display()
                );
            }
            Err(e) => {
                if self.spill_failed.is_none() {
                    log::error!(
                        "cannot write {}: {e}; keeping the inventory backlog in memory",
                        self.spill.path().display()
                    );
                }
                self.spill_failed = Some((e.to_string(), Instant::now() + SPILL_RETRY));
            }
        }
        self.report(true);
    }

    /// The inventory is gone (the server stopped): one last attempt, then the spill file.
    fn finish(&mut self) {
        if !self.has_work() {
            return;
        }
        self.attempt();
        if !self.backlog.is_empty() {
            self.spill_backlog();
        }
        if !self.backlog.is_empty() {
            log::error!(
                "{} inventory record(s) could not be saved: neither the database nor {} can be written",
                self.backlog.len(),
                self.spill.path().display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls (bounded) for the first event `pick` takes.
    fn wait_for<T>(
        rx: &mut broadcast::Receiver<ServerEvent>,
        what: &str,
        mut pick: impl FnMut(&ServerEvent) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match rx.try_recv() {
                Ok(ev) => {
                    if let Some(t) = pick(&ev) {
                        return t;
                    }
                }
                Err(broadcast::error::TryRecvError::Empty) => {
                    assert!(Instant::now() < deadline, "no event: {what}");
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("{what}: {e}"),
            }
        }
    }

    #[test]
    fn past_its_memory_bound_the_backlog_goes_to_disk_and_all_of_it_is_saved_once_the_lock_goes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.set_busy_timeout(Duration::from_millis(20)).unwrap();
        let holder = rusqlite::Connection::open(dir.path().join(otaforge_store::DB_FILE)).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let (events, mut rx) = broadcast::channel(256);
        let mut writer = Writer::new(store, Spill::open(dir.path()), events);
        writer.memory = (10, 1000);
        let (tx, persist) = std_mpsc::channel();
        let thread = std::thread::spawn(move || writer.run(persist, &Flashed::default()));
        let macs: Vec<String> = (0..25).map(|i| format!("AA:BB:CC:00:00:{i:02X}")).collect();
        for (i, mac) in macs.iter().enumerate() {
            let d = Device::new(mac, "ESP8266", "stable", "10.0.0.2", i as i64);
            tx.send(Persist::Device(Box::new(d))).unwrap();
            tx.send(Persist::Request(Box::new(request(Some(mac), i as i64)))).unwrap();
        }
        let spilled = wait_for(&mut rx, "the backlog on disk", |ev| match ev {
            ServerEvent::InventoryBacklog { spilled, .. } if *spilled > 0 => Some(*spilled),
            _ => None,
        });
        assert_eq!(spilled, 50, "all of it past the bound of 10");
        assert!(dir.path().join(super::super::spill::FILE).exists());

        holder.execute_batch("COMMIT").unwrap();
        drop(holder);
        let saved = wait_for(&mut rx, "the backlog saved", |ev| match ev {
            ServerEvent::InventoryCaughtUp { saved } => Some(*saved),
            _ => None,
        });
        assert_eq!(saved, 50);
        let check = Store::open(dir.path()).unwrap();
        assert_eq!(check.devices().unwrap().len(), 25);
        assert!(macs.iter().all(|m| check.requests(m, 10).unwrap().len() == 1));
        assert!(!dir.path().join(super::super::spill::FILE).exists());
        drop(tx);
        thread.join().unwrap();
    }

    fn request(mac: Option<&str>, at: i64) -> RequestRecord {
        RequestRecord {
            at,
            mac: mac.map(String::from),
            remote: "10.0.0.2".into(),
            method: "GET".into(),
            path: "/update".into(),
            status: 304,
            reason: String::new(),
            headers: String::new(),
        }
    }

    #[test]
    fn shedding_drops_what_the_history_would_prune_first_and_never_a_device() {
        let mut b = Backlog::default();
        let busy = "AA:BB:CC:00:00:01";
        for at in 0..250 {
            b.requests.push_back(request(Some(busy), at));
        }
        b.requests.push_back(request(Some("AA:BB:CC:00:00:02"), 300));
        b.devices.insert(busy.into(), Device::new(busy, "ESP8266", "stable", "10.0.0.2", 0));
        assert_eq!(b.shed(1000), 0, "nothing the database would keep is lost");
        assert_eq!(b.requests.len(), 101);
        assert_eq!(b.requests.front().unwrap().at, 150, "the newest 100 of the busy device");
        assert_eq!(b.shed(51), 51, "then the oldest go, to 51 records with the device");
        assert_eq!((b.devices.len(), b.requests.len()), (1, 50));
        assert_eq!(b.requests.back().unwrap().at, 300);
    }
}
