//! memd's memory calls on the metal (module 1 of a memd boot; `segv_ro` and `segv_none` in the
//! pack): mmap/munmap/mprotect semantics and errno values, zero fill, brk/sbrk, `Vec`/`Box`/
//! `String` over libvm's allocator, redox_syscall's routed `fmap`/`funmap`/`mprotect`, hostile
//! requests, and faults that kill only the faulting child with the right reason.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use libvm::proto::{self, GlobalStats, Request, wait_status as ws};
use libvm::{MmapFlags as F, ProtectionFlags as P, VmResult};
use user_rt::*;

entry!(main);

const PAGE: usize = 4096;
const EINVAL: i32 = 22;
const EEXIST: i32 = 17;
const ENOMEM: i32 = 12;
const EPERM: i32 = 1;
const ENOSYS: i32 = 38;
const ESRCH: i32 = 3;
const EBADF: i64 = 9;

fn errno<T>(r: VmResult<T>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.errno(),
    }
}

/// memd's frames in use for data (page tables, whose few spare frames a process may keep or
/// give back at any batch, aside).
fn frames_used() -> u64 {
    vm().global_stats()
        .map(|s| s.data_frames())
        .unwrap_or(u64::MAX)
}

fn mmap_semantics() {
    let vm = vm();
    let a = vm.mmap(0, 3 * PAGE, P::READ_WRITE, F::anonymous_private());
    check!(a.is_ok(), "mmap: {:?}", a);
    let a = a.unwrap_or(0);
    check!(
        a >= 0x4000_0000 && a.is_multiple_of(PAGE),
        "mmap placed at {:#x}",
        a
    );
    for off in (0..3 * PAGE).step_by(512) {
        check!(read(a + off) == 0, "zero fill at {:#x}", a + off);
    }
    println!("PASS zero fill");
    for i in 0..3 {
        write(a + i * PAGE + 8, 0xA000 + i as u64);
    }
    for i in 0..3 {
        check!(
            read(a + i * PAGE + 8) == 0xA000 + i as u64,
            "page {} kept",
            i
        );
    }
    // Errors, each with its errno, and nothing changed.
    let before = frames_used();
    check!(
        errno(vm.mmap(0, 0, P::READ, F::anonymous_private())) == EINVAL,
        "len 0"
    );
    check!(
        errno(vm.mmap(a + 1, PAGE, P::READ, F::anonymous_private().fixed())) == EINVAL,
        "unaligned fixed"
    );
    check!(
        errno(vm.mmap(a, PAGE, P::READ, F::anonymous_private().fixed_noreplace())) == EEXIST,
        "fixed_noreplace over a mapping"
    );
    check!(
        errno(vm.mmap(0, PAGE, P::READ, F::ANONYMOUS)) == EINVAL,
        "neither shared nor private"
    );
    // Linux's answers: a fixed mapping past the user half, and a length that overflows
    // when rounded to pages, are ENOMEM; a fixed mapping below 64 KiB is EPERM.
    check!(
        errno(vm.mmap(
            0xFFFF_8000_0000_0000,
            PAGE,
            P::READ,
            F::anonymous_private().fixed()
        )) == ENOMEM,
        "kernel half"
    );
    check!(
        errno(vm.mmap(0, usize::MAX - 100, P::READ, F::anonymous_private())) == ENOMEM,
        "huge length"
    );
    check!(
        errno(vm.mmap(0x1000, PAGE, P::READ, F::anonymous_private().fixed())) == EPERM,
        "fixed below 64 KiB"
    );
    // 64 TiB of address space: lazily backed, so memd may allow it; it takes no frame.
    if let Ok(h) = vm.mmap(0, 1 << 46, P::READ, F::anonymous_private()) {
        check!(vm.munmap(h, 1 << 46).is_ok(), "munmap 64 TiB");
    }
    check!(errno(vm.munmap(a + 1, PAGE)) == EINVAL, "munmap unaligned");
    check!(errno(vm.munmap(a, 0)) == EINVAL, "munmap len 0");
    check!(
        errno(vm.munmap(0xFFFF_8000_0000_0000, PAGE)) == EINVAL,
        "munmap kernel half"
    );
    check!(
        errno(vm.mprotect(a + 1, PAGE, P::READ)) == EINVAL,
        "mprotect unaligned"
    );
    check!(
        vm.mprotect(a, 0, P::READ).is_ok(),
        "mprotect len 0 does nothing"
    );
    check!(read(a + 8) == 0xA000, "contents survive refused calls");
    check!(frames_used() == before, "refused calls took frames");
    // mprotect down and up, munmap the middle page.
    check!(vm.mprotect(a, PAGE, P::READ).is_ok(), "mprotect read");
    check!(read(a + 8) == 0xA000, "read after mprotect");
    check!(vm.mprotect(a, PAGE, P::READ_WRITE).is_ok(), "mprotect rw");
    write(a + 16, 5);
    check!(vm.munmap(a + PAGE, PAGE).is_ok(), "munmap middle");
    check!(
        vm.munmap(a + PAGE, PAGE).is_ok(),
        "munmap again (a hole) is fine"
    );
    let again = vm.mmap(
        a + PAGE,
        PAGE,
        P::READ_WRITE,
        F::anonymous_private().fixed(),
    );
    check!(
        again == Ok(a + PAGE),
        "fixed remap of the hole: {:?}",
        again
    );
    check!(
        read(a + PAGE + 8) == 0,
        "a remapped page is zero, not the old contents"
    );
    check!(vm.munmap(a, 3 * PAGE).is_ok(), "munmap all");
    // Populate and release: frames come and go.
    let used = frames_used();
    let b = vm.mmap(
        0,
        16 * PAGE,
        P::READ_WRITE,
        F::anonymous_private().populate(),
    );
    check!(b.is_ok(), "populate: {:?}", b);
    check!(frames_used() >= used + 16, "populate backs 16 pages");
    check!(
        vm.munmap(b.unwrap_or(0), 16 * PAGE).is_ok(),
        "munmap populated"
    );
    check!(frames_used() == used, "munmap returns the frames");
    println!("PASS mmap semantics");
}

