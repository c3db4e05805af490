//! The scheduler: one run queue for every processor, round robin, a time slice of
//! [`SLICE_TICKS`] ticks of the processor's own timer, and the switch (FPU state, address
//! space, TLS base, registers) to the chosen thread. A thread runs wherever a processor
//! takes it from the queue, so threads move between processors freely.
//!
//! It runs in shared entries as in exclusive ones ([`super::lock`]): each processor keeps its
//! own [`Cpu`] record, which only it touches (an exclusive entry excepted); the run queue has
//! its own lock; a thread the processor runs is its own, and so is a thread it took off a
//! queue.
//!
//! **Hand-off.** When the thread a processor runs blocks and makes one other thread ready in
//! the same entry (a fault sent to a waiting pager thread, a reply whose server then waits for
//! the next message), that thread runs next on this processor without going through the run
//! queue ([`Kernel::wake`]), as seL4's IPC does: the fault path takes no lock of the
//! scheduler's.
//!
//! **Registers beyond the frame.** A thread's x87/SSE state and TLS base are in its slot
//! whenever it does not run: the processor that stops running it ([`Kernel::park`]) saves
//! them before anyone else can take the thread, and a processor loads them when it switches
//! to a thread ([`Cpu::loaded`]); a system call answered at once touches neither.
//!
//! **Idle.** A processor with nothing to run marks itself idle under the run queue's lock,
//! loads the kernel's own tables and halts with interrupts on ([`trap::idle_wait`]); a
//! processor that puts a thread on the queue wakes one idle processor with the reschedule
//! interrupt, choosing it under the same lock, so no wake-up is lost. When every processor is
//! idle and the queue is empty, no thread will ever run (the kernel has no timers and no
//! interrupts for processes), so the machine powers off cleanly.
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
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Timer ticks (about 1 ms each) a thread runs before another ready thread gets the CPU.
pub const SLICE_TICKS: u32 = 10;

/// Timer ticks since boot (the first processor's), which `clock` reads without any lock.
pub static TICKS: AtomicU64 = AtomicU64::new(0);

/// What the scheduler keeps per processor, touched only by that processor (or by an
/// exclusive entry).
#[derive(Clone, Copy, Debug)]
pub struct Cpu {
    /// The thread running on this processor: `Some` only while it runs here.
    pub current: Option<usize>,
    /// The thread to run next, handed off in this entry (see the module doc).
    pub handoff: Option<usize>,
    /// Whether the current thread must give up the processor at the end of this entry.
    pub preempt: bool,
    /// Ticks left in the current thread's slice.
    pub slice_left: u32,
    /// The thread whose x87/SSE state and TLS base are in this processor's registers (the
    /// current one, or none).
    pub loaded: Option<usize>,
}

impl Cpu {
    /// A processor not started.
    pub const OFF: Cpu = Cpu {
        current: None,
        handoff: None,
        preempt: false,
        slice_left: 0,
        loaded: None,
    };
}

/// One processor's scheduling state: its record, and the two flags others read.
pub struct CpuSlot {
    record: UnsafeCell<Cpu>,
    /// Halted (or about to halt) with nothing to run; set and cleared under the run queue's
    /// lock.
    pub idle: AtomicBool,
    /// Running the kernel.
    pub online: AtomicBool,
}

// SAFETY: the record is touched only by its processor, or by an exclusive entry through
// `&mut` (see `CpuSlot::get_mut` and `Kernel::cpu`).
unsafe impl Sync for CpuSlot {}

impl CpuSlot {
    /// A processor not started.
    pub const fn off() -> CpuSlot {
        CpuSlot {
            record: UnsafeCell::new(Cpu::OFF),
            idle: AtomicBool::new(false),
            online: AtomicBool::new(false),
        }
    }

    /// The record, with no other reference possible.
    pub fn get_mut(&mut self) -> &mut Cpu {
        self.record.get_mut()
    }
}

impl Kernel {
    /// This processor's record.
    ///
    /// # Safety
    /// No other reference to this processor's record is live while the one returned is (it
    /// is touched by this processor alone, or by an exclusive entry that is this one).
    #[allow(clippy::mut_from_ref)]
    #[inline(always)]
    pub unsafe fn cpu(&self) -> &mut Cpu {
        // SAFETY: per the contract; the slot is this processor's.
        unsafe { &mut *self.cpus[percpu::index()].record.get() }
    }

    /// The thread this processor runs.
    #[inline(always)]
    pub fn current(&self) -> Option<usize> {
        // SAFETY: a read of this processor's own record, no reference kept.
        unsafe { self.cpu().current }
    }

