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
//! - **Simple over clever.** One lock over all kernel state (taken at every entry, given back
//!   at the return to ring 3: [`lock`]), interrupts off in the kernel, one kernel stack per
//!   processor, no kernel threads, tables sized at boot, no heap.
//!
//! **Many processors.** Every processor the ACPI tables list (up to
//! [`percpu::MAX_RUN_CPUS`]) runs the kernel: its own stacks, GDT, TSS and per-CPU block
//! (GS: [`percpu`]), its local APIC timer, and the scheduler's one run queue ([`sched`]).
//! What guards what: the kernel lock guards every table (spaces, threads, endpoints, the run
//! queue, futex queues, the frame pool, each processor's scheduler record); a processor's
//! per-CPU block and TSS are written only by that processor; the TLB shootdown request and
//! its answers are atomics written by the lock holder and by each target ([`shootdown`]),
//! which a processor answers without the lock (the holder waits for it). Page tables are
//! changed only by the lock holder; the other processors running that space are made to
//! flush (or to leave it, when its threads end) before the change's call returns.
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

/// All kernel state. Reached only through [`kernel`], once per entry, with the lock held.
static KERNEL: Global<Kernel> = Global::new(Kernel::new());

/// The kernel state, for the one entry in progress.
///
/// # Safety
/// Call once per kernel entry, with the kernel lock held, and keep the reference only until
/// the lock is given back (interrupts off: no other reference can exist).
unsafe fn kernel() -> &'static mut Kernel {
    // SAFETY: per the function's contract.
    unsafe { &mut *KERNEL.as_ptr() }
}

/// The 64-bit entry from the boot trampoline; `start_info` is the physical address of the PVH
/// start-info block.
pub extern "C" fn kmain_entry(start_info: u64) -> ! {
    serial::init();
    percpu::install(0, boot::kernel_stack_top(0));
    // The booting processor holds the kernel lock until its first return to ring 3: the
    // others wait for it once they are up.
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
    pt::init();
    shootdown::online(0, smp::own_id(), k.kernel_root);
    k.cpus[0].online = true;
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
    sched::run(k)
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

/// The common entry from every stub and from `syscall`, with the frame the entry built: in
/// the running thread's slot for an entry from ring 3 (see [`trap`]), on the stack it was on
/// for one from ring 0 or the double-fault stack. Never returns: it resumes a thread or idles.
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
    lock::acquire();
    // SAFETY: the one reference of this entry, under the lock.
    let k = unsafe { kernel() };
    let me = percpu::index();
    if !user {
        // Interrupts are on in ring 0 only while a processor idles: it wakes up.
        k.cpus[me].idle = false;
        interrupt(k, vector);
        sched::run(k)
    }
    let Some(t) = k.cpus[me].current else {
        // The thread this processor ran was ended elsewhere (it was made to leave its space
        // first): whatever it did last is dropped.
        if vector >= 32 {
            interrupt(k, vector);
        }
        sched::run(k)
    };
    if !core::ptr::eq(frame, &k.threads[t].frame) {
        // Built elsewhere (the double-fault stack): the thread's registers go to its slot.
        // SAFETY: as above; a frame elsewhere is no part of the kernel state.
        k.threads[t].frame = unsafe { frame.read() };
    }
    if vector >= 32 {
        interrupt(k, vector);
    } else {
        fault::user_fault(k, t);
    }
    sched::run(k)
}

/// An interrupt: the tick, a reschedule or shootdown interrupt from another processor (the
/// shootdown was answered before the lock was taken), or a legacy line.
fn interrupt(k: &mut Kernel, vector: u64) {
    match vector {
        timer::TIMER_VECTOR => sched::tick(k),
        trap::RESCHEDULE_VECTOR | shootdown::SHOOTDOWN_VECTOR => lapic::end_of_interrupt(),
        v => timer::end_of_interrupt(v),
    }
}

/// The entry of a `syscall` from ring 3 ([`trap::syscall_entry`]), with the frame it built in
/// the running thread's slot. Never returns: the caller goes back to ring 3 at once if the call
/// answered at once and nothing else must run ([`sched::resume_caller`]), else the scheduler
/// picks.
pub extern "C" fn syscall_dispatch(frame: *mut TrapFrame) -> ! {
    lock::acquire();
    // SAFETY: the one reference of this entry, under the lock.
    let k = unsafe { kernel() };
    match k.current() {
        Some(t) if core::ptr::eq(frame, &k.threads[t].frame) => syscall::handle(k, t),
        // The caller was ended elsewhere while it entered: the call is dropped.
        None => {}
        // SAFETY: the entry built the frame and passes its address; the report only reads it.
        Some(_) => exceptions::kernel_fault(unsafe { &*frame }),
    }
    sched::run(k)
}

/// An application processor's way into the scheduler, once it is set up ([`smp::ap_entry`]):
/// it takes the lock (the booting processor holds it until its first return to ring 3), says
/// it is online, and picks a thread or idles.
pub fn ap_schedule(index: usize) -> ! {
    lock::acquire();
    // SAFETY: the one reference of this entry, under the lock.
    let k = unsafe { kernel() };
    k.cpus[index].online = true;
    sched::run(k)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    kprintln!();
    kprintln!("KERNEL PANIC: {}", info);
    backtrace::print_here();
    kprintln!("kernel halted");
    power::exit(power::EXIT_FATAL)
}
