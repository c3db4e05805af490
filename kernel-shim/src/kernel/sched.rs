//! The scheduler: round robin over the ready threads, a time slice of [`SLICE_TICKS`] timer
//! ticks, and the switch (FPU state, address space, registers) to the chosen thread.
//!
//! When no thread is ready, none ever will be (the kernel has no timers and no interrupts for
//! processes), so the machine powers off cleanly.
//!
//! A thread whose saved RIP is outside the user half cannot be resumed
//! ([`trap::return_to_user`] refuses it): it is killed as a #GP and the next thread runs.

use super::power;
use super::pt;
use super::state::Kernel;
use super::thread::State;
use super::timer::TIMER_VECTOR;
use super::trap::{self, GENERAL_PROTECTION};

/// Timer ticks (about 1 ms each) a thread runs before another ready thread gets the CPU.
pub const SLICE_TICKS: u32 = 10;

/// A timer tick: counts time; preempts the current thread when its slice is used up.
pub fn tick(k: &mut Kernel) {
    k.ticks += 1;
    super::timer::end_of_interrupt(TIMER_VECTOR);
    k.slice_left = k.slice_left.saturating_sub(1);
    if k.slice_left == 0 {
        k.preempt = true;
    }
}

/// Ends a kernel entry: keeps the current thread if it is still running and not preempted,
/// else runs the next ready one.
pub fn run(k: &mut Kernel) -> ! {
    loop {
        let next = pick(k);
        let refused = switch_to(k, next);
        log::warn!(
            "kernel-shim: thread {:#x} cannot return to {:#x}, outside the user half",
            k.thread_id(next),
            refused.rip
        );
        k.kill(
            next,
            GENERAL_PROTECTION,
            refused.rip,
            "a return outside the user half",
        );
    }
}

/// After a system call of thread `t`: straight back to it when it still runs and nothing asks
/// for another (no block, no exit, no yield, its slice not used up): its FPU state and its
/// address space are the CPU's already, so [`run`]'s pick and switch are skipped. Returns
/// only when `t` does not go back that way ([`run`] then decides, and kills a thread whose
/// frame cannot return to ring 3).
#[inline(always)]
pub fn resume_caller(k: &mut Kernel, t: usize) {
    if k.current == Some(t) && k.threads[t].state == State::Running && !k.preempt {
        // Returns only if the frame cannot go back to ring 3: `run` kills the thread.
        let _refused = trap::return_from_syscall(&mut k.threads[t].frame);
    }
}

/// The thread to run next (powers off when there is none).
fn pick(k: &mut Kernel) -> usize {
    let keep = match k.current {
        Some(c) if k.threads[c].state == State::Running => {
            if k.preempt && !k.run_queue.is_empty() {
                k.make_ready(c);
                None
            } else {
                Some(c)
            }
        }
        _ => None,
    };
    k.preempt = false;
    let next = match keep {
        Some(c) => c,
        None => match k.run_queue.pop(k.threads) {
            Some(n) => {
                k.slice_left = SLICE_TICKS;
                n
            }
            None => power_off(k),
        },
    };
    if k.slice_left == 0 {
        k.slice_left = SLICE_TICKS;
    }
    next
}

/// Switches to thread `t` and returns to ring 3 in it; returns only if its frame cannot go
/// back to ring 3 (it is then the current thread, running, for the caller to kill).
fn switch_to(k: &mut Kernel, t: usize) -> trap::OutsideUserHalf {
    k.current = Some(t);
    k.threads[t].state = State::Running;
    if k.fpu_owner != Some(t) {
        if let Some(o) = k.fpu_owner {
            k.threads[o].fpu.save();
        }
        k.threads[t].fpu.restore();
        k.fpu_owner = Some(t);
    }
    pt::activate(k.spaces[k.threads[t].space].root);
    trap::return_to_user(&mut k.threads[t].frame)
}

fn power_off(k: &mut Kernel) -> ! {
    let waiting = k.threads.iter().filter(|t| t.state != State::Free).count();
    log::info!(
        "kernel-shim: no thread can run ({} waiting, {} kernel frames in use); powering off",
        waiting,
        k.frames.in_use()
    );
    power::exit(power::EXIT_CLEAN)
}
