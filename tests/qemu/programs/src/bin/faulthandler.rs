//! Faults a process handles itself, on the metal: memd hands a fault it would kill for to the
//! handler registered with libvm, on the alternate stack, with the address, access, code and
//! registers; the handler changes mappings (or registers) and returns, and the instruction is
//! tried again. Each case runs in a forked child (a fork keeps the handler), its parent checks
//! how it ended:
//!
//! - `map`: a load where nothing is mapped; the handler maps the page and puts a word in it;
//!   the load is retried and reads the word; the registers the handler saw are the thread's.
//! - `protect`: a store to a read-only page (a write barrier); the handler makes it writable.
//! - `skip`: a load from a non-canonical address (a general-protection fault, `SI_KERNEL`); the
//!   handler moves `rip` past it and sets `rax`.
//! - `nested`: the handler itself faults: the process is killed there, `MAPERR`.
//! - `nostack`: the alternate stack is not mapped: no frame can be written, killed as without a
//!   handler.
//! - `removed`: a handler registered then removed (entry 0): killed as without one.
//! - forged frames given to the kernel's `fault_return` directly: one it cannot read is
//!   EFAULT with nothing changed; one with every privileged RFLAGS bit comes back with them
//!   cleared; one whose `rip` is in the kernel half kills the thread as a #GP.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};
use libvm::fault::{FaultFrame, SEGV_ACCERR, SEGV_MAPERR, SI_KERNEL, SIGSEGV};
use libvm::proto::wait_status as ws;
use libvm::sys::fault_entry::handle_faults;
use libvm::{MmapFlags, ProtectionFlags};
use user_rt::*;

entry!(main);

const PAGE: usize = 4096;
/// What the handler of `map` writes in the page it maps.
const MAPPED_WORD: u64 = 0x6d61_7070_6564;
/// Where `nested`'s handler loads from: nothing is mapped there.
const NESTED_ADDR: u64 = 0x5ead_0000;

/// The alternate stack.
static mut STACK: [u8; 16 * 1024] = [0; 16 * 1024];

/// The last frame a handler saw (its words), and how many faults it handled.
static SEEN: [AtomicU64; 24] = [const { AtomicU64::new(0) }; 24];
static HANDLED: AtomicU64 = AtomicU64::new(0);

fn note(frame: &FaultFrame) {
    // SAFETY: `FaultFrame` is 24 plain `u64`s (`repr(C)`), read as such.
    let words: &[u64; 24] = unsafe { &*(frame as *const FaultFrame as *const [u64; 24]) };
    for (s, w) in SEEN.iter().zip(words) {
        s.store(*w, Ordering::Relaxed);
    }
    HANDLED.fetch_add(1, Ordering::Relaxed);
}

fn seen() -> FaultFrame {
    let mut words = [0u64; 24];
    for (w, s) in words.iter_mut().zip(&SEEN) {
        *w = s.load(Ordering::Relaxed);
    }
    // SAFETY: as in `note`, the other way.
    unsafe { core::mem::transmute::<[u64; 24], FaultFrame>(words) }
}

/// `map`'s handler: maps the page of the address and writes [`MAPPED_WORD`] there.
fn map_page(frame: &mut FaultFrame) {
    note(frame);
    let page = frame.addr as usize & !(PAGE - 1);
    let r = vm().mmap(
        page,
        PAGE,
        ProtectionFlags::READ_WRITE,
        MmapFlags::anonymous_private().fixed(),
    );
    if r != Ok(page) {
        exit(60);
    }
    write(page, MAPPED_WORD);
}

/// `protect`'s handler: makes the page writable.
fn unprotect(frame: &mut FaultFrame) {
    note(frame);
    let page = frame.addr as usize & !(PAGE - 1);
    if vm()
        .mprotect(page, PAGE, ProtectionFlags::READ_WRITE)
        .is_err()
    {
        exit(61);
    }
}

/// `skip`'s handler: resumes at the address in r14, with rax set.
fn skip(frame: &mut FaultFrame) {
    note(frame);
    frame.rip = frame.r14;
    frame.rax = 0x5151;
}

/// `nested`'s handler: faults itself.
fn fault_again(frame: &mut FaultFrame) {
    note(frame);
    read(NESTED_ADDR as usize);
}

fn stack() -> &'static mut [u8] {
    // SAFETY: each child registers the stack once and touches it only through the handler,
    // which runs on it; nothing else takes a reference to it.
    unsafe { &mut *core::ptr::addr_of_mut!(STACK) }
}

/// A page that was mapped and is not any more.
fn hole() -> usize {
    let vm = vm();
    let a = vm
        .mmap(
            0,
            PAGE,
            ProtectionFlags::READ_WRITE,
            MmapFlags::anonymous_private(),
        )
        .unwrap_or(0);
    check!(a != 0 && vm.munmap(a, PAGE).is_ok(), "a hole");
    a
}

