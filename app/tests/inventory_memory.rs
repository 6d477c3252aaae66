//! What the server's in-memory device table costs per device, counted by the allocator (exact
//! and repeatable, unlike RSS), against the plain `HashMap<String, Device>` it replaced.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicIsize, Ordering};

use otaforge_server::inventory::DeviceMap;
use otaforge_store::{Device, DeviceState};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

/// What an allocation really takes from a malloc like glibc's: an 8-byte header, rounded up to
/// 16 bytes, at least 32. Counting this instead of the requested size charges many small
/// allocations what they cost.
fn chunk(layout: Layout) -> isize {
    ((layout.size() + 8).div_ceil(16) * 16).max(32) as isize
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(chunk(layout), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(chunk(layout), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A device as a real fleet reports it: unique MACs, chip ids and MD5s; shared words.
fn device(i: u32) -> Device {
    let mac = format!("18:FE:34:{:02X}:{:02X}:{:02X}", i >> 16 & 0xFF, i >> 8 & 0xFF, i & 0xFF);
    let mut d = Device::new(
        &mac,
        "ESP8266",
        "stable",
        &format!("10.0.{}.{}", i >> 8 & 0xFF, i & 0xFF),
        1_700_000_000,
    );
    d.ap_mac = Some(format!("1A:FE:34:{:02X}:{:02X}:{:02X}", i >> 16 & 0xFF, i >> 8 & 0xFF, i & 0xFF));
    d.chip_id = Some((1_000_000 + i).to_string());
    d.chip_size = Some(4 << 20);
    d.free_space = Some(2_600_000);
    d.sketch_size = Some(410_000);
    d.sketch_md5 = Some(format!("{:032x}", u128::from(i) * 0x9E37_79B9_7F4A_7C15));
    d.sdk_version = Some("2.2.2-dev(38a443e)".into());
    d.version = Some(format!("1.{}.0", i % 3));
    d.last_status = 304;
    d.last_reason = "runs the current release".into();
    d.state = DeviceState::UpToDate;
    d.state_detail = "runs the current release".into();
    d
}

/// Live bytes allocated while `build` runs and its result is alive, per device.
fn bytes_per_device<T>(n: u32, build: impl FnOnce(&[Device]) -> T) -> f64 {
    let devices: Vec<Device> = (0..n).map(device).collect();
    let before = LIVE.load(Ordering::Relaxed);
    let table = build(&devices);
    let after = LIVE.load(Ordering::Relaxed);
    drop(table);
    (after - before) as f64 / f64::from(n)
}

// One test only: a second one running on another thread would disturb the allocator's count.
#[test]
fn the_device_table_is_a_fraction_of_the_plain_map_and_loses_nothing() {
    const N: u32 = 20_000;
    let plain =
        bytes_per_device(N, |ds| ds.iter().map(|d| (d.mac.clone(), d.clone())).collect::<HashMap<_, _>>());
    let compact = bytes_per_device(N, |ds| {
        let mut map = DeviceMap::default();
        for d in ds {
            map.put(d);
        }
        // Updates (every check-in rewrites the record) must not leak.
        for d in ds {
            map.put(d);
        }
        assert_eq!(map.len(), ds.len());
        map
    });
    println!("per device: plain map {plain:.0} B, DeviceMap {compact:.0} B, ratio {:.2}", compact / plain);
    assert!(compact < 600.0, "DeviceMap uses {compact:.0} bytes per device");
    assert!(compact / plain < 0.4, "DeviceMap {compact:.0} B vs plain {plain:.0} B per device");

    let mut map = DeviceMap::default();
    let ds: Vec<Device> = (0..500).map(device).collect();
    for d in &ds {
        map.put(d);
    }
    for d in &ds {
        assert_eq!(map.get(&d.mac).as_ref(), Some(d));
    }
    let mut all = map.all();
    all.sort_by(|a, b| a.mac.cmp(&b.mac));
    assert_eq!(all, ds, "every device back, unchanged (MACs were generated in order)");
}
