//! Faults a process handles itself (`sigaction(SIGSEGV, SA_SIGINFO | SA_ONSTACK)` with
//! `sigaltstack`, as Linux's selftests and LTP's sigaltstack cases use them): registration and
//! its errors, the frame written on the alternate stack, the handler changing mappings and
//! the access retried, and every case that kills as without a handler.

use kernel_shim::abi::fault_frame as ff;
use kernel_shim::abi::{ACCESS_WRITE, PAGE_FAULT};
use libvm::fault::{MIN_STACK, SEGV_ACCERR, SEGV_MAPERR, SIGSEGV};
use libvm::{MmapFlags, ProtectionFlags as P, VmError};
use memd::Pid;
use testbed::system::{Config, Fault, FaultKind, System};

const PAGE: usize = 4096;
const ENTRY: u64 = 0x40_1000;
const STACK_LEN: usize = 4 * PAGE;

fn anon() -> MmapFlags {
    MmapFlags::anonymous_private()
}

/// A system with one process that registered a handler on a fresh alternate stack; the stack.
fn with_handler() -> (System, Pid, usize) {
    let sys = System::new(Config::default());
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let stack = vm.mmap(0, STACK_LEN, P::READ_WRITE, anon()).unwrap();
    assert_eq!(
        vm.set_fault_handler(ENTRY, stack as u64, STACK_LEN as u64),
        Ok(0)
    );
    (sys, p, stack)
}

/// A page that was mapped and is not any more.
fn hole(sys: &System, p: Pid) -> usize {
    let vm = sys.client(p);
    let a = vm.mmap(0, PAGE, P::READ_WRITE, anon()).unwrap();
    vm.munmap(a, PAGE).unwrap();
    a
}

