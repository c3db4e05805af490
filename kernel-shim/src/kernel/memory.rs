//! The split of physical memory at boot: usable RAM (from the boot memory map, inside the
//! window, above 1 MiB, minus the kernel image and the boot modules) goes first to the
//! kernel's object tables ([`super::objects`], sized from RAM), then partly to the kernel's
//! frame pool (an eighth, at most 32 MiB), both from the largest range, and the rest to the
//! pager, as the only frames it may ever map.

use super::boot::{self, PHYS_WINDOW_SIZE};
use super::bootinfo::{BootInfo, E820_RAM};
use super::frames::{PAGE, POOL_MAX_FRAMES};
use super::objects;
use super::power;
use super::state::{Kernel, MAX_PAGER_RANGES};

const MAX_PIECES: usize = 64;

/// Splits RAM between the kernel pool and the pager, and prints the split.
pub fn split(k: &mut Kernel, info: &BootInfo) {
    let mut reserved = [(0u64, 0u64); 2 + super::bootinfo::MAX_ENTRIES];
    reserved[0] = (0, 0x10_0000);
    reserved[1] = boot::kernel_image();
    let mut nres = 2;
    for m in info.modules() {
        reserved[nres] = (
            m.start & !(PAGE - 1),
            m.start.saturating_add(m.len).next_multiple_of(PAGE),
        );
        nres += 1;
    }
    let mut pieces = [(0u64, 0u64); MAX_PIECES];
    let mut n = 0;
    for r in info.memory().iter().filter(|r| r.kind == E820_RAM) {
        let start = r.start.next_multiple_of(PAGE);
        let end = (r.start.saturating_add(r.len) & !(PAGE - 1)).min(PHYS_WINDOW_SIZE);
        if start < end && n < MAX_PIECES {
            pieces[n] = (start, end);
            n += 1;
        }
    }
    for &(rs, re) in &reserved[..nres] {
        let mut i = 0;
        while i < n {
            let (s, e) = pieces[i];
            if re <= s || rs >= e {
                i += 1;
                continue;
            }
            pieces[i] = (s, rs.max(s));
            if re < e && n < MAX_PIECES {
                pieces[n] = (re, e);
                n += 1;
            }
            i += 1;
        }
    }
    let total: u64 = pieces[..n].iter().map(|(s, e)| e.saturating_sub(*s)).sum();
    let largest = (0..n)
        .max_by_key(|&i| pieces[i].1.saturating_sub(pieces[i].0))
        .unwrap_or(0);
    let slots = objects::slots_for(total);
    let table_bytes = objects::bytes(slots);
    let (ts, te) = pieces[largest];
    if te.saturating_sub(ts) < table_bytes {
        kprintln!("kernel-shim: no room for the object tables; too little RAM");
        power::exit(power::EXIT_FATAL);
    }
    objects::install(k, ts, slots);
    pieces[largest].0 = ts + table_bytes;
    log::info!(
        "kernel-shim: {} spaces, {} threads, {} endpoints ({} KiB of tables)",
        slots,
        k.threads.len(),
        k.endpoints.len(),
        table_bytes / 1024
    );
    let total = total - table_bytes;
    let (ls, le) = pieces[largest];
    let pool_frames = ((total / PAGE / 8) as usize)
        .min(POOL_MAX_FRAMES)
        .min(((le - ls) / PAGE) as usize);
    k.frames.get_mut().init(ls, pool_frames);
    pieces[largest].0 = ls + pool_frames as u64 * PAGE;
    log::debug!(
        "kernel-shim: kernel pool {:#x}..{:#x} ({} frames)",
        ls,
        pieces[largest].0,
        pool_frames
    );
    for &(s, e) in &pieces[..n] {
        if e > s && k.pager_ranges_len < MAX_PAGER_RANGES {
            k.pager_ranges[k.pager_ranges_len] = (s, e - s);
            k.pager_ranges_len += 1;
            log::debug!("kernel-shim: pager frames {:#x}..{:#x}", s, e);
        }
    }
}
