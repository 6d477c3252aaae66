//! The list's order: sorted when the user picks a column or changes the filter, and otherwise
//! kept as it was while polls bring new data, so a row does not jump away from under the pointer.
//! Devices new to the list go after the rows already shown; "Sort again" re-sorts everything.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use otaforge_protocol::version::Version;
use otaforge_store::{Device, now_unix};

use super::{Column, DeviceTable, Shown};

/// A device's value in the sorted column.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Value {
    Num(i64),
    Text(String),
    Ip(Option<IpAddr>),
}

/// What one device sorts by; devices missing the value go last in either direction.
pub(super) struct Key {
    missing: bool,
    value: Value,
}

/// The keys of `rows` (indices into `devices`) for `column`. Columns with few distinct values
/// (versions, chips, states) order each distinct value once and give devices its rank, so
/// 10,000 devices sort in a few milliseconds.
fn keys(devices: &[Device], rows: &[usize], column: Column, now: i64) -> Vec<Key> {
    let each = |f: &dyn Fn(&Device) -> Key| rows.iter().map(|&i| f(&devices[i])).collect();
    match column {
        Column::Device => each(&|d| Key { missing: false, value: Value::Num(mac_number(&d.mac)) }),
        Column::Name => each(&|d| {
            let name = d.shown_name();
            Key { missing: name.is_empty(), value: Value::Text(name.to_lowercase()) }
        }),
        Column::LastSeen => each(&|d| Key { missing: false, value: Value::Num(d.last_seen) }),
        Column::NextCheck => each(&|d| {
            let at = d.next_check_at();
            Key { missing: at.is_none(), value: Value::Num(at.unwrap_or(0)) }
        }),
        Column::Ip => each(&|d| {
            // Addresses in numeric order; anything else after them, as text.
            let ip = d.remote_ip.parse().ok();
            Key {
                missing: false,
                value: if ip.is_some() { Value::Ip(ip) } else { Value::Text(d.remote_ip.clone()) },
            }
        }),
        Column::Version => ranked(rows.iter().map(|&i| devices[i].version.as_deref()), |a, b| {
            (Version::parse(a).ok(), a).cmp(&(Version::parse(b).ok(), b))
        }),
        Column::Chip => ranked(rows.iter().map(|&i| Some(devices[i].family.as_str())), |a, b| a.cmp(b)),
        Column::State => {
            ranked(rows.iter().map(|&i| Some(Shown::of(&devices[i], now).label())), |a, b| a.cmp(b))
        }
    }
}

/// Keys by the rank of each value among the distinct ones, ordered by `order`.
fn ranked<'a>(
    values: impl Iterator<Item = Option<&'a str>>,
    order: impl Fn(&str, &str) -> Ordering,
) -> Vec<Key> {
    let values: Vec<Option<&str>> = values.collect();
    let mut distinct: Vec<&str> =
        values.iter().flatten().copied().collect::<HashSet<_>>().into_iter().collect();
    distinct.sort_by(|a, b| order(a, b));
    let rank: HashMap<&str, i64> = distinct.into_iter().enumerate().map(|(i, v)| (v, i as i64)).collect();
    values
        .into_iter()
        .map(|v| Key { missing: v.is_none(), value: Value::Num(v.map_or(0, |v| rank[v])) })
        .collect()
}

/// A canonical MAC (six pairs of upper-case hex digits) as a number, whose order is the text's;
/// anything else as 0. No allocation: it runs for every device of a re-sort.
fn mac_number(mac: &str) -> i64 {
    let mut n: i64 = 0;
    let mut digits = 0;
    for c in mac.bytes().filter(|&c| c != b':') {
        let Some(d) = (c as char).to_digit(16).filter(|_| !c.is_ascii_lowercase()) else { return 0 };
        n = n << 4 | i64::from(d);
        digits += 1;
    }
    if digits == 12 { n } else { 0 }
}

