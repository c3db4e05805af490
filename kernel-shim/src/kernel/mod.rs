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
//! - **Simple over clever.** One CPU, interrupts off in the kernel, one kernel stack, no
//!   kernel threads, fixed-size tables, no heap.
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
pub mod gdt;
pub mod global;
pub mod ipc;
pub mod kmap;
pub mod lapic;
pub mod logger;
pub mod memory;
pub mod objects;
pub mod pager;
pub mod power;
pub mod pt;
pub mod redox;
pub mod sched;
pub mod selftest;
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

/// All kernel state. Reached only through [`kernel`], once per entry.
static KERNEL: Global<Kernel> = Global::new(Kernel::new());

/// The kernel state, for the one entry in progress.
///
/// # Safety
/// Call once per kernel entry and keep the reference only until the entry ends (one CPU,
/// interrupts off: no other reference can exist).
unsafe fn kernel() -> &'static mut Kernel {
    // SAFETY: per the function's contract.
    unsafe { &mut *KERNEL.as_ptr() }
}

/// The 64-bit entry from the boot trampoline; `start_info` is the physical address of the PVH
/// start-info block.
pub extern "C" fn kmain_entry(start_info: u64) -> ! {
    serial::init();
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
    gdt::init(boot::kernel_stack_top(), boot::double_fault_stack_top());
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
                "kernel-shim: {} processor{} (ACPI MADT, local APIC ids {:?}); the kernel runs \
                 on the first only",
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

    // SAFETY: the first and only reference during boot; interrupts are still off.
    let k = unsafe { kernel() };
    k.kernel_root = pt::active();
    k.cmdline = info.cmdline;
    k.cmdline_len = info.cmdline_len;
    pt::init();
    log::info!(
        "kernel-shim: PCIDs {}",
        if info.has_flag("pcid=off") {
            "off (pcid=off)"
        } else if pt::enable_pcid() {
            "on: a switch back to a space keeps what the TLB holds of it"
        } else {
            "off (not in this CPU)"
        }
    );
    memory::split(k, &info);
    if let Some(c) = &cpus
        && c.count > 1
    {
        let online = smp::start(k, c);
        log::info!(
            "kernel-shim: {} application processor{} online, parked (halted, interrupts off)",
            online,
            if online == 1 { "" } else { "s" }
        );
    }
    timer::init();
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
    if !user {
        // Interrupts are never enabled in ring 0: any entry from it is a kernel bug.
        // SAFETY: as above; the report only reads it.
        exceptions::kernel_fault(unsafe { &*frame });
    }
    // SAFETY: the one reference of this entry.
    let k = unsafe { kernel() };
    let Some(t) = k.current else {
        // SAFETY: as above.
        exceptions::kernel_fault(unsafe { &*frame });
    };
    if !core::ptr::eq(frame, &k.threads[t].frame) {
        // Built elsewhere (the double-fault stack): the thread's registers go to its slot.
        // SAFETY: as above; a frame elsewhere is no part of the kernel state.
        k.threads[t].frame = unsafe { frame.read() };
    }
    match vector {
        timer::TIMER_VECTOR => sched::tick(k),
        v if v >= 32 => timer::end_of_interrupt(v),
        _ => fault::user_fault(k, t),
    }
    sched::run(k)
}

/// The entry of a `syscall` from ring 3 ([`trap::syscall_entry`]), with the frame it built in
/// the running thread's slot. Never returns: the caller goes back to ring 3 at once if the call
/// answered at once and nothing else must run ([`sched::resume_caller`]), else the scheduler
/// picks.
pub extern "C" fn syscall_dispatch(frame: *mut TrapFrame) -> ! {
    // SAFETY: the one reference of this entry.
    let k = unsafe { kernel() };
    match k.current {
        Some(t) if core::ptr::eq(frame, &k.threads[t].frame) => syscall::handle(k, t),
        // SAFETY: the entry built the frame and passes its address; the report only reads it.
        _ => exceptions::kernel_fault(unsafe { &*frame }),
    }
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
