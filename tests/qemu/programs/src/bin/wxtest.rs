//! W^X as a process's own policy (`Vm::deny_write_exec`, like Linux's `PR_SET_MDWE`): before
//! it, code written into writable memory runs; after it, no page can be writable and
//! executable, written data never becomes code, for this process, its forks and what it
//! spawns (`wxtest child` checks the spawned side).
#![no_std]
#![no_main]

use libvm::{MmapFlags, ProtectionFlags as P, VmError};
use user_rt::*;

entry!(main);

/// Writes `mov eax, 42; ret` at `a` and calls it.
fn run_code(a: usize) -> u64 {
    let code = [0xB8u8, 42, 0, 0, 0, 0xC3];
    for (i, b) in code.iter().enumerate() {
        // SAFETY: `a` is a writable page of this process.
        unsafe { core::ptr::write_volatile((a + i) as *mut u8, *b) };
    }
    // SAFETY: the page now holds that function and is executable.
    let f: extern "C" fn() -> u32 = unsafe { core::mem::transmute(a) };
    u64::from(f())
}

fn denied(r: Result<(), VmError>, what: &str) {
    check!(
        r == Err(VmError::PermissionDenied),
        "{} under W^X: {:?}",
        what,
        r
    );
}

fn main(_: Start) -> u64 {
    let vm = vm();
    let anon = MmapFlags::anonymous_private();
    if args().iter().any(|a| a == "child") {
        denied(
            vm.mmap(0, 4096, P::READ_WRITE_EXEC, anon).map(drop),
            "a spawned child's rwx mmap",
        );
        println!("PASS wxtest child");
        return 0;
    }
    // Before: writable, executable memory works (a JIT's way).
    let rwx = vm.mmap(0, 4096, P::READ_WRITE_EXEC, anon).unwrap_or(0);
    check!(run_code(rwx) == 42, "code in rwx memory");
    let data = vm.mmap(0, 4096, P::READ_WRITE, anon).unwrap_or(0);
    check!(vm.deny_write_exec().is_ok(), "deny_write_exec");
    denied(
        vm.mmap(0, 4096, P::READ_WRITE_EXEC, anon).map(drop),
        "rwx mmap",
    );
    denied(vm.mprotect(data, 4096, P::READ_WRITE_EXEC), "mprotect rwx");
    // SAFETY: `data` is writable.
    unsafe { core::ptr::write_volatile(data as *mut u8, 0xC3) };
    denied(
        vm.mprotect(data, 4096, P::READ_EXEC),
        "written data made code",
    );
    check!(vm.mprotect(data, 4096, P::READ).is_ok(), "read-only data");
    denied(
        vm.mprotect(data, 4096, P::READ_EXEC),
        "read-only data made code",
    );
    // What was mapped before stays as it was: memd never takes rights away.
    check!(run_code(rwx) == 42, "code mapped before still runs");
    let pid = vm.fork();
    match pid {
        Ok(0) => {
            let r = vm.mmap(0, 4096, P::READ_WRITE_EXEC, anon).map(drop);
            exit(if r == Err(VmError::PermissionDenied) {
                0
            } else {
                1
            })
        }
        Ok(child) => check!(vm.wait(child).map(|w| w.0) == Ok(0), "a fork inherits W^X"),
        Err(e) => check!(false, "fork: {:?}", e),
    }
    let child = vm.spawn_with_args("wxtest", "child").unwrap_or(0);
    check!(vm.wait(child).map(|w| w.0) == Ok(0), "a spawn inherits W^X");
    println!("PASS wxtest");
    0
}
