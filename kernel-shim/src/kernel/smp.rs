//! Starting the application processors: each one the ACPI tables list ([`super::cpus`]) but
//! the booting one, up to [`MAX_RUN_CPUS`] in all, gets the INIT–SIPI–SIPI sequence through
//! the local APIC, runs the real-mode trampoline (`boot.rs`: copied to [`AP_TRAMPOLINE`]) into
//! long mode on the boot page tables and its own kernel stack, then [`ap_entry`] sets it up as
//! the first processor was (the kernel's tables, SMEP and SMAP, its per-CPU block, GDT, TSS,
//! the IDT, the `syscall` MSRs, its local APIC timer) and it joins the scheduler.

use super::boot::{self, phys_to_virt};
use super::cpus::Cpus;
use super::frames::PAGE;
use super::percpu::{self, MAX_RUN_CPUS};
use super::{gdt, kmap, lapic, shootdown, timer, trap};
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use x86_64::PhysAddr;
use x86_64::registers::control::Cr3;
use x86_64::structures::paging::PhysFrame;

/// Where the trampoline runs: a page below 1 MiB (the startup IPI's vector is its page
/// number), in the first MiB the kernel keeps out of every pool.
pub const AP_TRAMPOLINE: u64 = 0x8000;
/// ICR: INIT, level assert.
const ICR_INIT: u32 = 0x4500;
/// ICR: startup IPI, level assert; the vector is the trampoline's page number.
const ICR_STARTUP: u32 = 0x4600;
/// `pause` rounds an application processor gets to say it is online.
const ONLINE_WAIT: u32 = 10_000_000;

/// The stack top the next application processor starts on (`ap_long` in `boot.rs` loads it).
#[unsafe(no_mangle)]
pub static AP_STACK_TOP: AtomicU64 = AtomicU64::new(0);
/// The index the next application processor takes.
static AP_INDEX: AtomicUsize = AtomicUsize::new(0);
/// Application processors online.
static ONLINE: AtomicU32 = AtomicU32::new(0);

unsafe extern "C" {
    #[link_name = "ap_trampoline"]
    static TRAMPOLINE_START: u8;
    #[link_name = "ap_trampoline_end"]
    static TRAMPOLINE_END: u8;
}

/// An application processor, on its own kernel stack in long mode on the boot tables: set up
/// as the first processor was, then into the scheduler for good.
pub extern "C" fn ap_entry() -> ! {
    let index = AP_INDEX.load(Ordering::SeqCst);
    let root = shootdown::kernel_root();
    // SAFETY: the kernel's tables map everything the boot tables map that the kernel uses
    // from now on (its image, this stack, the window); the identity map is not used again.
    unsafe {
        Cr3::write_raw(
            PhysFrame::containing_address(PhysAddr::new(root)),
            Cr3::read_raw().1,
        )
    };
    kmap::protect_from_user();
    super::devices::init_pat();
    percpu::install(index, boot::kernel_stack_top(index));
    shootdown::loaded(root);
    gdt::init(
        index,
        boot::kernel_stack_top(index),
        boot::double_fault_stack_top(index),
    );
    trap::load_idt();
    trap::init_syscall();
    timer::start_here();
    shootdown::online(index, own_id(), root);
    ONLINE.fetch_add(1, Ordering::SeqCst);
    super::ap_schedule(index)
}

fn delay(rounds: u32) {
    for _ in 0..rounds {
        core::hint::spin_loop();
    }
}

/// The local APIC id of the processor running this (CPUID leaf 1, EBX bits 24..32).
pub fn own_id() -> u32 {
    core::arch::x86_64::__cpuid(1).ebx >> 24
}

/// Starts every processor of `cpus` but this one (xAPIC ids below 255 only, up to
/// [`MAX_RUN_CPUS`] in all); how many came online. Each waits for the mode lock, which the
/// booting processor holds exclusive until its first return to ring 3.
pub fn start(cpus: &Cpus) -> usize {
    let me = own_id();
    let others = cpus.ids[..cpus.count.min(cpus.ids.len())]
        .iter()
        .filter(|&&id| id != me && id < 255)
        .take(MAX_RUN_CPUS - 1);
    if others.clone().next().is_none() {
        return 0;
    }
    let start = &raw const TRAMPOLINE_START as u64;
    let len = (&raw const TRAMPOLINE_END as u64).saturating_sub(start);
    if len == 0 || len > PAGE {
        log::error!("kernel-shim: the AP trampoline does not fit a page");
        return 0;
    }
    // SAFETY: the trampoline lies in the kernel image's boot text (linked and loaded at its
    // physical address, inside the window); its destination is a page of the first MiB, which
    // no pool, program or table uses. The two do not overlap (the image is above 1 MiB).
    unsafe {
        core::ptr::copy_nonoverlapping(
            phys_to_virt(start) as *const u8,
            phys_to_virt(AP_TRAMPOLINE) as *mut u8,
            len as usize,
        )
    };
    let mut online = 0;
    for &id in others {
        let index = online + 1;
        AP_INDEX.store(index, Ordering::SeqCst);
        AP_STACK_TOP.store(boot::kernel_stack_top(index), Ordering::SeqCst);
        let before = ONLINE.load(Ordering::SeqCst);
        lapic::ipi(id, ICR_INIT);
        delay(100_000);
        for _ in 0..2 {
            lapic::ipi(id, ICR_STARTUP | (AP_TRAMPOLINE / PAGE) as u32);
            delay(10_000);
        }
        let mut waited = 0;
        while ONLINE.load(Ordering::SeqCst) == before && waited < ONLINE_WAIT {
            core::hint::spin_loop();
            waited += 1;
        }
        if ONLINE.load(Ordering::SeqCst) == before {
            log::warn!("kernel-shim: processor {} did not come online", id);
            break;
        }
        online += 1;
    }
    online
}
