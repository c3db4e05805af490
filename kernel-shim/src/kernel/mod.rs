//! The kernel proper.
//!
//! Design principles:
//! - **Tiny and policy-free.** The kernel knows address spaces (page tables), threads, IPC
//!   endpoints and the CPU. It never decides where anything is mapped and keeps no regions,
//!   copy-on-write state or break: every memory decision is the pager's (memd).
//! - **Decode, then perform.** Every system call checks all its arguments first (user pointers,
//!   lengths, ranges, badges, capabilities) and only then changes state.
//! - **A process cannot make the kernel panic.** Anything a process passes in is an
//!   *allegation* until checked; every failure is an error code or, for faults, a message to
//!   the pager. Only the kernel's own bugs stop the machine (with a full report).
//! - **Simple over clever.** Interrupts off in the kernel, one kernel stack per processor, no
//!   kernel threads, tables sized at boot, no heap; entries that create or end anything run
//!   alone ([`lock`]).
//!
//! **Many processors.** Every processor the ACPI tables list (up to
//! [`percpu::MAX_RUN_CPUS`]) runs the kernel: its own stacks, GDT, TSS and per-CPU block
//! (GS: [`percpu`]), its local APIC timer, and the scheduler's one run queue ([`sched`]).
//! What guards what ([`lock`] has the whole rule): every entry holds the kernel's mode lock,
//! *shared* for the fault path and IPC (which run on every processor at once) and
//! *exclusive* for everything else (creating and ending threads, spaces and endpoints,
//! killing, futexes), which then runs alone. Under a shared hold: an endpoint's lock guards
//! its queues and the threads blocked on it; a space's lock its page tables and reserve; the
//! run queue and the kernel pool have a lock each; a processor's scheduler record, per-CPU
//! block and TSS are written only by that processor; a thread is its runner's, or its queue
//! lock's. Each processor has its own TLB shootdown request; a processor answers requests
//! without any lock, also while it spins for one ([`shootdown`]). The other processors running
//! a space are made to flush (or to leave it, when its threads end) before the change's call
//! returns.
//! - **Say what happens, at the level asked for.** The kernel's lines go through the `log`
//!   facade ([`logger`], `loglevel=` on the command line); only the fatal reports are printed
//!   whatever the level.
//!
//! The kernel never: allocates user memory on its own (beyond loading the boot modules it is
//! given), maps kernel memory or page-table pages into ring 3, trusts an identity a process
//! claims (the badge of a message is stamped by the kernel), or blocks on its own stack.

#[macro_use]
pub mod serial;
pub mod backtrace;
pub mod boot;
pub mod bootinfo;
pub mod bootpack;
pub mod cpus;
pub mod devices;
pub mod elf;
pub mod errno;
pub mod exceptions;
pub mod fault;
pub mod frames;
pub mod futex;
pub mod gdt;
pub mod global;
pub mod ipc;
pub mod kmap;
pub mod lapic;
pub mod lock;
pub mod logger;
pub mod memory;
pub mod objects;
pub mod pager;
pub mod percpu;
pub mod power;
pub mod pt;
pub mod redox;
pub mod sched;
pub mod selftest;
pub mod shootdown;
pub mod smp;
pub mod space;
pub mod state;
pub mod syscall;
pub mod tables;
pub mod thread;
pub mod timer;
pub mod trap;
pub mod usercopy;

use bootinfo::{BootInfo, E820_RAM};
use global::Global;
use state::Kernel;
use trap::TrapFrame;

/// All kernel state. Reached through [`kernel`] (exclusive entries) or [`shared`] (shared
/// ones), with the mode lock held ([`lock`]).
static KERNEL: Global<Kernel> = Global::new(Kernel::new());

/// The kernel state, for the one entry in progress, which holds the mode lock exclusive.
///
/// # Safety
/// Hold the mode lock exclusive (no other entry is in progress), keep the reference only
/// until the lock is given back, and use no other reference to the state meanwhile.
unsafe fn kernel() -> &'static mut Kernel {
    // SAFETY: per the function's contract.
    unsafe { &mut *KERNEL.as_ptr() }
}