fn brk_semantics() {
    let vm = vm();
    let old = vm.sbrk(0);
    check!(old.is_ok(), "sbrk(0): {:?}", old);
    let old = old.unwrap_or(0);
    check!(vm.brk(0) == Ok(old), "brk(0) is the break");
    check!(
        vm.sbrk(2 * PAGE as isize) == Ok(old),
        "sbrk returns the old break"
    );
    check!(vm.brk(0) == Ok(old + 2 * PAGE), "the break moved");
    check!(
        read(old) == 0 && read(old + PAGE + 8) == 0,
        "heap is zero filled"
    );
    write(old + 8, 77);
    check!(read(old + 8) == 77, "heap is writable");
    check!(
        vm.sbrk(-(2 * PAGE as isize)) == Ok(old + 2 * PAGE),
        "sbrk down"
    );
    check!(
        errno(vm.brk(1)) == EINVAL || errno(vm.brk(1)) == ENOMEM,
        "brk below the heap"
    );
    check!(errno(vm.sbrk(isize::MAX)) != 0, "sbrk(isize::MAX) refused");
    check!(vm.brk(0) == Ok(old), "refused brk changed nothing");
    println!("PASS brk");
}

fn allocator() {
    let mut v: Vec<u64> = Vec::new();
    for i in 0..100_000u64 {
        v.push(i * 3);
    }
    check!(
        v.iter().sum::<u64>() == 3 * (99_999 * 100_000 / 2),
        "vec sum"
    );
    let b = Box::new([7u8; 10_000]);
    check!(b.iter().all(|&x| x == 7), "box");
    let mut s = String::new();
    for i in 0..1000 {
        s.push_str(if i % 2 == 0 { "ab" } else { "c" });
    }
    check!(s.len() == 1500, "string");
    let big: Vec<u8> = alloc::vec![1u8; 1 << 20];
    check!(
        big.iter().map(|&x| x as usize).sum::<usize>() == 1 << 20,
        "1 MiB vec"
    );
    drop((v, b, s, big));
    println!("PASS allocator");
}

