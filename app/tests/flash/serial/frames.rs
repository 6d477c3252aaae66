//! A host written frame by frame: the exact bytes the ROMs and the stub send.

use std::io::Read;
use std::time::{Duration, Instant};

use otaforge_sim::serial::{DeviceState, Faults, VirtualSerialDevice, frame, frame::op, slip};
use serialport::SerialPort;

use super::{esp32c3, esp8266};

/// A host speaking the protocol frame by frame, to pin down the bytes the device sends.
struct Host {
    port: serialport::TTYPort,
    decoder: slip::Decoder,
}

impl Host {
    fn open(dev: &VirtualSerialDevice) -> Host {
        let port = serialport::new(dev.pty_path().to_string_lossy(), 115_200)
            .timeout(Duration::from_millis(50))
            .open_native()
            .unwrap();
        Host { port, decoder: slip::Decoder::new() }
    }

    fn send(&mut self, op: u8, checksum: u32, data: &[u8]) {
        use std::io::Write;
        self.port.write_all(&slip::encode(&frame::Request::encode(op, checksum, data))).unwrap();
    }

    fn send_raw_frame(&mut self, payload: &[u8]) {
        use std::io::Write;
        self.port.write_all(&slip::encode(payload)).unwrap();
    }

    /// The next frame, or None if nothing complete arrives within `wait`.
    fn recv(&mut self, wait: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 1];
        while Instant::now() < deadline {
            match self.port.read(&mut buf) {
                Ok(1) => {
                    if let Some(f) = self.decoder.push(buf[0]) {
                        return Some(f);
                    }
                }
                _ => continue,
            }
        }
        None
    }

    fn answer(&mut self) -> Vec<u8> {
        self.recv(Duration::from_secs(3)).expect("an answer")
    }
}