/// The order of two devices: by the column's value in the chosen direction, then by MAC (its
/// number first: a string compare per tie made half the cost of a 10,000-row re-sort), so equal
/// values always come out the same way.
fn compare(a: (&Key, &Device, i64), b: (&Key, &Device, i64), ascending: bool) -> Ordering {
    let by_value = a.0.value.cmp(&b.0.value);
    a.0.missing
        .cmp(&b.0.missing)
        .then(if ascending { by_value } else { by_value.reverse() })
        .then(a.2.cmp(&b.2))
        .then_with(|| a.1.mac.cmp(&b.1.mac))
}

impl DeviceTable {
    /// Whether device `d` passes the filter field and the state filter.
    fn matches(&self, d: &Device, needle: &str, now: i64) -> bool {
        self.form.only.is_none_or(|s| Shown::of(d, now) == s)
            && (needle.is_empty()
                || [
                    &d.mac,
                    &d.name,
                    &d.user_name,
                    &d.remote_ip,
                    &d.family,
                    d.version.as_deref().unwrap_or(""),
                ]
                .iter()
                .any(|f| f.to_lowercase().contains(needle)))
    }

    /// Sorts `rows` (indices into the devices) by the chosen column.
    fn sort(&self, rows: &mut Vec<usize>, now: i64) {
        let keys = keys(&self.devices, rows, self.form.sort, now);
        let (devices, ascending) = (&self.devices, self.form.ascending);
        let mut at: Vec<(usize, i64)> =
            rows.iter().enumerate().map(|(k, &i)| (k, mac_number(&devices[i].mac))).collect();
        // Unstable is fine: no two devices compare equal (the MAC decides last).
        at.sort_unstable_by(|&(a, ma), &(b, mb)| {
            compare((&keys[a], &devices[rows[a]], ma), (&keys[b], &devices[rows[b]], mb), ascending)
        });
        *rows = at.into_iter().map(|(k, _)| rows[k]).collect();
    }

    /// Filters and sorts every device afresh (the sort column, direction or filter changed).
    pub(super) fn rebuild(&mut self) {
        let now = now_unix();
        let needle = self.form.filter.trim().to_lowercase();
        let mut view: Vec<usize> =
            (0..self.devices.len()).filter(|&i| self.matches(&self.devices[i], &needle, now)).collect();
        self.sort(&mut view, now);
        self.view = view;
        self.stale = false;
        self.dirty = false;
        self.fresh = false;
    }

    /// New data, same order: rows already shown keep their places (those that left the
    /// inventory or no longer pass the filter go), new ones follow, sorted among themselves.
    pub(super) fn merge(&mut self) {
        let now = now_unix();
        let needle = self.form.filter.trim().to_lowercase();
        let index: HashMap<&str, usize> =
            self.devices.iter().enumerate().map(|(i, d)| (d.mac.as_str(), i)).collect();
        let mut placed = vec![false; self.devices.len()];
        let mut view = Vec::with_capacity(self.devices.len());
        for mac in &self.order {
            if let Some(&i) = index.get(mac.as_str())
                && !placed[i]
                && self.matches(&self.devices[i], &needle, now)
            {
                placed[i] = true;
                view.push(i);
            }
        }
        let mut new: Vec<usize> = (0..self.devices.len())
            .filter(|&i| !placed[i] && self.matches(&self.devices[i], &needle, now))
            .collect();
        self.sort(&mut new, now);
        view.extend(new);
        self.stale = !self.is_sorted(&view, now);
        self.view = view;
        self.order.clear();
        self.fresh = false;
    }