    /// Thread `t` stops running on this processor, if it runs here: its FPU state goes to its
    /// slot and the processor no longer names it. Call before `t`'s new state is published
    /// (another processor may take it at once).
    #[inline(always)]
    pub fn park(&self, t: usize) {
        // SAFETY: this processor's record, no other reference live.
        let cpu = unsafe { self.cpu() };
        if cpu.current != Some(t) {
            return;
        }
        if cpu.loaded == Some(t) {
            // SAFETY: `t` runs here, so its slot is this processor's.
            unsafe { self.threads.slot(t) }.fpu.save();
            cpu.loaded = None;
        }
        cpu.current = None;
    }

    /// Makes thread `t` ready: the caller owns it (it took it off every queue, or made it).
    /// It runs next on this processor if this processor's thread stopped in this entry and
    /// nothing was handed off yet; else it joins the run queue, and an idle processor is woken.
    pub fn wake(&self, t: usize) {
        // SAFETY: this processor's record, no other reference live.
        let cpu = unsafe { self.cpu() };
        // SAFETY: the caller owns `t`.
        let th = unsafe { self.threads.slot(t) };
        th.state.set(State::Ready);
        if cpu.current.is_none() && cpu.handoff.is_none() {
            cpu.handoff = Some(t);
            return;
        }
        let mut rq = self.run_queue.lock();
        // SAFETY: the run queue's lock is held; `t` is the caller's.
        unsafe { rq.push(&self.threads, t) };
        let idle = self.take_idle();
        drop(rq);
        if let Some(c) = idle {
            lapic::ipi(shootdown::apic_id(c), RESCHEDULE_VECTOR as u32);
        }
    }

    /// An idle processor, no longer marked idle, to wake (call with the run queue's lock).
    fn take_idle(&self) -> Option<usize> {
        if shootdown::running() <= 1 {
            return None;
        }
        let me = percpu::index();
        let c = (0..MAX_RUN_CPUS).find(|&c| {
            c != me
                && self.cpus[c].online.load(Ordering::Relaxed)
                && self.cpus[c].idle.load(Ordering::Relaxed)
        })?;
        self.cpus[c].idle.store(false, Ordering::Relaxed);
        Some(c)
    }
}

/// A timer tick of this processor: the first one counts time; each preempts its current
/// thread when its slice is used up.
pub fn tick(k: &Kernel) {
    let me = percpu::index();
    if me == 0 {
        TICKS.fetch_add(1, Ordering::Relaxed);
    }
    super::timer::end_of_interrupt(TIMER_VECTOR);
    // SAFETY: this processor's record, no other reference live.
    let cpu = unsafe { k.cpu() };
    cpu.slice_left = cpu.slice_left.saturating_sub(1);
    if cpu.slice_left == 0 {
        cpu.preempt = true;
    }
}

