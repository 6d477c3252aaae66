use super::*;

fn erased() -> (Flash, PartitionMap) {
    let flash = Flash::erased(4 << 20).unwrap();
    let map = PartitionMap::read(&flash).unwrap();
    (flash, map)
}

fn entries(flash: &Flash, map: &PartitionMap) -> [OtaEntry; 2] {
    map.otadata_entries(flash).unwrap().unwrap()
}

fn states(flash: &Flash, map: &PartitionMap) -> [OtaState; 2] {
    let e = entries(flash, map);
    [e[0].ota_state(), e[1].ota_state()]
}

/// A table with a factory app and three OTA slots.
fn with_factory() -> (Flash, PartitionMap) {
    let rows = [
        ("nvs", 1, 0x02, 0x9000, 0x4000),
        ("otadata", 1, 0x00, 0xD000, 0x2000),
        ("factory", 0, 0x00, 0x10000, 0x100000),
        ("ota_0", 0, 0x10, 0x110000, 0x100000),
        ("ota_1", 0, 0x11, 0x210000, 0x100000),
        ("ota_2", 0, 0x12, 0x310000, 0x0F0000),
    ];
    let flash = Flash::with_image(4 << 20, TABLE_OFFSET, &table_bytes(&rows)).unwrap();
    let map = PartitionMap::read(&flash).unwrap();
    (flash, map)
}

#[test]
fn entries_are_laid_out_as_esp_ota_select_entry_t() {
    let (mut flash, map) = erased();
    let ota1 = map.ota[1];
    map.set_boot(&mut flash, ota1).unwrap();
    // Both entries were erased: entry 0 gets ota_seq = 1 + 1, state NEW, CRC over ota_seq only.
    let raw = flash.read(0xE000, 32).unwrap();
    assert_eq!(raw[..4], 2u32.to_le_bytes());
    assert_eq!(raw[4..24], [0xFF; 20], "seq_label is left as it was");
    assert_eq!(raw[24..28], 0u32.to_le_bytes(), "ESP_OTA_IMG_NEW");
    assert_eq!(raw[28..32], 0x55F6_3774u32.to_le_bytes(), "crc32_le(UINT32_MAX, ota_seq = 2)");
    assert_eq!(rom_crc32_le(&1u32.to_le_bytes()), 0x4743_989A);
    assert_eq!(flash.read(0xF000, 32).unwrap(), vec![0xFF; 32], "entry 1 untouched");
    for (raw, s) in [(0, OtaState::New), (1, OtaState::PendingVerify), (2, OtaState::Valid)] {
        assert_eq!(OtaState::from_raw(raw), s);
        assert_eq!(s.raw(), raw);
    }
    assert_eq!(OtaState::from_raw(3), OtaState::Invalid);
    assert_eq!(OtaState::from_raw(4), OtaState::Aborted);
    assert_eq!(OtaState::from_raw(u32::MAX), OtaState::Undefined);
}

#[test]
fn an_ota_update_is_new_then_pending_verify_then_valid() {
    let (mut flash, map) = erased();
    // Erased otadata, no factory app: ota_0, and the bootloader records it as VALID entry 0.
    let start = map.select_boot(&mut flash).unwrap();
    assert_eq!(start, BootStart { index: Some(0), initial: true });
    map.record_initial_boot(&mut flash, map.ota[0]).unwrap();
    assert_eq!(entries(&flash, &map)[0].seq, 1);
    assert_eq!(map.state_of(&flash, map.ota[0]).unwrap(), Some(OtaState::Valid));

    // The updater selects ota_1: a NEW entry in the other sector.
    let (ota0, ota1) = (map.ota[0], map.ota[1]);
    assert_eq!(map.next_update_slot(ota0), Some(ota1));
    map.set_boot(&mut flash, ota1).unwrap();
    assert_eq!(entries(&flash, &map)[1].seq, 2);
    assert_eq!(states(&flash, &map), [OtaState::Valid, OtaState::New]);

    // Boot: NEW becomes PENDING_VERIFY, ota_1 is tried first.
    let start = map.select_boot(&mut flash).unwrap();
    assert_eq!(start, BootStart { index: Some(1), initial: false });
    assert_eq!(states(&flash, &map), [OtaState::Valid, OtaState::PendingVerify]);
    assert_eq!(map.state_of(&flash, ota1).unwrap(), Some(OtaState::PendingVerify));

    // The app confirms itself: VALID, and a reset boots it again.
    assert_eq!(map.mark_app_valid(&mut flash).unwrap(), MarkValid::Marked);
    assert_eq!(states(&flash, &map), [OtaState::Valid, OtaState::Valid]);
    assert_eq!(map.mark_app_valid(&mut flash).unwrap(), MarkValid::AlreadyValid);
    assert_eq!(map.select_boot(&mut flash).unwrap().index, Some(1));
    assert_eq!(states(&flash, &map), [OtaState::Valid, OtaState::Valid], "a VALID app stays VALID");
}