/// The kernel state, for an entry holding the mode lock (shared or exclusive): what it
/// changes is behind the finer locks, or its own ([`lock`]).
///
/// # Safety
/// Hold the mode lock, keep the reference only until it is given back, and hold no
/// `&mut Kernel` meanwhile.
unsafe fn shared() -> &'static Kernel {
    // SAFETY: per the function's contract: the state's fields that shared entries change are
    // atomics, locks, or slots reached under the locking rule.
    unsafe { &*KERNEL.as_ptr() }
}

/// The 64-bit entry from the boot trampoline; `start_info` is the physical address of the PVH
/// start-info block.
pub extern "C" fn kmain_entry(start_info: u64) -> ! {
    serial::init();
    percpu::install(0, boot::kernel_stack_top(0));
    // The booting processor holds the mode lock exclusive until its first return to ring 3:
    // the others wait for it once they are up.
    lock::acquire();
    // The start info first, for the log level on its command line (the boot tables map the
    // physical window it is read through).
    let info = BootInfo::read(start_info);
    logger::init(info.as_ref().map_or("", |i| i.cmdline()));
    log::info!("kernel-shim: long mode, serial up");
    if !kmap::init() {
        kprintln!("kernel-shim: the kernel image is too large for its page tables");
        power::exit(power::EXIT_FATAL);
    }
    log::info!(
        "kernel-shim: kernel mappings W^X with NX: text r-x, rodata r--, data rw-, window rw- \
         (image r--); guard pages under both stacks"
    );
    let protections = kmap::protect_from_user();
    devices::init_pat();
    log::info!(
        "kernel-shim: SMEP {}, SMAP {}",
        if protections.smep {
            "on"
        } else {
            "off (not in this CPU)"
        },
        if protections.smap {
            "on"
        } else {
            "off (not in this CPU)"
        }
    );
    gdt::init(
        0,
        boot::kernel_stack_top(0),
        boot::double_fault_stack_top(0),
    );
    trap::init_idt();
    trap::init_syscall();
    log::info!("kernel-shim: GDT, TSS, IDT, syscall ready");

    let Some(info) = info else {
        kprintln!(
            "kernel-shim: no PVH start info at {:#x}; boot with qemu -kernel",
            start_info
        );
        power::exit(power::EXIT_FATAL);
    };
    let (kstart, kend) = boot::kernel_image();
    log::info!(
        "kernel-shim: image {:#x}..{:#x}, cmdline \"{}\"",
        kstart,
        kend,
        info.cmdline()
    );
    let mut ram = 0;
    for r in info.memory() {
        log::info!(
            "  memory {:#012x}..{:#012x} {}",
            r.start,
            r.start + r.len,
            if r.kind == E820_RAM {
                "ram"
            } else {
                "reserved"
            }
        );
        if r.kind == E820_RAM {
            ram += r.len;
        }
    }
    log::info!("kernel-shim: {} KiB of RAM", ram / 1024);
    let cpus = cpus::find(info.rsdp);
    match &cpus {
        Some(c) => {
            let ids = &c.ids[..c.count.min(cpus::MAX_CPUS)];
            log::info!(
                "kernel-shim: {} processor{} (ACPI MADT, local APIC ids {:?})",
                c.count,
                if c.count == 1 { "" } else { "s" },
                ids
            );
        }
        None => log::info!("kernel-shim: no ACPI processor list (no RSDP or MADT)"),
    }
    for (i, m) in info.modules().iter().enumerate() {
        log::info!("  module {} at {:#x}, {} bytes", i, m.start, m.len);
    }

    selftest::before_programs(&info);

    // SAFETY: the first and only reference during boot; the lock is held, interrupts off.
    let k = unsafe { kernel() };
    k.kernel_root = pt::active();
    k.cmdline = info.cmdline;
    k.cmdline_len = info.cmdline_len;
    k.devices = devices::Devices::accept(info.cmdline(), info.memory());
    pt::init();
    shootdown::online(0, smp::own_id(), k.kernel_root);
    k.cpus[0]
        .online
        .store(true, core::sync::atomic::Ordering::Relaxed);
    let many = cpus.as_ref().is_some_and(|c| c.count > 1);
    log::info!(
        "kernel-shim: PCIDs {}",
        if info.has_flag("pcid=off") {
            "off (pcid=off)"
        } else if many {
            "off (many processors: a change to a space reaches only the processors whose CR3 \
             holds it)"
        } else if pt::enable_pcid() {
            "on: a switch back to a space keeps what the TLB holds of it"
        } else {
            "off (not in this CPU)"
        }
    );
    memory::split(k, &info);
    let lapic_timer = timer::init();
    if let Some(c) = &cpus
        && c.count > 1
    {
        if lapic_timer {
            let online = smp::start(c);
            log::info!(
                "kernel-shim: {} application processor{} online, scheduling",
                online,
                if online == 1 { "" } else { "s" }
            );
        } else {
            log::warn!("kernel-shim: no local APIC timer: the other processors stay parked");
        }
    }
    start_programs(k, &info);
    selftest::after_programs(k, &info, protections);
    sched::run()
}