/// The frame's words at `frame`.
fn frame_words(sys: &System, p: Pid, frame: u64) -> Vec<u64> {
    // Read while the process runs its handler: the frame is on its alternate stack.
    let bytes = sys.read(p, frame, ff::BYTES as usize).unwrap();
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn handled(fault: Fault) -> (u32, u32, u64) {
    match fault.kind {
        FaultKind::Handled {
            signal,
            code,
            frame,
        } => (signal, code, frame),
        other => panic!("not delivered: {other:?}"),
    }
}

#[test]
fn registration_errors_are_sigaltstacks_and_change_nothing() {
    // Pins: an entry or stack outside the user half is EINVAL, a stack below MINSIGSTKSZ is
    // ENOMEM (sigaltstack), and a refused registration keeps the handler there was; entry 0
    // removes it and the call answers the entry registered before.
    let (sys, p, stack) = with_handler();
    let vm = sys.client(p);
    let s = stack as u64;
    for (entry, at, len, err) in [
        (1u64 << 47, s, STACK_LEN as u64, VmError::InvalidAddress),
        (u64::MAX, s, STACK_LEN as u64, VmError::InvalidAddress),
        (ENTRY, u64::MAX - 100, 4096, VmError::InvalidAddress),
        (ENTRY, (1 << 47) - 4096, 8192, VmError::InvalidAddress),
        (ENTRY, s, MIN_STACK - 1, VmError::OutOfMemory),
        (ENTRY, s, 0, VmError::OutOfMemory),
    ] {
        assert_eq!(vm.set_fault_handler(entry, at, len), Err(err), "{entry:#x}");
    }
    assert_eq!(
        vm.set_fault_handler(ENTRY + 16, s, MIN_STACK),
        Ok(ENTRY),
        "the old entry answered"
    );
    assert_eq!(vm.set_fault_handler(0, 0, 0), Ok(ENTRY + 16));
    assert_eq!(vm.set_fault_handler(0, 0, 0), Ok(0));
}

#[test]
fn an_unmapped_load_is_delivered_with_its_frame_and_retried_after_the_handler_maps_it() {
    // Pins: SIGSEGV with SEGV_MAPERR, the address and a read access in the frame at the top of
    // the alternate stack (16-byte aligned); the process lives; once the handler maps the page
    // and returns, the load is retried and reads the new page's zeros.
    let (sys, p, stack) = with_handler();
    let a = hole(&sys, p);
    let handled_before = sys.client(p).global_stats().unwrap().faults_handled;
    let fault = sys.read(p, a as u64 + 8, 8).unwrap_err();
    let (signal, code, frame) = handled(fault);
    assert_eq!((signal, code), (SIGSEGV, SEGV_MAPERR));
    assert_eq!(fault.addr, a as u64 + 8);
    assert_eq!(frame % 16, 0);
    assert_eq!(frame, (stack + STACK_LEN) as u64 - ff::BYTES);
    let w = frame_words(&sys, p, frame);
    assert_eq!(w[ff::SIGNAL], u64::from(SIGSEGV));
    assert_eq!(w[ff::CODE], u64::from(SEGV_MAPERR));
    assert_eq!(w[ff::ADDR], a as u64 + 8);
    assert_eq!(w[ff::ACCESS], 0, "a read");
    assert_eq!(w[ff::VECTOR], PAGE_FAULT);
    let stats = sys.client(p).global_stats().unwrap();
    assert_eq!(stats.faults_handled, handled_before + 1);
    // The handler maps the page and returns.
    let vm = sys.client(p);
    assert_eq!(vm.mmap(a, PAGE, P::READ_WRITE, anon().fixed()), Ok(a));
    assert!(sys.handler_return(p));
    assert_eq!(sys.read(p, a as u64 + 8, 8).unwrap(), vec![0; 8]);
    assert!(sys.reap(p).is_none(), "alive");
}

#[test]
fn a_store_to_read_only_memory_is_accerr_and_the_handler_may_unprotect_it() {
    // Pins: a write barrier: SEGV_ACCERR with a write access; after mprotect in the handler the
    // store is retried and lands.
    let (sys, p, _) = with_handler();
    let vm = sys.client(p);
    let a = vm.mmap(0, PAGE, P::READ, anon()).unwrap();
    let fault = sys.write(p, a as u64, &[7]).unwrap_err();
    let (signal, code, frame) = handled(fault);
    assert_eq!((signal, code), (SIGSEGV, SEGV_ACCERR));
    assert_eq!(frame_words(&sys, p, frame)[ff::ACCESS], ACCESS_WRITE);
    vm.mprotect(a, PAGE, P::READ_WRITE).unwrap();
    assert!(sys.handler_return(p));
    sys.write(p, a as u64, &[7]).unwrap();
    assert_eq!(sys.read(p, a as u64, 1).unwrap(), vec![7]);
}

#[test]
fn a_fault_inside_the_handler_kills_as_without_one() {
    // Pins: while the thread runs on its alternate stack, a refused fault is not delivered
    // again: the process dies with the fault's reason, as Linux's default (SIGSEGV blocked in
    // its own handler).
    let (sys, p, _) = with_handler();
    let a = hole(&sys, p);
    handled(sys.read(p, a as u64, 1).unwrap_err());
    assert_eq!(sys.read(p, a as u64, 1), Err(Fault::unmapped(a as u64)));
    assert!(matches!(sys.reap(p), Some(memd::Death::Killed(_))));
}

#[test]
fn after_the_handler_returns_the_next_fault_is_delivered_again() {
    // Pins: a handler runs for every fault, not once.
    let (sys, p, _) = with_handler();
    let a = hole(&sys, p);
    for _ in 0..3 {
        handled(sys.read(p, a as u64, 1).unwrap_err());
        assert!(sys.handler_return(p));
    }
    assert_eq!(
        sys.client(p).global_stats().unwrap().faults_handled,
        3,
        "three deliveries"
    );
}

#[test]
fn an_alternate_stack_that_cannot_hold_the_frame_kills() {
    // Pins: no frame, no handler: an unmapped alternate stack, a read-only one, and one the
    // process unmapped after registering it: the process dies with the fault's own reason.
    for case in 0..3 {
        let sys = System::new(Config::default());
        let p = sys.spawn().unwrap();
        let vm = sys.client(p);
        let stack = vm.mmap(0, STACK_LEN, P::READ_WRITE, anon()).unwrap();
        match case {
            0 => vm.munmap(stack, STACK_LEN).unwrap(),
            1 => vm.mprotect(stack, STACK_LEN, P::READ).unwrap(),
            _ => {}
        }
        vm.set_fault_handler(ENTRY, stack as u64, STACK_LEN as u64)
            .unwrap();
        if case == 2 {
            vm.munmap(stack + STACK_LEN - PAGE, PAGE).unwrap();
        }
        let a = hole(&sys, p);
        assert_eq!(
            sys.read(p, a as u64, 1),
            Err(Fault::unmapped(a as u64)),
            "case {case}"
        );
        assert!(sys.reap(p).is_some(), "case {case}: dead");
    }
}

#[test]
fn a_removed_handler_kills_as_none() {
    let (sys, p, _) = with_handler();
    sys.client(p).set_fault_handler(0, 0, 0).unwrap();
    let a = hole(&sys, p);
    assert_eq!(sys.read(p, a as u64, 1), Err(Fault::unmapped(a as u64)));
}

#[test]
fn a_fork_keeps_the_handler_and_the_frame_breaks_copy_on_write_of_the_stack() {
    // Pins: the child inherits the handler (fork keeps sigaction and sigaltstack); the frame
    // written on the child's alternate stack, shared copy-on-write with the parent, leaves the
    // parent's stack as it was.
    let (sys, p, stack) = with_handler();
    let top = (stack + STACK_LEN - PAGE) as u64;
    sys.write(p, top, &[0xAB; 64]).unwrap();
    let child = sys.fork(p).unwrap();
    let a = hole(&sys, child);
    let (_, _, frame) = handled(sys.read(child, a as u64, 1).unwrap_err());
    assert_eq!(frame_words(&sys, child, frame)[ff::ADDR], a as u64);
    assert_eq!(
        sys.read(p, top, 64).unwrap(),
        vec![0xAB; 64],
        "parent's stack"
    );
    let spawned = sys.spawn().unwrap();
    let b = hole(&sys, spawned);
    assert_eq!(
        sys.read(spawned, b as u64, 1),
        Err(Fault::unmapped(b as u64)),
        "a new program has no handler"
    );
}

#[test]
fn out_of_memory_is_never_delivered() {
    // Pins: a fault that cannot be served for want of frames is the out-of-memory policy's,
    // never the handler's.
    let sys = System::new(Config {
        ram_bytes: 2 << 20,
        ..Config::default()
    });
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let stack = vm.mmap(0, STACK_LEN, P::READ_WRITE, anon()).unwrap();
    vm.set_fault_handler(ENTRY, stack as u64, STACK_LEN as u64)
        .unwrap();
    let big = vm.mmap(0, 4 << 20, P::READ_WRITE, anon()).unwrap();
    let mut outcome = Ok(());
    for i in 0..(4 << 20) / PAGE {
        outcome = sys.write(p, (big + i * PAGE) as u64, &[1]);
        if outcome.is_err() {
            break;
        }
    }
    let fault = outcome.unwrap_err();
    assert_eq!(fault.kind, FaultKind::OutOfMemory);
}

#[test]
fn each_thread_has_its_own_alternate_stack_and_one_without_gets_the_frame_on_its_own_stack() {
    // Pins: sigaltstack is per thread. Two threads faulting at once each get the frame at the
    // top of their own alternate stack (never one frame over the other); a thread without one
    // gets it below the red zone under its stack pointer, as Linux does; a fault on a thread's
    // alternate stack kills (inside its handler) while another thread's stack pointer there
    // is only that thread's business; SS_DISABLE (stack and length 0) takes a thread's stack
    // away; a fork's child keeps the forking thread's stack only; the table is bounded.
    use memd::fault_handler::MAX_ALT_STACKS;
    use memd::{Access, FaultOutcome};
    let sys = System::new(Config::default());
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let area = vm.mmap(0, 3 * STACK_LEN, P::READ_WRITE, anon()).unwrap() as u64;
    let (s1, s2, own) = (area, area + STACK_LEN as u64, area + 2 * STACK_LEN as u64);
    let len = STACK_LEN as u64;
    let memd = sys.memd();
    let (t1, t2, t3) = (0x1_0007, 0x2_0009, 0x3_000B);
    assert_eq!(memd.set_fault_handler(p, t1, ENTRY, s1, len), Ok(0));
    assert_eq!(memd.set_fault_handler(p, t2, ENTRY, s2, len), Ok(ENTRY));
    let a = hole(&sys, p) as u64;
    let frame_of = |thread, sp| match memd.handle_fault(p, thread, a, Access::Read, sp) {
        FaultOutcome::Deliver { delivery, .. } => Some(delivery.frame),
        FaultOutcome::Kill(_) => None,
        other => panic!("{other:?}"),
    };
    let top = |s: u64| (s + len - ff::BYTES) & !15;
    let sp = own + len - 64;
    assert_eq!(frame_of(t1, sp), Some(top(s1)));
    assert_eq!(frame_of(t2, sp), Some(top(s2)));
    assert_eq!(
        frame_of(t3, sp),
        Some((sp - 128 - ff::BYTES) & !15),
        "below the red zone"
    );
    // t2 runs its handler: a fault there kills; t1's stack pointer on t2's stack is not on
    // its own.
    assert_eq!(frame_of(t1, s2 + 512), Some(top(s1)));
    assert_eq!(frame_of(t2, s2 + 512), None, "a fault inside the handler");
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let area = vm.mmap(0, 3 * STACK_LEN, P::READ_WRITE, anon()).unwrap() as u64;
    let (s1, s2, own) = (area, area + len, area + 2 * len);
    let sp = own + len - 64;
    let a = hole(&sys, p) as u64;
    let frame_of = |pid, thread, sp| match memd.handle_fault(pid, thread, a, Access::Read, sp) {
        FaultOutcome::Deliver { delivery, .. } => Some(delivery.frame),
        FaultOutcome::Kill(_) => None,
        other => panic!("{other:?}"),
    };
    memd.set_fault_handler(p, t1, ENTRY, s1, len).unwrap();
    let booked = memd.bookkeeping();
    memd.set_fault_handler(p, t2, ENTRY, s2, len).unwrap();
    assert_eq!(
        memd.bookkeeping(),
        booked + memd::daemon::ALT_STACK_COST,
        "each stack is counted in memd's bookkeeping"
    );
    // SS_DISABLE: t2 has none, the handler stays.
    assert_eq!(memd.set_fault_handler(p, t2, ENTRY, 0, 0), Ok(ENTRY));
    assert_eq!(memd.bookkeeping(), booked);
    assert_eq!(frame_of(p, t2, sp), Some((sp - 128 - ff::BYTES) & !15));
    memd.set_fault_handler(p, t2, ENTRY, s2, len).unwrap();
    // The child of t1's fork: its one thread has t1's stack, even before the host names it
    // (0x5_0001), and only that one; once named, another thread id has none.
    let child = memd.fork(p, t1).unwrap();
    assert_eq!(
        frame_of(child, 0x5_0001, sp),
        Some(top(s1)),
        "not named yet"
    );
    memd.forked_thread(child, 0x5_0001);
    assert_eq!(frame_of(child, 0x5_0001, sp), Some(top(s1)));
    assert_eq!(frame_of(child, t2, sp), Some((sp - 128 - ff::BYTES) & !15));
    // A child of t2's fork whose thread registers a stack of its own before it is named: that
    // one, not the inherited one.
    let other = memd.fork(p, t2).unwrap();
    memd.set_fault_handler(other, 0x6_0001, ENTRY, s1, len)
        .unwrap();
    memd.forked_thread(other, 0x6_0001);
    assert_eq!(frame_of(other, 0x6_0001, sp), Some(top(s1)));
    assert_eq!(
        frame_of(p, t2, sp),
        Some(top(s2)),
        "the parent's are its own"
    );
    // Bounded: room for MAX_ALT_STACKS threads; one more is refused and changes nothing, a
    // thread that has one may move it, and one given back makes room.
    for t in 0..MAX_ALT_STACKS as u64 - 2 {
        assert_eq!(
            memd.set_fault_handler(p, 0x100 + t, ENTRY, s1, len),
            Ok(ENTRY)
        );
    }
    assert_eq!(
        memd.set_fault_handler(p, t3, ENTRY + 16, s1, len),
        Err(VmError::LimitExceeded)
    );
    assert_eq!(frame_of(p, t3, sp), Some((sp - 128 - ff::BYTES) & !15));
    assert_eq!(memd.set_fault_handler(p, t2, ENTRY, s1, len), Ok(ENTRY));
    assert_eq!(frame_of(p, t2, sp), Some(top(s1)), "moved");
    assert_eq!(memd.set_fault_handler(p, 0x100, ENTRY, 0, 0), Ok(ENTRY));
    assert_eq!(memd.set_fault_handler(p, t3, ENTRY, s2, len), Ok(ENTRY));
    assert_eq!(frame_of(p, t3, sp), Some(top(s2)));
    // Entry 0: no handler, no stack: the fault kills.
    assert_eq!(memd.set_fault_handler(p, t1, 0, 0, 0), Ok(ENTRY));
    assert_eq!(frame_of(p, t3, sp), None);
}

#[test]
fn a_delivery_makes_an_alternate_stack_page_writable_that_a_fork_left_read_only() {
    // Pins: after a fork whose child has exited, the stack's pages are the parent's alone
    // again but still mapped read-only from their shared days; the delivery maps them
    // writable (as a write fault would) instead of the kernel refusing the frame.
    let (sys, p, stack) = with_handler();
    let top = stack + STACK_LEN - PAGE;
    sys.write(p, top as u64, &[7; 8]).unwrap();
    let child = sys.fork(p).unwrap();
    sys.exit(child, 0).unwrap();
    let a = hole(&sys, p);
    let (signal, code, frame) = handled(sys.read(p, a as u64, 8).unwrap_err());
    assert_eq!((signal, code), (SIGSEGV, SEGV_MAPERR));
    assert!((top as u64..(stack + STACK_LEN) as u64).contains(&frame));
    assert_eq!(frame_words(&sys, p, frame)[ff::ADDR], a as u64);
}