fn redox_calls() {
    use syscall::flag::MapFlags;
    let map = syscall::data::Map {
        offset: 0,
        size: 2 * PAGE,
        flags: MapFlags::PROT_READ | MapFlags::PROT_WRITE | MapFlags::MAP_PRIVATE,
        address: 0,
    };
    // SAFETY: an anonymous mapping of fresh memory; nothing of ours is replaced.
    let a = unsafe { syscall::fmap(!0, &map) };
    check!(a.is_ok(), "fmap: {:?}", a);
    let a = a.unwrap_or(0);
    check!(read(a) == 0, "fmap memory is zero");
    write(a + PAGE, 42);
    check!(read(a + PAGE) == 42, "fmap memory is writable");
    // SAFETY: our own mapping, made above.
    let r = unsafe { syscall::mprotect(a, PAGE, MapFlags::PROT_READ) };
    check!(r == Ok(0), "mprotect: {:?}", r);
    // SAFETY: as above.
    let r = unsafe { syscall::funmap(a, 2 * PAGE) };
    check!(r == Ok(0), "funmap: {:?}", r);
    // SAFETY: not anonymous: refused by the kernel before anything happens.
    let r = unsafe { syscall::fmap(3, &map) };
    check!(
        r.map_err(|e| e.errno as i64) == Err(EBADF),
        "fmap of a file: {:?}",
        r
    );
    // SAFETY: bad flags: memd refuses, nothing is unmapped.
    let r = unsafe { syscall::mprotect(a, PAGE, MapFlags::MAP_SHARED) };
    check!(
        r.map_err(|e| e.errno) == Err(EINVAL),
        "mprotect with map bits: {:?}",
        r
    );
    println!("PASS redox fmap funmap mprotect");
}

fn hostile() {
    let before = global_stats();
    // Garbage opcodes and fields: errors, nothing changed.
    for op in [0u64, 13, 99, 255] {
        let msg = [op | 0xABCD << 32, 1, 2, 3, 4, 5, 6, 0x10000];
        let (st, _, r) = ipc_call(PAGER_ENDPOINT, &msg, &mut []);
        check!(st == 0, "the call goes through: {}", st);
        check!(r.wrapping_neg() as i32 == ENOSYS, "opcode {}: {:#x}", op, r);
    }
    // Unused args set: refused.
    let mut w = proto::sqe_to_words(
        &Request::Munmap {
            addr: 0x4000_0000,
            len: 4096,
        }
        .encode(),
    );
    w[6] = 1;
    let (_, _, r) = ipc_call(PAGER_ENDPOINT, &w_msg(w), &mut []);
    check!(r.wrapping_neg() as i32 == ENOSYS, "unused args: {:#x}", r);
    // A forged caller (word 7) is ignored: the kernel stamps the badge; stats of a pid that
    // does not exist fail.
    let w = proto::sqe_to_words(&Request::ProcessStats { pid: 999 }.encode());
    let mut buf = [0u8; 64];
    let (_, _, r) = ipc_call(PAGER_ENDPOINT, &w_msg(w), &mut buf);
    check!(
        r.wrapping_neg() as i32 == ESRCH,
        "stats of pid 999: {:#x}",
        r
    );
    // A lent buffer in the kernel half is refused by the kernel.
    let w = proto::sqe_to_words(&Request::GlobalStats.encode());
    let (st, _, _) = ipc_call_raw(PAGER_ENDPOINT, &w_msg(w), 0xFFFF_8000_0000_0000, 152);
    check!(st < 0, "kernel-half lend: {}", st);
    // Too short a buffer for the stats.
    let (_, _, r) = ipc_call(PAGER_ENDPOINT, &w_msg(w), &mut buf[..8]);
    check!(
        r.wrapping_neg() as i32 == 14,
        "short stats buffer: {:#x}",
        r
    );
    // Waiting for someone else's process, spawning what does not exist.
    check!(errno(vm().wait(1)) == ESRCH, "wait for a non-child");
    check!(
        errno(vm().spawn("no-such-module")) == ESRCH,
        "spawn of a missing module"
    );
    check!(errno(vm().spawn("memd")) == ESRCH, "spawn of memd itself");
    // Pager-only system calls.
    check!(
        syscall6(nr::SPACE_CREATE, 0, 0, 0, 0, 0, 0) == -1,
        "space_create is the pager's"
    );
    check!(
        syscall6(nr::SPACE_APPLY, 0x10000, 0, 0, 0, 0, 0) == -1,
        "space_apply is the pager's"
    );
    let after = global_stats();
    check!(
        after.frames_used == before.frames_used && after.processes == before.processes,
        "hostile requests changed memory: {} -> {}",
        before.frames_used,
        after.frames_used
    );
    let _: GlobalStats = after;
    println!("PASS hostile requests");
}