/// Loads the programs of the boot pack (module 0): the first is the pager, which gets the
/// pager endpoint and its window onto the frames it was given.
///
/// With [`kernel_shim::abi::PAGER_LOADS_FLAG`] on the command line the kernel loads only the
/// pager and maps the whole boot pack read-only into it at
/// [`kernel_shim::abi::BOOTPACK_BASE`]: the pager (memd) starts the other programs itself.
fn start_programs(k: &mut Kernel, info: &BootInfo) {
    let Some(m) = info.modules().first() else {
        return;
    };
    if m.start
        .checked_add(m.len)
        .is_none_or(|end| end > boot::PHYS_WINDOW_SIZE)
    {
        log::error!("kernel-shim: boot module outside the window; ignored");
        return;
    }
    // SAFETY: the module lies in RAM inside the window (checked above) and the kernel keeps
    // it reserved (never in the pool nor the pager's ranges), so nothing writes it.
    let pack = unsafe {
        core::slice::from_raw_parts(boot::phys_to_virt(m.start) as *const u8, m.len as usize)
    };
    let Some(programs) = bootpack::parse(pack) else {
        log::error!("kernel-shim: module 0 is not a boot pack; ignored");
        return;
    };
    let pager_loads = info.has_flag(kernel_shim::abi::PAGER_LOADS_FLAG);
    for (i, p) in programs.enumerate() {
        let is_pager = i == 0;
        if pager_loads && !is_pager {
            break;
        }
        match elf::load(k, p.bytes, is_pager) {
            Ok(s) => {
                log::info!(
                    "kernel-shim: started {} as space {:#x}{}",
                    p.name,
                    k.badge(s),
                    if is_pager { " (pager)" } else { "" }
                );
                if is_pager {
                    let ep = ipc::open(k, s);
                    if ep != Some(ipc::PAGER_ENDPOINT) || !pager::map_window(k, s) {
                        kprintln!("kernel-shim: cannot set up the pager");
                        power::exit(power::EXIT_FATAL);
                    }
                    if pager_loads && !pager::map_bootpack(k, s, m.start, m.len) {
                        kprintln!("kernel-shim: cannot map the boot pack into the pager");
                        power::exit(power::EXIT_FATAL);
                    }
                }
            }
            Err(e) => log::error!("kernel-shim: cannot load {}: {}", p.name, e),
        }
    }
    if pager_loads {
        log::info!("kernel-shim: the pager starts the other programs");
    }
}

/// The common entry from every stub, with the frame the entry built: in the running thread's
/// slot for an entry from ring 3 (see [`trap`]), on the stack it was on for one from ring 0 or
/// the double-fault stack. Never returns: it resumes a thread or idles. Interrupts and faults
/// are shared entries ([`lock`]); a fault with no pager becomes an exclusive one.
pub extern "C" fn dispatch(frame: *mut TrapFrame) -> ! {
    // SAFETY: the entry built the frame and passes its address; no other reference to it
    // exists while these two words are read.
    let (user, vector) = unsafe { ((*frame).is_user(), (*frame).vector) };
    if !user && vector < 32 {
        // An exception in ring 0 is a kernel bug.
        // SAFETY: as above; the report only reads it.
        exceptions::kernel_fault(unsafe { &*frame });
    }
    shootdown::service();
    lock::enter_shared();
    let t = {
        // SAFETY: the mode lock is held; the reference ends in this block.
        let k = unsafe { shared() };
        if !user {
            // Interrupts are on in ring 0 only while a processor idles: it wakes up.
            interrupt(k, vector);
            sched::run()
        }
        let Some(t) = k.current() else {
            // The thread this processor ran was ended elsewhere (it was made to leave its
            // space first): whatever it did last is dropped.
            if vector >= 32 {
                interrupt(k, vector);
            }
            sched::run()
        };
        if !core::ptr::eq(frame, &k.threads[t].frame) {
            // Built elsewhere (the double-fault stack): the thread's registers go to its slot.
            // SAFETY: `t` runs here, so its slot is this entry's; a frame elsewhere is no part
            // of the kernel state.
            unsafe { k.threads.slot(t).frame = frame.read() };
        }
        if vector >= 32 {
            interrupt(k, vector);
            sched::run()
        }
        if fault::user_fault(k, t) {
            sched::run()
        }
        t
    };
    // No pager: the kill is an exclusive entry's.
    lock::exclusive();
    // SAFETY: the mode lock is exclusive; no other reference is used.
    let k = unsafe { kernel() };
    if k.current() == Some(t) {
        k.kill_at_fault(t, "no pager");
    }
    sched::run()
}

