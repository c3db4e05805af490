//! Lent buffers memd cannot write (module 1 of a memd boot; it spawns itself with an argument
//! string to check `ARGS`): a read-only buffer lent with `GLOBAL_STATS`, `PROCESS_STATS`,
//! `REGIONS`, `PROCESSES`, `ARGS` or `WAIT` gets `EFAULT` (`BadBuffer`) and stays unchanged —
//! never a reply that says memd wrote it; a `WAIT` refused so leaves the dead child's status
//! to be waited for again with a good buffer; and a buffer copy-on-write after a fork, or
//! mapped and not touched yet, works through libvm's transport (which faults it in first),
//! while lent through the raw call it gets `EFAULT` too.
#![no_std]
#![no_main]

use libvm::proto::{self, GlobalStats, ProcessStats, Request, Words, wait_status as ws};
use libvm::{MmapFlags as F, ProtectionFlags as P, Transport, VmError};
use user_rt::*;

entry!(main);

const PAGE: usize = 4096;
const PATTERN: u8 = 0x5A;

/// One request through the raw IPC call, lending `[ptr, ptr + len)` as it is: memd's answer.
fn raw(request: &Request, ptr: usize, len: usize) -> Result<u64, VmError> {
    let w = proto::sqe_to_words(&request.encode());
    let (status, r0, r1) = ipc_call_raw(PAGER_ENDPOINT, &w, ptr as u64, len as u64);
    if status != 0 {
        return Err(VmError::from_wire(status.unsigned_abs() as i32, 0));
    }
    proto::decode_reply(&proto::cqe_from_words([r0, r1]))
}

/// The same request through libvm's system-call transport.
fn via_libvm(request: &Request, buf: &mut [u8]) -> Result<u64, VmError> {
    proto::decode_reply(&TRANSPORT.call(&request.encode(), buf))
}

fn byte(addr: usize) -> u8 {
    // SAFETY: the test reads pages it mapped readable.
    unsafe { core::ptr::read_volatile(addr as *const u8) }
}

/// Whether every byte of the page at `a` still holds the pattern.
fn unchanged(a: usize) -> bool {
    (0..PAGE).all(|i| byte(a + i) == PATTERN)
}

/// A fresh page filled with the pattern, with protection `prot` afterwards.
fn page(prot: P) -> usize {
    let a = vm()
        .mmap(0, PAGE, P::READ_WRITE, F::anonymous_private())
        .unwrap_or(0);
    check!(a != 0, "mmap");
    // SAFETY: the page was just mapped read/write.
    unsafe { core::ptr::write_bytes(a as *mut u8, PATTERN, PAGE) };
    check!(vm().mprotect(a, PAGE, prot).is_ok(), "mprotect");
    a
}

/// The page at `a` as a slice.
fn slice(a: usize) -> &'static mut [u8] {
    // SAFETY: a page this process mapped read/write and never unmaps, used by one call at a
    // time.
    unsafe { core::slice::from_raw_parts_mut(a as *mut u8, PAGE) }
}

/// Forks a child that yields `delay` times, then stores to the null guard (and is killed).
fn child_that_faults(delay: u32) -> u64 {
    let pid = vm().fork();
    if pid == Ok(0) {
        for _ in 0..delay {
            yield_now();
        }
        // SAFETY: 0x100 is in the null guard, never mapped: memd kills this process there,
        // which is the point.
        unsafe { core::ptr::write_volatile(0x100 as *mut u64, 1) };
        exit(1);
    }
    check!(pid.is_ok(), "fork: {:?}", pid);
    pid.unwrap_or(0)
}

fn read_only() {
    let ro = page(P::READ);
    let stats = GlobalStats::WORDS * 8;
    let calls = [
        ("GLOBAL_STATS", Request::GlobalStats, stats),
        (
            "PROCESS_STATS",
            Request::ProcessStats { pid: 0 },
            ProcessStats::WORDS * 8,
        ),
        ("REGIONS", Request::Regions { pid: 0, from: 0 }, PAGE),
        ("PROCESSES", Request::Processes { from: 0 }, PAGE),
    ];
    for (name, request, len) in calls {
        let r = raw(&request, ro, len);
        check!(
            r == Err(VmError::BadBuffer),
            "{} into read-only memory: {:?}",
            name,
            r
        );
        check!(unchanged(ro), "{} changed the read-only buffer", name);
        // The same call with a good buffer works.
        let good = page(P::READ_WRITE);
        let r = raw(&request, good, len);
        check!(
            r.is_ok_and(|n| n > 0),
            "{} into a good buffer: {:?}",
            name,
            r
        );
        check!(vm().munmap(good, PAGE).is_ok(), "munmap");
    }
    // ARGS: a child spawned with an argument string checks it.
    let pid = vm().spawn_with_args("lentbuf", "args-check");
    check!(pid.is_ok(), "spawn: {:?}", pid);
    let w = vm().wait(pid.unwrap_or(0));
    check!(w == Ok((0, 0)), "the ARGS child: {:?}", w);
    check!(vm().munmap(ro, PAGE).is_ok(), "munmap");
    println!("PASS a read-only lent buffer gets EFAULT and is not written");
}

