//! The scheduler: round robin over the ready threads, a time slice of [`SLICE_TICKS`] timer
//! ticks, and the switch (FPU state, address space, registers) to the chosen thread.
//!
//! When no thread is ready, none ever will be (the kernel has no timers and no interrupts for
//! processes), so the machine powers off cleanly.

use super::power;
use super::pt;
use super::state::Kernel;
use super::thread::State;
use super::timer::TIMER_VECTOR;
use super::trap::resume;

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
        None => match k.run_queue.pop(&mut k.threads) {
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
    switch_to(k, next)
}

fn switch_to(k: &mut Kernel, t: usize) -> ! {
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
    let frame = &raw const k.threads[t].frame;
    // SAFETY: the frame of a user thread is always a valid ring-3 frame: the kernel builds it
    // from `TrapFrame::user` or saves it on entry from ring 3, and only changes
    // general-purpose registers afterwards. It lives in the static thread table.
    unsafe { resume(frame) }
}

fn power_off(k: &mut Kernel) -> ! {
    let waiting = k.threads.iter().filter(|t| t.state != State::Free).count();
    kprintln!(
        "kernel-shim: no thread can run ({} waiting, {} kernel frames in use); powering off",
        waiting,
        k.frames.in_use()
    );
    power::exit(power::EXIT_CLEAN)
}
