//! Under memd, as the first program, booted with `device=vga:0xb8000:0x8000` (the VGA text
//! buffer) and a device range over RAM the kernel must refuse: maps the text buffer and writes
//! a line on the screen; checks that a second mapping (write-combining) of the same device page
//! sees it, that a fork's child keeps the shared mapping (and its stores reach the device) but
//! not the private one (it is killed touching it) and holds no capability, that a spawned
//! process is refused until this one grants it the device, and that it then reads what this
//! one wrote: the device's memory, never zeroed.
//!
//! Run as `devmem granted` it is that spawned process.
#![no_std]
#![no_main]

use libvm::proto::wait_status as ws;
use libvm::{Caching, MmapFlags as M, ProtectionFlags as P, VmError};
use user_rt::*;

entry!(main);

const PAGE: usize = 4096;
/// What this program writes on the first line of the screen (character, attribute).
const LINE: &[u8] = b"memd: device memory mapped by a ring-3 program";
/// Light green on black.
const ATTR: u8 = 0x0A;

fn main(_: Start) -> u64 {
    if args().first().map(|a| a.as_str()) == Some("granted") {
        return granted();
    }
    let vm = vm();
    let vga = vm.device("vga");
    check!(
        vga.is_ok_and(|d| d.index == 0 && d.len == 0x8000),
        "device vga: {:?}",
        vga
    );
    check!(
        vm.device("overram") == Err(VmError::NoSuchDevice),
        "a range over RAM: {:?}",
        vm.device("overram")
    );
    let before = global_stats();
    let screen = vm.map_device(0, PAGE, P::READ_WRITE, M::SHARED, 0, 0, Caching::Uncached);
    check!(screen.is_ok(), "map the text buffer: {:?}", screen);
    let screen = screen.unwrap_or(0);
    let cells = screen as *mut u16;
    for (i, &c) in LINE.iter().enumerate() {
        // SAFETY: the first 80 cells of the text buffer, mapped read/write above.
        unsafe {
            cells
                .add(i)
                .write_volatile(u16::from(ATTR) << 8 | u16::from(c))
        };
    }
    // A second mapping, write-combining and private, of the same device page.
    let wc = vm.map_device(0, PAGE, P::READ, M::PRIVATE, 0, 0, Caching::WriteCombining);
    check!(wc.is_ok(), "map it again: {:?}", wc);
    let wc = wc.unwrap_or(0);
    check!(wc != screen, "two mappings at {:#x}", wc);
    check!(
        line_at(wc) == LINE,
        "the second mapping sees {:?}",
        core::str::from_utf8(&line_at(wc)).unwrap_or("?")
    );
    let after = global_stats();
    check!(
        after.data_frames() == before.data_frames(),
        "device pages took memd frames: {} -> {}",
        before.data_frames(),
        after.data_frames()
    );
    check!(
        process_stats(0).resident_pages <= 64,
        "device pages counted resident"
    );
    // A fork's child: the shared mapping is its too, its stores reach the device; it holds
    // no capability.
    let pid = vm.fork();
    check!(pid.is_ok(), "fork: {:?}", pid);
    if pid == Ok(0) {
        let refused = vm.map_device(0, PAGE, P::READ, M::SHARED, 0, 0, Caching::Uncached);
        if refused != Err(VmError::NotPermitted) || line_at(screen) != LINE {
            exit(2);
        }
        // SAFETY: cell 79 of the shared mapping of the text buffer.
        unsafe {
            cells
                .add(79)
                .write_volatile(u16::from(ATTR) << 8 | u16::from(b'C'))
        };
        exit(0);
    }
    let w = vm.wait(pid.unwrap_or(0));
    check!(w == Ok((0, 0)), "the child: {:x?}", w);
    check!(
        read(screen + 152) >> 48 == u64::from(u16::from(ATTR) << 8 | u16::from(b'C')),
        "the child's store is not on the screen: {:#x}",
        read(screen + 152)
    );
    // The private mapping is not a child's: touching it kills it (nothing mapped there).
    let pid = vm.fork();
    if pid == Ok(0) {
        read(wc);
        exit(3);
    }
    let w = vm.wait(pid.unwrap_or(0));
    check!(
        w.is_ok_and(|(s, addr)| ws::reason(s) == ws::MAPERR && addr == wc as u64),
        "the child touching the private mapping: {:x?}",
        w
    );
    // A spawned process holds nothing until this one grants it the device.
    let pid = vm.spawn_with_args("devmem", "granted");
    check!(pid.is_ok(), "spawn: {:?}", pid);
    let pid = pid.unwrap_or(0);
    check!(
        vm.grant_device(pid, 7) == Err(VmError::NoSuchDevice),
        "grant of a device that is none"
    );
    check!(
        vm.grant_device(1 << 40, 0) == Err(VmError::NoSuchProcess),
        "grant to no child"
    );
    let g = vm.grant_device(pid, 0);
    check!(g.is_ok(), "grant: {:?}", g);
    let w = vm.wait(pid);
    check!(w == Ok((0, 0)), "the granted process: {:x?}", w);
    check!(vm.munmap(wc, PAGE).is_ok(), "munmap");
    println!(
        "PASS devmem: the text buffer mapped, shared with a fork's child, granted to a spawned process"
    );
    0
}

/// The characters of the first line of a mapping of the text buffer at `at`.
fn line_at(at: usize) -> [u8; LINE.len()] {
    let mut line = [0u8; LINE.len()];
    for (i, c) in line.iter_mut().enumerate() {
        // SAFETY: the first cells of a mapping of the text buffer, readable.
        *c = unsafe { ((at as *const u16).add(i).read_volatile() & 0xFF) as u8 };
    }
    line
}

/// The spawned process: refused until its parent grants it the device, then it reads the
/// line its parent wrote (the device's memory is never zeroed).
fn granted() -> u64 {
    let vm = vm();
    for _ in 0..10_000 {
        match vm.map_device(0, PAGE, P::READ, M::SHARED, 0, 0, Caching::Uncached) {
            Err(VmError::NotPermitted) => yield_now(),
            Ok(at) => {
                check!(
                    line_at(at) == LINE,
                    "the granted process reads another line"
                );
                return 0;
            }
            Err(e) => {
                println!("FAIL devmem granted: {:?}", e);
                return 1;
            }
        }
    }
    println!("FAIL devmem granted: never granted");
    1
}
