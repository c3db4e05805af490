//! The scheduler: one run queue for every processor, round robin, a time slice of
//! [`SLICE_TICKS`] ticks of the processor's own timer, and the switch (FPU state, address
//! space, TLS base, registers) to the chosen thread. A thread runs wherever a processor
//! takes it from the queue, so threads move between processors freely.
//!
//! Each processor keeps its own [`Cpu`] record (the thread it runs, its slice, whose FPU state
//! its registers hold), under the kernel lock like all the rest. A processor with nothing to
//! run loads the kernel's own tables, gives its FPU state back to its owner's slot, and halts
//! with interrupts on ([`trap::idle_wait`]); the processor that leaves a thread on the run
//! queue at the end of an entry wakes one idle processor with the reschedule interrupt.
//!
//! The FPU rule: a thread's x87/SSE state is either in its slot or in the registers of the
//! one processor running it (or that ran it last and has run nothing since, without going
//! idle). A processor saves its owner's state before it loads another's and before it idles,
//! both under the lock, so a thread taken from the queue by any processor finds its state in
//! its slot.
//!
//! When no thread is ready and no processor runs one, none ever will be (the kernel has no
//! timers and no interrupts for processes), so the machine powers off cleanly.
//!
//! A thread whose saved RIP is outside the user half cannot be resumed
//! ([`trap::return_to_user`] refuses it): it is killed as a #GP and the next thread runs.

use super::lapic;
use super::lock;
use super::percpu::{self, MAX_RUN_CPUS};
use super::power;
use super::pt;
use super::shootdown;
use super::state::Kernel;
use super::thread::State;
use super::timer::TIMER_VECTOR;
use super::trap::{self, GENERAL_PROTECTION, RESCHEDULE_VECTOR};

/// Timer ticks (about 1 ms each) a thread runs before another ready thread gets the CPU.
pub const SLICE_TICKS: u32 = 10;

/// What the scheduler keeps per processor.
#[derive(Clone, Copy, Debug)]
pub struct Cpu {
    /// The thread on this processor (or the one that was, until the scheduler picks the next).
    pub current: Option<usize>,
    /// Whether the current thread must give up the processor at the end of this entry.
    pub preempt: bool,
    /// Ticks left in the current thread's slice.
    pub slice_left: u32,
    /// The thread whose x87/SSE state is in this processor's FPU registers.
    pub fpu_owner: Option<usize>,
    /// The thread whose TLS (FS) base is loaded.
    pub fs_of: Option<usize>,
    /// Halted with nothing to run, and not yet sent a reschedule interrupt.
    pub idle: bool,
    /// Running the kernel.
    pub online: bool,
}

impl Cpu {
    /// A processor not started.
    pub const OFF: Cpu = Cpu {
        current: None,
        preempt: false,
        slice_left: 0,
        fpu_owner: None,
        fs_of: None,
        idle: false,
        online: false,
    };
}

/// A timer tick of this processor: the first one counts time; each preempts its current
/// thread when its slice is used up.
pub fn tick(k: &mut Kernel) {
    let me = percpu::index();
    if me == 0 {
        k.ticks += 1;
    }
    super::timer::end_of_interrupt(TIMER_VECTOR);
    let cpu = &mut k.cpus[me];
    cpu.slice_left = cpu.slice_left.saturating_sub(1);
    if cpu.slice_left == 0 {
        cpu.preempt = true;
    }
}