/// In the spawned child: `ARGS` into a read-only buffer, then into a good one.
fn args_check() -> u64 {
    let ro = page(P::READ);
    let r = raw(&Request::Args, ro, PAGE);
    check!(
        r == Err(VmError::BadBuffer),
        "ARGS into read-only memory: {:?}",
        r
    );
    check!(unchanged(ro), "ARGS changed the read-only buffer");
    let args = vm().args();
    check!(
        args.as_deref() == Ok(&b"args-check"[..]),
        "ARGS afterwards: {:?}",
        args
    );
    0
}

fn wait() {
    let ro = page(P::READ);
    let killed = ws::fault(ws::MAPERR, ws::WRITE);
    // The child dies while its parent waits (the deferred answer), then already dead.
    for delay in [50, 0] {
        let pid = child_that_faults(delay);
        if delay == 0 {
            while vm()
                .processes()
                .unwrap_or_default()
                .iter()
                .any(|p| p.pid == pid)
            {
                yield_now();
            }
        }
        let r = raw(&Request::Wait { pid, nohang: false }, ro, 8);
        check!(
            r == Err(VmError::BadBuffer),
            "WAIT into read-only memory (delay {}): {:?}",
            delay,
            r
        );
        check!(unchanged(ro), "WAIT changed the read-only buffer");
        let w = vm().wait(pid);
        check!(
            w == Ok((killed, 0x100)),
            "the status after a refused WAIT (delay {}): {:?}",
            delay,
            w
        );
        let again = vm().wait(pid);
        check!(
            again == Err(VmError::NoSuchProcess),
            "waited for twice: {:?}",
            again
        );
    }
    check!(vm().munmap(ro, PAGE).is_ok(), "munmap");
    println!("PASS a WAIT refused for its buffer leaves the status for the next WAIT");
}

/// Whether `buf` holds global statistics that make sense.
fn stats_in(buf: &[u8]) -> bool {
    GlobalStats::read_from(buf)
        .is_some_and(|s| s.frames_total > 0 && s.frames_used > 0 && s.processes > 0)
}

fn copy_on_write() {
    let len = GlobalStats::WORDS * 8;
    let a = page(P::READ_WRITE);
    let pid = vm().fork();
    if pid == Ok(0) {
        // The page is copy-on-write: the raw call gets EFAULT, nothing written.
        let r = raw(&Request::GlobalStats, a, len);
        check!(r == Err(VmError::BadBuffer), "raw into a COW page: {:?}", r);
        check!(unchanged(a), "the COW page changed");
        // libvm's transport faults it in first.
        let r = via_libvm(&Request::GlobalStats, &mut slice(a)[..len]);
        check!(
            r == Ok(GlobalStats::WORDS as u64),
            "libvm into a COW page: {:?}",
            r
        );
        check!(stats_in(slice(a)), "no statistics in the COW page");
        exit(0);
    }
    check!(pid.is_ok(), "fork: {:?}", pid);
    check!(
        vm().wait(pid.unwrap_or(0)) == Ok((0, 0)),
        "the child's calls failed"
    );
    // The parent's copy is copy-on-write as well (until written), and its contents its own.
    check!(unchanged(a), "the child's statistics reached the parent");
    let r = via_libvm(&Request::GlobalStats, &mut slice(a)[..len]);
    check!(
        r == Ok(GlobalStats::WORDS as u64),
        "libvm in the parent: {:?}",
        r
    );
    check!(stats_in(slice(a)), "no statistics in the parent's page");
    check!(vm().munmap(a, PAGE).is_ok(), "munmap");
    // A page mapped and never touched: not present until the transport touches it.
    let lazy = vm()
        .mmap(0, PAGE, P::READ_WRITE, F::anonymous_private())
        .unwrap_or(0);
    let r = raw(&Request::ProcessStats { pid: 0 }, lazy, PAGE);
    check!(
        r == Err(VmError::BadBuffer),
        "raw into an untouched page: {:?}",
        r
    );
    let r = via_libvm(&Request::ProcessStats { pid: 0 }, slice(lazy));
    check!(
        r == Ok(ProcessStats::WORDS as u64),
        "libvm into an untouched page: {:?}",
        r
    );
    let s = ProcessStats::read_from(slice(lazy)).unwrap_or_default();
    check!(s.pid != 0 && s.region_count > 0, "process stats: {:?}", s);
    check!(vm().munmap(lazy, PAGE).is_ok(), "munmap");
    println!("PASS copy-on-write and untouched buffers work through libvm");
}

fn main(_: Start) -> u64 {
    if args().first().map(|a| a.as_str()) == Some("args-check") {
        return args_check();
    }
    // The baseline once this process's heap holds a process listing.
    check!(vm().processes().is_ok(), "processes");
    let base = global_stats();
    read_only();
    wait();
    copy_on_write();
    let after = global_stats();
    check!(
        settled(&base, &after),
        "frames {} -> {}, processes {} -> {}",
        base.frames_used,
        after.frames_used,
        base.processes,
        after.processes
    );
    println!("PASS lentbuf");
    0
}