/// A client that splits a mapping without end is refused with ENOMEM once the regions of all
/// processes would outgrow what memd holds; memd keeps serving, and unmapping gives it back.
fn region_flood() {
    let pages = 120_000;
    let a = vm()
        .mmap(0, pages * PAGE, P::READ_WRITE, F::anonymous_private())
        .unwrap_or(0);
    check!(a != 0, "a big lazy mapping");
    let mut i = 0;
    let err = loop {
        check!(i < pages, "splitting was never refused");
        match vm().mprotect(a + i * PAGE, PAGE, P::READ) {
            Ok(()) => i += 2,
            Err(e) => break e,
        }
    };
    let regions = vm().process_stats(0).map(|s| s.region_count).unwrap_or(0);
    check!(
        err.errno() == ENOMEM && regions > 10_000,
        "refused with {:?} at {} regions",
        err,
        regions
    );
    // The refusal leaves less than two regions' worth of the budget, maybe less than one
    // page's: give one region back (the last read-only page, a region of its own, so no
    // split), and a new page fits again.
    check!(
        vm().munmap(a + (i - 2) * PAGE, PAGE).is_ok(),
        "unmap one split page"
    );
    write(a + PAGE, 7);
    check!(read(a + PAGE) == 7, "memory still works");
    check!(vm().munmap(a, pages * PAGE).is_ok(), "unmap the flood");
    let after = vm().process_stats(0).map(|s| s.region_count).unwrap_or(0);
    check!(after < 16, "regions after the flood: {}", after);
    check!(
        vm().mprotect(a, PAGE, P::READ).is_err(),
        "the range is gone"
    );
    println!("PASS region flood refused at {} regions", regions);
}

fn w_msg(w: [u64; 8]) -> Msg {
    w
}

fn kills() {
    let vm = vm();
    for (name, reason, access) in [
        ("segv_ro", ws::ACCERR, ws::WRITE),
        ("segv_none", ws::ACCERR, ws::READ),
        ("segv_null", ws::MAPERR, ws::READ),
    ] {
        let pid = vm.spawn(name);
        check!(pid.is_ok(), "spawn {}: {:?}", name, pid);
        let w = vm.wait(pid.unwrap_or(0));
        check!(w.is_ok(), "wait {}: {:?}", name, w);
        let (status, addr) = w.unwrap_or((0, 0));
        check!(
            ws::code(status).is_none(),
            "{} was not killed: {:#x}",
            name,
            status
        );
        check!(
            ws::reason(status) == reason && ws::access(status) == access,
            "{} killed with {:#x}",
            name,
            status
        );
        println!("{}: killed at {:#x}, status {:#x}", name, addr, status);
    }
    let pid = vm.spawn("exit7").unwrap_or(0);
    check!(vm.wait(pid).map(|w| w.0) == Ok(7), "exit code 7");
    check!(errno(vm.wait(pid)) == ESRCH, "a child is waited for once");
    println!("PASS faults kill only the faulting process");
}

fn main(_: Start) -> u64 {
    brk_semantics();
    mmap_semantics();
    allocator();
    redox_calls();
    hostile();
    region_flood();
    kills();
    println!("PASS vmtest");
    0
}
