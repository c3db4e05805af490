//! System calls and their argument checking: bad pointers, kernel addresses, huge lengths,
//! unknown numbers, bad endpoints and tokens all get errors; the kernel keeps running.
#![no_std]
#![no_main]

use user_rt::*;

entry!(main);

fn main(_: Start) -> u64 {
    let e = |v: i64| -v;
    check!(
        debug_write(b"syscheck: console works\n") == 24,
        "debug_write"
    );
    let w = |p: u64, l: u64| syscall6(nr::DEBUG_WRITE, p, l, 0, 0, 0, 0);
    check!(e(w(0, 16)) == errno::EFAULT, "null pointer: {}", w(0, 16));
    check!(e(w(0x5000_0000, 16)) == errno::EFAULT, "unmapped pointer");
    check!(
        e(w(0xFFFF_8000_0010_0000, 16)) == errno::EFAULT,
        "kernel address (window)"
    );
    check!(
        e(w(0xFFFF_FFFF_8010_0000, 16)) == errno::EFAULT,
        "kernel address (image)"
    );
    check!(
        e(w(0x0000_7FFF_FFFF_F000, 0x2000)) == errno::EFAULT,
        "range crossing into the kernel half"
    );
    let s = b"x";
    check!(
        e(w(s.as_ptr() as u64, u64::MAX)) == errno::EFAULT,
        "length wrapping around"
    );
    check!(
        e(w(s.as_ptr() as u64, 1 << 40)) == errno::E2BIG,
        "huge length"
    );
    check!(w(s.as_ptr() as u64, 0) == 0, "empty write");
    let r = |p: u64, l: u64| syscall6(nr::DEBUG_READ, p, l, 0, 0, 0, 0);
    check!(
        e(r(0xFFFF_8000_0000_0000, 8)) == errno::EFAULT,
        "read into the kernel"
    );
    check!(
        e(r(s.as_ptr() as u64, 1)) == errno::EFAULT,
        "read into read-only memory"
    );
    check!(e(syscall0(999)) == errno::ENOSYS, "unknown system call");
    check!(
        e(syscall0(u64::MAX)) == errno::ENOSYS,
        "unknown system call (max)"
    );
    let msg = [1u64, 0, 0, 0, 0, 0, 0, 0];
    check!(
        e(ipc_call_raw(9999, &msg, 0, 0).0) == errno::EINVAL,
        "call to no endpoint"
    );
    check!(
        e(ipc_call_raw(u64::MAX, &msg, 0, 0).0) == errno::EINVAL,
        "call to endpoint u64::MAX"
    );
    check!(
        e(ipc_call_raw(0, &msg, 0xFFFF_8000_0000_0000, 4096).0) == errno::EFAULT,
        "lending kernel memory"
    );
    check!(
        e(ipc_call_raw(0, &msg, 0x1000, 1 << 40).0) == errno::E2BIG,
        "lending a huge buffer"
    );
    check!(
        e(ipc_reply(0x1_0003, 0, 0)) == errno::ESRCH,
        "reply with a forged token"
    );
    check!(
        e(ipc_reply(u64::MAX, 0, 0)) == errno::ESRCH,
        "reply with token u64::MAX"
    );
    let mut b = [0u8; 4];
    check!(
        e(ipc_read(7, 0, &mut b)) == errno::ESRCH,
        "ipc_read with a forged token"
    );
    let c = |p: u64, l: u64| syscall6(nr::CMDLINE, p, l, 0, 0, 0, 0);
    check!(e(c(0, 16)) == errno::EFAULT, "cmdline into null");
    check!(
        e(c(0xFFFF_8000_0000_0000, 16)) == errno::EFAULT,
        "cmdline into the kernel"
    );
    check!(
        e(c(s.as_ptr() as u64, 1)) == errno::EFAULT,
        "cmdline into read-only memory"
    );
    let mut line = [0u8; 64];
    check!(
        c(line.as_mut_ptr() as u64, 64) >= 0,
        "cmdline into a buffer of ours"
    );
    let (a, b) = (endpoint_create(), endpoint_create());
    check!(a > 0 && b > 0 && a != b, "endpoint_create: {} {}", a, b);
    // A space owns at most four endpoints: no process can take every kernel slot.
    let (c3, c4) = (endpoint_create(), endpoint_create());
    check!(c3 > 0 && c4 > 0, "endpoints 3 and 4: {} {}", c3, c4);
    check!(
        e(endpoint_create()) == errno::ENOMEM,
        "a fifth endpoint of one space"
    );
    let t0 = clock();
    check!(clock() >= t0, "clock goes forward");
    println!("PASS syscheck");
    0
}