#[test]
fn a_reset_while_pending_verify_aborts_the_app_and_boots_the_previous_slot() {
    let (mut flash, map) = erased();
    map.select_boot(&mut flash).unwrap();
    map.record_initial_boot(&mut flash, map.ota[0]).unwrap();
    map.set_boot(&mut flash, map.ota[1]).unwrap();
    assert_eq!(map.select_boot(&mut flash).unwrap().index, Some(1));
    // Reset before the app marked itself valid.
    assert_eq!(map.select_boot(&mut flash).unwrap().index, Some(0), "rolled back to ota_0");
    assert_eq!(states(&flash, &map), [OtaState::Valid, OtaState::Aborted]);
    assert_eq!(map.state_of(&flash, map.ota[1]).unwrap(), Some(OtaState::Aborted));
    // ABORTED stays ABORTED: never booted again.
    assert_eq!(map.select_boot(&mut flash).unwrap().index, Some(0));
    assert_eq!(states(&flash, &map), [OtaState::Valid, OtaState::Aborted]);
    // The next update goes into ota_1 again, selected after ota_0's entry.
    assert_eq!(map.next_update_slot(map.ota[0]), Some(map.ota[1]));
    map.set_boot(&mut flash, map.ota[1]).unwrap();
    assert_eq!(entries(&flash, &map)[1].seq, 2);
    assert_eq!(map.select_boot(&mut flash).unwrap().index, Some(1));
}

#[test]
fn a_second_update_while_pending_verify_replaces_the_older_entry() {
    let (mut flash, map) = erased();
    map.select_boot(&mut flash).unwrap();
    map.record_initial_boot(&mut flash, map.ota[0]).unwrap();
    map.set_boot(&mut flash, map.ota[1]).unwrap();
    map.select_boot(&mut flash).unwrap(); // ota_1 runs, PENDING_VERIFY
    // It updates again before confirming: ota_0 gets seq 3, NEW, in entry 0.
    map.set_boot(&mut flash, map.ota[0]).unwrap();
    assert_eq!(entries(&flash, &map)[0].seq, 3);
    assert_eq!(states(&flash, &map), [OtaState::New, OtaState::PendingVerify]);
    // The reset aborts ota_1's entry and boots the new image.
    assert_eq!(map.select_boot(&mut flash).unwrap().index, Some(0));
    assert_eq!(states(&flash, &map), [OtaState::PendingVerify, OtaState::Aborted]);
}

#[test]
fn invalid_entries_and_bad_crcs_do_not_boot() {
    let (mut flash, map) = erased();
    map.select_boot(&mut flash).unwrap();
    map.record_initial_boot(&mut flash, map.ota[0]).unwrap();
    map.set_boot(&mut flash, map.ota[1]).unwrap();
    let mut e = entries(&flash, &map)[1];
    e.state = OtaState::Invalid.raw();
    map.write_entry(&mut flash, 1, e).unwrap();
    assert_eq!(map.select_boot(&mut flash).unwrap().index, Some(0));
    // A bad CRC: no entry decides ("ota data partition invalid"); without a factory app the
    // bootloader tries every partition from the factory index on, ota_0 first.
    let mut e = entries(&flash, &map)[0];
    e.crc ^= 1;
    map.write_entry(&mut flash, 0, e).unwrap();
    assert_eq!(map.select_boot(&mut flash).unwrap(), BootStart { index: None, initial: false });
    assert_eq!(map.load_order(None), map.ota);
    assert_eq!(map.mark_app_valid(&mut flash).unwrap(), MarkValid::NotOta);
}