fn case_map() -> u64 {
    check!(handle_faults(&vm(), map_page, stack()).is_ok(), "register");
    let a = hole();
    let v: u64;
    // SAFETY: a load from `a`, where nothing is mapped: the handler maps it; r12 and r13 carry
    // values the handler must see in the frame.
    unsafe {
        core::arch::asm!("mov rax, [{a}]", a = in(reg) a, out("rax") v,
            in("r12") 0x1212u64, in("r13") 0x1313u64, options(nostack));
    }
    let f = seen();
    check!(v == MAPPED_WORD, "the retried load read {:#x}", v);
    check!(HANDLED.load(Ordering::Relaxed) == 1, "handled once");
    check!(
        f.signal == SIGSEGV as u64 && f.code == SEGV_MAPERR as u64 && f.addr == a as u64,
        "frame: signal {} code {} addr {:#x}",
        f.signal,
        f.code,
        f.addr
    );
    check!(!f.is_write() && !f.is_exec() && f.vector == 14, "a read");
    check!(
        f.r12 == 0x1212 && f.r13 == 0x1313,
        "registers {:#x} {:#x}",
        f.r12,
        f.r13
    );
    let base = stack().as_ptr() as u64;
    check!(
        f.rsp < base || f.rsp > base + 16 * 1024,
        "the thread's own stack pointer is saved"
    );
    println!("PASS handler maps the page");
    0
}

fn case_protect() -> u64 {
    check!(handle_faults(&vm(), unprotect, stack()).is_ok(), "register");
    let vm = vm();
    let a = vm
        .mmap(
            0,
            PAGE,
            ProtectionFlags::READ,
            MmapFlags::anonymous_private(),
        )
        .unwrap_or(0);
    check!(a != 0, "mmap");
    write(a + 8, 77);
    let f = seen();
    check!(read(a + 8) == 77, "the store went through");
    check!(
        f.code == SEGV_ACCERR as u64 && f.is_write() && f.addr == (a + 8) as u64,
        "frame: code {} access {} addr {:#x}",
        f.code,
        f.access,
        f.addr
    );
    println!("PASS handler unprotects");
    0
}

fn case_skip() -> u64 {
    check!(handle_faults(&vm(), skip, stack()).is_ok(), "register");
    let v: u64;
    // SAFETY: a load from a non-canonical address raises #GP; the handler resumes at label 2
    // (its address in r14) with rax set.
    unsafe {
        core::arch::asm!(
            "lea r14, [rip + 2f]",
            "mov rax, [{bad}]",
            "2:",
            bad = in(reg) 0x8000_0000_0000_0000u64,
            out("rax") v, out("r14") _, options(nostack));
    }
    let f = seen();
    check!(v == 0x5151, "rax after the skip: {:#x}", v);
    check!(
        f.signal == SIGSEGV as u64 && f.code == SI_KERNEL as u64 && f.addr == 0 && f.vector == 13,
        "frame: signal {} code {:#x} addr {:#x} vector {}",
        f.signal,
        f.code,
        f.addr,
        f.vector
    );
    println!("PASS handler skips the instruction");
    0
}

fn case_nested() -> u64 {
    check!(
        handle_faults(&vm(), fault_again, stack()).is_ok(),
        "register"
    );
    read(hole());
    55
}

fn case_nostack() -> u64 {
    let a = hole();
    // SAFETY: a stack where nothing is mapped: never used, the delivery cannot be made.
    let stack = unsafe { core::slice::from_raw_parts_mut(a as *mut u8, PAGE) };
    check!(handle_faults(&vm(), map_page, stack).is_ok(), "register");
    read(hole());
    56
}

fn case_removed() -> u64 {
    check!(handle_faults(&vm(), map_page, stack()).is_ok(), "register");
    let old = vm().set_fault_handler(0, 0, 0);
    check!(old.is_ok_and(|e| e != 0), "remove: {:?}", old);
    read(hole());
    57
}