fn words(ws: &[u32]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn sync_payload() -> Vec<u8> {
    let mut d = vec![0x07, 0x07, 0x12, 0x20];
    d.extend([0x55; 32]);
    d
}

/// Uploads 8 bytes of "stub" and jumps to it, as a flasher does with its real stub.
fn start_stub(host: &mut Host) {
    host.send(op::MEM_BEGIN, 0, &words(&[8, 1, 0x1800, 0x4010_E000]));
    assert_eq!(host.answer(), frame::response(op::MEM_BEGIN, 0, &[], frame::Status::Ok, 2));
    let code = [1u8, 2, 3, 4, 5, 6, 7, 8];
    let mut data = words(&[8, 0, 0, 0]);
    data.extend(code);
    host.send(op::MEM_DATA, frame::data_checksum(&code) as u32, &data);
    assert_eq!(host.answer(), frame::response(op::MEM_DATA, 0, &[], frame::Status::Ok, 2));
    host.send(op::MEM_END, 0, &words(&[0, 0x4010_E004]));
    assert_eq!(host.answer(), frame::response(op::MEM_END, 0, &[], frame::Status::Ok, 2));
    assert_eq!(host.answer(), b"OHAI");
}

#[test]
fn sync_gets_eight_answers_from_the_rom_and_zeros_from_a_stub() {
    let dir = tempfile::tempdir().unwrap();
    let dev = esp8266(dir.path(), Faults::default());
    let mut host = Host::open(&dev);
    host.send(op::SYNC, 0, &sync_payload());
    for _ in 0..8 {
        assert_eq!(host.answer(), vec![0x01, 0x08, 0x02, 0x00, 0x07, 0x07, 0x12, 0x20, 0x00, 0x00]);
    }
    assert_eq!(host.recv(Duration::from_millis(300)), None, "exactly eight");
    start_stub(&mut host);
    assert_eq!(dev.status().state, DeviceState::Stub);
    host.send(op::SYNC, 0, &sync_payload());
    for _ in 0..8 {
        assert_eq!(host.answer(), frame::response(op::SYNC, 0, &[], frame::Status::Ok, 2));
    }
}

#[test]
fn the_roms_answer_unknown_commands_and_bad_checksums_with_error_status() {
    let dir = tempfile::tempdir().unwrap();
    let dev = esp8266(dir.path(), Faults::default());
    let mut host = Host::open(&dev);
    host.send(op::GET_SECURITY_INFO, 0, &[]);
    assert_eq!(host.answer(), vec![0x01, 0x14, 0x02, 0x00, 0, 0, 0, 0, 0x01, 0x05]);
    host.send(op::FLASH_BEGIN, 0, &words(&[0x1000, 1, 0x400, 0x2000]));
    assert_eq!(host.answer(), frame::response(op::FLASH_BEGIN, 0, &[], frame::Status::Ok, 2));
    let block = [0x5Au8; 0x400];
    let mut data = words(&[0x400, 0, 0, 0]);
    data.extend(block);
    host.send(op::FLASH_DATA, frame::data_checksum(&block) as u32 ^ 1, &data);
    assert_eq!(host.answer(), vec![0x01, 0x03, 0x02, 0x00, 0, 0, 0, 0, 0x01, 0x07], "invalid CRC");
    assert_eq!(dev.flash_contents()[0x2000], 0xFF, "nothing written");
    host.send(op::FLASH_DATA, frame::data_checksum(&block) as u32, &data);
    assert_eq!(host.answer(), frame::response(op::FLASH_DATA, 0, &[], frame::Status::Ok, 2));
    assert_eq!(&dev.flash_contents()[0x2000..0x2400], &block[..]);

    let dir = tempfile::tempdir().unwrap();
    let c3 = esp32c3(dir.path());
    let mut host = Host::open(&c3);
    host.send(op::READ_REG, 0, &words(&[0x4000_1000]));
    assert_eq!(host.answer(), frame::response(op::READ_REG, 0x1B31_506F, &[], frame::Status::Ok, 4));
    host.send(op::GET_SECURITY_INFO, 0, &[]);
    let a = host.answer();
    assert_eq!(a.len(), 8 + 20 + 4);
    assert_eq!(u32::from_le_bytes(a[8 + 12..8 + 16].try_into().unwrap()), 5, "chip id of the ESP32-C3");
    host.send(op::READ_FLASH, 0, &words(&[0, 0x1000, 0x1000, 1]));
    assert_eq!(
        host.answer(),
        vec![0x01, 0xD2, 0x04, 0x00, 0, 0, 0, 0, 0x01, 0x05, 0, 0],
        "stub-only command"
    );
}

#[test]
fn a_stub_switched_to_a_new_baud_rate_ignores_a_host_that_did_not_follow() {
    let dir = tempfile::tempdir().unwrap();
    let dev = esp8266(dir.path(), Faults::default());
    let mut host = Host::open(&dev);
    start_stub(&mut host);
    host.send(op::CHANGE_BAUDRATE, 0, &words(&[460_800, 115_200]));
    assert_eq!(
        host.answer(),
        frame::response(op::CHANGE_BAUDRATE, 0, &[], frame::Status::Ok, 2),
        "answered at the old rate"
    );
    host.send(op::READ_REG, 0, &words(&[0x4000_1000]));
    assert_eq!(host.recv(Duration::from_millis(500)), None, "115200 bytes are noise to a 460800 UART");
    host.port.set_baud_rate(460_800).unwrap();
    host.send(op::READ_REG, 0, &words(&[0x4000_1000]));
    assert_eq!(host.answer(), frame::response(op::READ_REG, 0xFFF0_C101, &[], frame::Status::Ok, 2));
}

#[test]
fn read_flash_streams_acknowledged_packets_then_the_md5() {
    let dir = tempfile::tempdir().unwrap();
    let dev = esp8266(dir.path(), Faults::default());
    let mut host = Host::open(&dev);
    start_stub(&mut host);
    host.send(op::READ_FLASH, 0, &words(&[0x1000, 0x2800, 0x1000, 64]));
    assert_eq!(host.answer(), frame::response(op::READ_FLASH, 0, &[], frame::Status::Ok, 2));
    let mut got = Vec::new();
    while got.len() < 0x2800 {
        let packet = host.answer();
        assert_eq!(packet.len(), (0x2800 - got.len()).min(0x1000));
        got.extend(packet);
        host.send_raw_frame(&(got.len() as u32).to_le_bytes());
    }
    assert_eq!(got, vec![0xFF; 0x2800]);
    use md5::{Digest, Md5};
    assert_eq!(host.answer(), Md5::digest(&got).to_vec());
    // Back to commands.
    host.send(op::SPI_FLASH_MD5, 0, &words(&[0x1000, 0x2800, 0, 0]));
    assert_eq!(
        host.answer(),
        frame::response(op::SPI_FLASH_MD5, 0, &Md5::digest(&got), frame::Status::Ok, 2)
    );
}