/// An interrupt: the tick, a reschedule or shootdown interrupt from another processor (the
/// shootdown was answered before the lock was taken), or a legacy line.
fn interrupt(k: &Kernel, vector: u64) {
    match vector {
        timer::TIMER_VECTOR => sched::tick(k),
        trap::RESCHEDULE_VECTOR | shootdown::SHOOTDOWN_VECTOR => lapic::end_of_interrupt(),
        v => timer::end_of_interrupt(v),
    }
}

/// The entry of a `syscall` from ring 3 ([`trap::syscall_entry`]), with the frame it built in
/// the running thread's slot. Never returns: the caller goes back to ring 3 at once if the call
/// answered at once and nothing else must run ([`sched::resume_caller`]), else the scheduler
/// picks. The calls of the fault path and IPC run in a shared entry
/// ([`syscall::is_shared`]), the others (and a shared call that must) in an exclusive one.
pub extern "C" fn syscall_dispatch(frame: *mut TrapFrame) -> ! {
    // SAFETY: the entry built the frame in the slot of the thread running here, which no
    // other processor touches before this one spins (an exclusive entry ending the thread
    // first makes this processor leave: `shootdown`); the read ends at once.
    let number = unsafe { (*frame).rax };
    if number == kernel_shim::abi::CLOCK {
        // SAFETY: as above: the frame is the slot of the thread running here, this entry's.
        syscall::clock(unsafe { &mut *frame });
        // Its frame cannot go back to ring 3: the scheduler kills the thread.
        lock::acquire();
        sched::run()
    }
    if syscall::is_shared(number) {
        lock::enter_shared();
        {
            // SAFETY: the mode lock is held; the reference ends in this block.
            let k = unsafe { shared() };
            match k.current() {
                Some(t) if core::ptr::eq(frame, &k.threads[t].frame) => {
                    if syscall::handle_shared(k, t) {
                        sched::run()
                    }
                }
                // The caller was ended elsewhere while it entered: the call is dropped.
                None => sched::run(),
                // SAFETY: the entry built the frame; the report only reads it.
                Some(_) => exceptions::kernel_fault(unsafe { &*frame }),
            }
        }
        lock::exclusive();
    } else {
        lock::acquire();
    }
    // SAFETY: the mode lock is exclusive; no other reference is used.
    let k = unsafe { kernel() };
    match k.current() {
        Some(t) if core::ptr::eq(frame, &k.threads[t].frame) => syscall::handle(k, t),
        // The caller was ended elsewhere while it entered: the call is dropped.
        None => {}
        // SAFETY: the entry built the frame and passes its address; the report only reads it.
        Some(_) => exceptions::kernel_fault(unsafe { &*frame }),
    }
    sched::run()
}

/// An application processor's way into the scheduler, once it is set up ([`smp::ap_entry`]):
/// it takes the mode lock (the booting processor holds it exclusive until its first return to
/// ring 3), says it is online, and picks a thread or idles.
pub fn ap_schedule(index: usize) -> ! {
    lock::enter_shared();
    // SAFETY: the mode lock is held; the reference ends before `run`.
    let k = unsafe { shared() };
    k.cpus[index]
        .online
        .store(true, core::sync::atomic::Ordering::Relaxed);
    sched::run()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    kprintln!();
    kprintln!("KERNEL PANIC: {}", info);
    backtrace::print_here();
    kprintln!("kernel halted");
    power::exit(power::EXIT_FATAL)
}