/// `fault_return` of a frame this program forged: every register from it (rbx, rbp, rsp and
/// rip as they are, so the program goes on at label 2), RFLAGS `rflags`; RFLAGS after.
fn forged_return(rflags: u64) -> u64 {
    use kernel_shim::abi::fault_frame as ff;
    let mut frame = [0u64; ff::WORDS];
    frame[ff::RFLAGS] = rflags;
    let after: u64;
    // SAFETY: the kernel loads every register from `frame`: rip, rsp, rbx and rbp are stored
    // there as they are now (so the code goes on at label 2 with its stack and frame), rdi
    // points at the frame again; every other general register is declared clobbered. The
    // RFLAGS asked for has no TF and no DF.
    unsafe {
        core::arch::asm!(
            "lea rax, [rip + 2f]",
            "mov [rdi + {rip}], rax",
            "mov [rdi + {rsp}], rsp",
            "mov [rdi + {rbx}], rbx",
            "mov [rdi + {rbp}], rbp",
            "mov [rdi + {rdi}], rdi",
            "mov eax, {nr}",
            "syscall",
            "2:",
            "pushfq",
            "pop rax",
            rip = const ff::RIP * 8,
            rsp = const ff::RSP * 8,
            rbx = const (ff::RAX + 1) * 8,
            rbp = const (ff::RAX + 6) * 8,
            rdi = const (ff::RAX + 5) * 8,
            nr = const nr::FAULT_RETURN,
            inout("rdi") frame.as_mut_ptr() => _,
            out("rax") after, out("rcx") _, out("rdx") _, out("rsi") _, out("r8") _,
            out("r9") _, out("r10") _, out("r11") _, out("r12") _, out("r13") _,
            out("r14") _, out("r15") _,
        );
    }
    after
}

fn case_kernel_rip() -> u64 {
    use kernel_shim::abi::fault_frame as ff;
    let mut frame = [0u64; ff::WORDS];
    frame[ff::RIP] = 0xFFFF_8000_0000_1000;
    frame[ff::RSP] = 0x1000;
    syscall6(nr::FAULT_RETURN, frame.as_ptr() as u64, 0, 0, 0, 0, 0);
    58
}

fn forged() {
    let r = syscall6(nr::FAULT_RETURN, hole() as u64, 0, 0, 0, 0, 0);
    check!(
        r == -errno::EFAULT,
        "fault_return of an unmapped frame: {}",
        r
    );
    // IOPL, NT, RF, VM, AC, VIF, VIP: IOPL, NT, RF, VM, VIF and VIP never reach ring 3.
    const IF: u64 = 1 << 9;
    const PRIVILEGED: u64 = (3 << 12) | (1 << 14) | (1 << 16) | (1 << 17) | (1 << 19) | (1 << 20);
    let after = forged_return(PRIVILEGED | (1 << 18));
    check!(
        after & PRIVILEGED == 0 && after & IF != 0,
        "rflags after fault_return: {:#x}",
        after
    );
    let (status, addr) = child(case_kernel_rip);
    check!(
        status == ws::KILLED | 13 && addr == 0xFFFF_8000_0000_1000,
        "a frame with a kernel rip: {:#x} at {:#x}",
        status,
        addr
    );
    println!("PASS forged frames");
}

/// Runs `case` in a forked child; its status and address.
fn child(case: fn() -> u64) -> (u64, u64) {
    let vm = vm();
    match vm.fork() {
        Ok(0) => exit(case()),
        Ok(pid) => vm.wait(pid).unwrap_or((u64::MAX, 0)),
        Err(e) => {
            check!(false, "fork: {:?}", e);
            (0, 0)
        }
    }
}

fn main(_: Start) -> u64 {
    let before = vm().global_stats().map(|g| g.faults_handled).unwrap_or(0);
    for case in [case_map, case_protect, case_skip] {
        let (status, _) = child(case);
        check!(ws::code(status) == Some(0), "a case ended {:#x}", status);
    }
    let after = vm().global_stats().map(|g| g.faults_handled).unwrap_or(0);
    check!(
        after == before + 3,
        "faults_handled {} then {}",
        before,
        after
    );
    let (status, addr) = child(case_nested);
    check!(
        ws::code(status).is_none() && ws::reason(status) == ws::MAPERR && addr == NESTED_ADDR,
        "nested: {:#x} at {:#x}",
        status,
        addr
    );
    println!("PASS a fault inside the handler kills");
    for (case, name) in [
        (case_nostack as fn() -> u64, "no stack"),
        (case_removed, "removed"),
    ] {
        let (status, _) = child(case);
        check!(
            ws::code(status).is_none() && ws::reason(status) == ws::MAPERR,
            "{}: {:#x}",
            name,
            status
        );
    }
    println!("PASS without a usable handler the process is killed");
    forged();
    // Registration errors, as sigaltstack answers them.
    let vm = vm();
    let bad = vm.set_fault_handler(1 << 47, 0x1000_0000, 8192);
    check!(
        bad.map_err(|e| e.errno()) == Err(errno::EINVAL as i32),
        "an entry outside the user half: {:?}",
        bad
    );
    let small = vm.set_fault_handler(0x40_0000, 0x1000_0000, 1024);
    check!(
        small.map_err(|e| e.errno()) == Err(errno::ENOMEM as i32),
        "a small stack: {:?}",
        small
    );
    println!("PASS fault handlers");
    0
}