#[test]
fn the_factory_app_and_the_load_order() {
    let (mut flash, map) = with_factory();
    assert_eq!(map.ota.len(), 3);
    assert_eq!(map.select_boot(&mut flash).unwrap(), BootStart { index: None, initial: false });
    let labels = |start| map.load_order(start).iter().map(AppSlot::label).collect::<Vec<_>>();
    assert_eq!(labels(None), ["factory", "ota_0", "ota_1", "ota_2"]);
    assert_eq!(labels(Some(1)), ["ota_1", "ota_0", "factory", "ota_2"], "down to factory, then up");
    assert_eq!(labels(Some(2)), ["ota_2", "ota_1", "ota_0", "factory"]);
    // From the factory app the first OTA slot is updated; selecting it, then factory again.
    let factory = map.factory.unwrap();
    assert_eq!(map.next_update_slot(factory), Some(map.ota[0]));
    assert_eq!(map.next_update_slot(map.ota[2]), Some(map.ota[0]), "after the last: the first");
    map.set_boot(&mut flash, map.ota[0]).unwrap();
    assert_eq!(map.select_boot(&mut flash).unwrap().index, Some(0));
    assert_eq!(map.state_of(&flash, factory).unwrap(), None);
    map.set_boot(&mut flash, factory).unwrap();
    assert_eq!(entries(&flash, &map), [OtaEntry::ERASED; 2], "selecting factory erases otadata");
    assert_eq!(map.select_boot(&mut flash).unwrap().index, None);
    assert_eq!(map.mark_app_valid(&mut flash).unwrap(), MarkValid::NotOta, "running firmware is factory");
}

#[test]
fn seq_numbers_follow_esp_rewrite_ota_data() {
    let (mut flash, map) = with_factory();
    // From erased otadata: ota_2 is seq 3.
    map.set_boot(&mut flash, map.ota[2]).unwrap();
    assert_eq!(entries(&flash, &map)[0].seq, 3);
    // Then ota_0: the smallest seq >= 3 that selects it, 4, in entry 1.
    map.set_boot(&mut flash, map.ota[0]).unwrap();
    assert_eq!(entries(&flash, &map)[1].seq, 4);
    // Then ota_1: 5, back in entry 0.
    map.set_boot(&mut flash, map.ota[1]).unwrap();
    assert_eq!(entries(&flash, &map)[0].seq, 5);
    assert_eq!(map.select_boot(&mut flash).unwrap().index, Some(1));
}

#[test]
fn one_ota_slot_is_its_own_next_slot() {
    let rows = [("otadata", 1, 0x00, 0xE000, 0x2000), ("ota_0", 0, 0x10, 0x10000, 0x200000)];
    let flash = Flash::with_image(4 << 20, TABLE_OFFSET, &table_bytes(&rows)).unwrap();
    let map = PartitionMap::read(&flash).unwrap();
    assert_eq!(map.next_update_slot(map.ota[0]), Some(map.ota[0]));
    let rows = [("nvs", 1, 0x02, 0x9000, 0x6000), ("factory", 0, 0x00, 0x10000, 0x300000)];
    let flash = Flash::with_image(4 << 20, TABLE_OFFSET, &table_bytes(&rows)).unwrap();
    let map = PartitionMap::read(&flash).unwrap();
    assert_eq!(map.next_update_slot(map.factory.unwrap()), None, "no OTA slot at all");
}

#[test]
fn default_map_and_boot_selection() {
    let (mut flash, map) = erased();
    assert!(!map.from_flash);
    let first = map.ota[0];
    assert_eq!(first.offset, 0x10000);
    let next = map.next_update_slot(first).unwrap();
    assert_eq!(next.offset, 0x150000);
    for (slot, index) in [(next, 1), (first, 0), (next, 1)] {
        map.set_boot(&mut flash, slot).unwrap();
        assert_eq!(map.select_boot(&mut flash).unwrap().index, Some(index));
        assert_eq!(map.mark_app_valid(&mut flash).unwrap(), MarkValid::Marked);
    }
}

#[test]
fn a_flashed_table_is_read() {
    let flash = Flash::with_image(4 << 20, TABLE_OFFSET, &PartitionMap::default_table_bytes()).unwrap();
    let map = PartitionMap::read(&flash).unwrap();
    assert!(map.from_flash);
    assert_eq!(map.ota.len(), 2);
    assert_eq!(map.otadata, Some(0xE000));
    assert_eq!(map.slots()[1].label(), "ota_1");
}