/// Ends a kernel entry: keeps this processor's thread if it is still running and not
/// preempted, else runs the next ready one, else idles. Gives the kernel lock back on the
/// way out.
pub fn run(k: &mut Kernel) -> ! {
    loop {
        let Some(next) = pick(k) else { idle(k) };
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
/// address space are the processor's already, so [`run`]'s pick and switch are skipped (an
/// idle processor is woken first if the call left a thread ready). Returns only when `t` does
/// not go back that way ([`run`] then decides, and kills a thread whose frame cannot return to
/// ring 3).
#[inline(always)]
pub fn resume_caller(k: &mut Kernel, t: usize) {
    let me = percpu::index();
    if k.cpus[me].current == Some(t) && k.threads[t].state == State::Running && !k.cpus[me].preempt
    {
        wake_idle(k);
        // Returns only if the frame cannot go back to ring 3: `run` kills the thread.
        let _refused = trap::return_from_syscall(&mut k.threads[t].frame);
    }
}

/// The thread this processor runs next: its current one if it still runs and is not
/// preempted (or nothing else is ready), else the first ready one; `None` when there is none.
/// Powers off when no processor has anything to run.
fn pick(k: &mut Kernel) -> Option<usize> {
    let me = percpu::index();
    let keep = match k.cpus[me].current {
        Some(c) if k.threads[c].state == State::Running && k.threads[c].cpu as usize == me => {
            if k.cpus[me].preempt && !k.run_queue.is_empty() {
                k.make_ready(c);
                None
            } else {
                Some(c)
            }
        }
        _ => None,
    };
    k.cpus[me].preempt = false;
    let next = match keep {
        Some(c) => c,
        None => {
            let n = k.run_queue.pop(k.threads);
            k.cpus[me].current = None;
            match n {
                Some(n) => {
                    k.cpus[me].slice_left = SLICE_TICKS;
                    n
                }
                None if k.cpus.iter().any(|c| c.current.is_some()) => return None,
                None => power_off(k),
            }
        }
    };
    if k.cpus[me].slice_left == 0 {
        k.cpus[me].slice_left = SLICE_TICKS;
    }
    Some(next)
}

/// Sends the reschedule interrupt to one idle processor if a thread waits on the run queue.
#[inline(always)]
pub fn wake_idle(k: &mut Kernel) {
    if shootdown::running() <= 1 || k.run_queue.is_empty() {
        return;
    }
    if let Some(c) = (0..MAX_RUN_CPUS).find(|&c| k.cpus[c].online && k.cpus[c].idle) {
        k.cpus[c].idle = false;
        lapic::ipi(shootdown::apic_id(c), RESCHEDULE_VECTOR as u32);
    }
}

/// Switches this processor to thread `t` and returns to ring 3 in it (giving the lock back);
/// returns only if its frame cannot go back to ring 3 (it is then the current thread, running,
/// for the caller to kill, and the lock is still held).
fn switch_to(k: &mut Kernel, t: usize) -> trap::OutsideUserHalf {
    let me = percpu::index();
    k.cpus[me].current = Some(t);
    k.threads[t].state = State::Running;
    k.threads[t].cpu = me as u8;
    if k.cpus[me].fpu_owner != Some(t) {
        if let Some(o) = k.cpus[me].fpu_owner {
            k.threads[o].fpu.save();
        }
        k.threads[t].fpu.restore();
        k.cpus[me].fpu_owner = Some(t);
    }
    if k.cpus[me].fs_of != Some(t) {
        load_fs_base(k, t);
    }
    pt::activate(k.spaces[k.threads[t].space].root);
    wake_idle(k);
    trap::return_to_user(&mut k.threads[t].frame)
}

/// Loads thread `t`'s TLS base into this processor's FS base (`t` runs here).
pub fn load_fs_base(k: &mut Kernel, t: usize) {
    let base = k.threads[t].fs_base;
    k.cpus[percpu::index()].fs_of = Some(t);
    // SAFETY: the FS base MSR exists on every x86_64 processor; the kernel never uses FS, and
    // the value is a user address checked when it was set (below the user-half end), so ring 3
    // gets the base it asked for and nothing else changes.
    unsafe { x86_64::registers::model_specific::Msr::new(0xC000_0100).write(base) };
}

/// Idles this processor: its FPU state back to its owner's slot, the kernel's tables loaded
/// (no translation of any space stays here), the lock given back, halted until an interrupt.
fn idle(k: &mut Kernel) -> ! {
    let me = percpu::index();
    if let Some(o) = k.cpus[me].fpu_owner.take() {
        k.threads[o].fpu.save();
    }
    k.cpus[me].current = None;
    k.cpus[me].idle = true;
    pt::activate(k.kernel_root);
    lock::release();
    trap::idle_wait()
}

fn power_off(k: &mut Kernel) -> ! {
    let waiting = k.threads.iter().filter(|t| t.state != State::Free).count();
    log::info!(
        "kernel-shim: no thread can run ({} waiting, {} kernel frames in use, {} shootdown \
         rounds); powering off",
        waiting,
        k.frames.in_use(),
        shootdown::rounds()
    );
    power::exit(power::EXIT_CLEAN)
}