    fn is_sorted(&self, view: &[usize], now: i64) -> bool {
        let keys = keys(&self.devices, view, self.form.sort, now);
        let ascending = self.form.ascending;
        let entry = |k: usize| {
            let d = &self.devices[view[k]];
            (&keys[k], d, mac_number(&d.mac))
        };
        (1..view.len()).all(|k| compare(entry(k - 1), entry(k), ascending) != Ordering::Greater)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Remembered;
    use super::*;
    use otaforge_store::DeviceState;

    fn fleet(now: i64) -> Vec<Device> {
        (0..5)
            .map(|i| {
                let mut d =
                    Device::new(&format!("18:FE:34:00:00:0{i}"), "ESP8266", "stable", "10.0.0.1", now - i);
                d.version = Some(format!("1.{}.0", [9, 10, 2, 3, 4][i as usize]));
                d
            })
            .collect()
    }

    fn macs(table: &DeviceTable) -> Vec<String> {
        table.view.iter().map(|&i| table.devices[i].mac[15..].to_string()).collect()
    }

    #[test]
    fn mac_numbers_order_as_the_text_does() {
        assert_eq!(mac_number("18:FE:34:00:00:0A"), 0x18FE3400000A);
        assert!(mac_number("00:00:00:00:00:01") < mac_number("00:00:00:00:01:00"));
        for odd in ["18:fe:34:00:00:0a", "18:FE:34", "not a mac", "18:FE:34:00:00:0G", ""] {
            assert_eq!(mac_number(odd), 0, "{odd}: left to the text compare");
        }
    }

    #[test]
    fn filter_and_sort() {
        let now = now_unix();
        let mut table = DeviceTable::new(Remembered::default());
        let mut devices = fleet(now);
        devices[3].state = DeviceState::Failed;
        table.set_devices(devices);
        table.rebuild();
        assert_eq!(macs(&table), ["00", "01", "02", "03", "04"], "most recently seen first");
        table.form.sort = Column::Version;
        table.form.ascending = false;
        table.rebuild();
        assert_eq!(macs(&table), ["01", "00", "04", "03", "02"], "1.10 is newer than 1.9");
        table.form.filter = "1.2".into();
        table.rebuild();
        assert_eq!(macs(&table), ["02"]);
        table.form.filter.clear();
        table.form.only = Some(Shown::State(DeviceState::Failed));
        table.rebuild();
        assert_eq!(macs(&table), ["03"]);
        assert_eq!(table.count_in(&[DeviceState::Failed]), 1);
    }

    #[test]
    fn polls_keep_the_order_and_new_devices_go_last() {
        let now = now_unix();
        let mut table = DeviceTable::new(Remembered::default());
        table.set_devices(fleet(now));
        table.rebuild();
        assert_eq!(macs(&table), ["00", "01", "02", "03", "04"]);
        assert!(!table.stale);
        // The last device checks in (it would sort first) and a new one appears.
        let mut next = fleet(now);
        next[4].last_seen = now + 10;
        next.push(Device::new("18:FE:34:00:00:09", "ESP8266", "stable", "10.0.0.1", now + 5));
        next.remove(1);
        table.set_devices(next);
        table.merge();
        assert_eq!(macs(&table), ["00", "02", "03", "04", "09"], "kept, the gone one dropped");
        assert!(table.stale, "the list says it can be sorted again");
        table.rebuild();
        assert_eq!(macs(&table), ["04", "09", "00", "02", "03"]);
        assert!(!table.stale);
    }

    #[test]
    fn equal_values_are_ordered_by_mac_and_missing_ones_go_last() {
        let now = now_unix();
        let mut devices: Vec<Device> = ["0C", "0A", "0B"]
            .iter()
            .map(|m| Device::new(&format!("18:FE:34:00:00:{m}"), "ESP8266", "stable", "10.0.0.1", now))
            .collect();
        devices[0].name = "zeta".into();
        devices[1].user_name = "Alpha".into();
        for ascending in [true, false] {
            let mut table = DeviceTable::new(Remembered::default());
            table.form.sort = Column::Chip;
            table.form.ascending = ascending;
            table.set_devices(devices.clone());
            table.rebuild();
            assert_eq!(macs(&table), ["0A", "0B", "0C"], "ties by MAC, ascending {ascending}");
            table.form.sort = Column::Name;
            table.rebuild();
            let named = if ascending { ["0A", "0C", "0B"] } else { ["0C", "0A", "0B"] };
            assert_eq!(macs(&table), named, "unnamed last, ascending {ascending}");
        }
    }
}