/// Ends a kernel entry: keeps this processor's thread if it still runs and is not preempted,
/// else runs the thread handed off or the next ready one, else idles. Gives the mode lock
/// back on the way out. Call holding the mode lock, keeping no reference into kernel state.
pub fn run() -> ! {
    loop {
        // SAFETY: the mode lock is held, and the caller keeps no reference into the state.
        let k = unsafe { super::shared() };
        let Some(next) = pick(k) else { idle(k) };
        let refused = switch_to(k, next);
        // Killing is an exclusive entry's. `next` runs here; an exclusive entry that ran
        // meanwhile may have ended its process (this processor, made to leave, then names no
        // thread).
        lock::exclusive();
        // SAFETY: the mode lock is exclusive and `k` is not used again.
        let k = unsafe { super::kernel() };
        if k.current() != Some(next) {
            continue;
        }
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
/// address space are the processor's already, so [`run`]'s pick and switch are skipped.
/// Returns only when `t` does not go back that way ([`run`] then decides, and kills a thread
/// whose frame cannot return to ring 3).
#[inline(always)]
pub fn resume_caller(k: &Kernel, t: usize) {
    // SAFETY: this processor's record, no other reference live.
    let cpu = unsafe { k.cpu() };
    if cpu.current == Some(t) && !cpu.preempt && cpu.handoff.is_none() {
        // SAFETY: `t` runs here, so its slot is this processor's.
        let frame = &mut unsafe { k.threads.slot(t) }.frame;
        // Returns only if the frame cannot go back to ring 3: `run` kills the thread.
        let _refused = trap::return_from_syscall(frame);
    }
}

/// The thread this processor runs next: its current one if it still runs and is not
/// preempted (or nothing else is ready), else the one handed off, else the first ready one;
/// `None` when there is none (this processor is then marked idle, and the machine powers off
/// if every processor is).
fn pick(k: &Kernel) -> Option<usize> {
    let (current, preempt, handoff) = {
        // SAFETY: this processor's record; the reference ends in this block.
        let cpu = unsafe { k.cpu() };
        (
            cpu.current,
            core::mem::take(&mut cpu.preempt),
            cpu.handoff.take(),
        )
    };
    let next = match (current, handoff) {
        (Some(c), _) if !preempt => Some(c),
        (Some(c), _) => {
            let mut rq = k.run_queue.lock();
            if rq.is_empty() {
                Some(c)
            } else {
                k.park(c);
                // SAFETY: `c` ran here and was parked: it is this processor's until queued.
                unsafe { k.threads.slot(c) }.state.set(State::Ready);
                // SAFETY: the run queue's lock is held; `c` is this processor's.
                unsafe { rq.push(&k.threads, c) };
                // SAFETY: the run queue's lock is held.
                let next = unsafe { rq.pop(&k.threads) };
                // SAFETY: this processor's record, no other reference live.
                unsafe { k.cpu() }.slice_left = 0;
                next
            }
        }
        (None, Some(h)) => Some(h),
        (None, None) => {
            let mut rq = k.run_queue.lock();
            // SAFETY: the run queue's lock is held.
            let next = unsafe { rq.pop(&k.threads) };
            let me = percpu::index();
            k.cpus[me].idle.store(next.is_none(), Ordering::Relaxed);
            if next.is_some() {
                // SAFETY: this processor's record, no other reference live.
                unsafe { k.cpu() }.slice_left = 0;
            }
            if next.is_none()
                && k.cpus
                    .iter()
                    .all(|c| !c.online.load(Ordering::Relaxed) || c.idle.load(Ordering::Relaxed))
            {
                drop(rq);
                power_off(k);
            }
            next
        }
    };
    // SAFETY: this processor's record, no other reference live.
    let cpu = unsafe { k.cpu() };
    if cpu.slice_left == 0 {
        cpu.slice_left = SLICE_TICKS;
    }
    next
}

/// Switches this processor to thread `t` (its own: running here, handed off, or taken off the
/// run queue) and returns to ring 3 in it (giving the mode lock back); returns only if its
/// frame cannot go back to ring 3 (it is then the current thread, running, for the caller to
/// kill, and the lock is still held).
fn switch_to(k: &Kernel, t: usize) -> trap::OutsideUserHalf {
    // SAFETY: this processor's record, no other reference live.
    let cpu = unsafe { k.cpu() };
    // SAFETY: `t` is this processor's (see above).
    let th = unsafe { k.threads.slot(t) };
    cpu.current = Some(t);
    th.state.set(State::Running);
    th.cpu = percpu::index() as u8;
    if cpu.loaded != Some(t) {
        th.fpu.restore();
        write_fs_base(th.fs_base);
        cpu.loaded = Some(t);
    }
    pt::activate(k.spaces[th.space].root);
    trap::return_to_user(&mut th.frame)
}

/// Writes `base` (a user address) into this processor's FS base.
pub fn write_fs_base(base: u64) {
    // SAFETY: the FS base MSR exists on every x86_64 processor; the kernel never uses FS, and
    // the value is a user address checked when it was set (below the user-half end), so ring 3
    // gets the base it asked for and nothing else changes.
    unsafe { x86_64::registers::model_specific::Msr::new(0xC000_0100).write(base) };
}

/// Idles this processor (marked idle by [`pick`]): the kernel's tables loaded (no translation
/// of any space stays here), the mode lock given back, halted until an interrupt.
fn idle(k: &Kernel) -> ! {
    // SAFETY: this processor's record, no other reference live.
    let cpu = unsafe { k.cpu() };
    // No thread runs here, so no thread's registers are loaded (`park`).
    cpu.loaded = None;
    pt::activate(k.kernel_root);
    lock::release();
    trap::idle_wait()
}

fn power_off(k: &Kernel) -> ! {
    let waiting = k
        .threads
        .iter()
        .filter(|t| t.state.get() != State::Free)
        .count();
    log::info!(
        "kernel-shim: no thread can run ({} waiting, {} kernel frames in use, {} shootdown \
         rounds); powering off",
        waiting,
        k.frames.lock().in_use(),
        shootdown::rounds()
    );
    power::exit(power::EXIT_CLEAN)
}
