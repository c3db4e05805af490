//! The GDT and TSS of each processor, built from the `x86_64` crate's structures.
//!
//! Selector layout, fixed by `syscall`/`sysret` (STAR): kernel code 0x08, kernel data 0x10,
//! user data 0x18 (|3 = 0x1B), user code 0x20 (|3 = 0x23), TSS 0x28 (two entries). The four
//! segments are the crate's flat long-mode descriptors, appended in that order when the kernel
//! is compiled (a table whose selectors differ from these constants does not build); the TSS
//! descriptor is appended at boot, once the TSS's address is known.
//!
//! The TSS gives the stack for entries from ring 3 (`rsp0`: the end of the running thread's
//! frame in the thread table, set at each return to ring 3 by [`set_rsp0`]) and
//! a separate stack for double faults (IST 1), so a kernel stack overflow is still reported
//! (both stacks, and their guard pages, are in [`super::boot`]). It has no I/O bitmap: ring 3
//! reaches no port.

use super::global::Global;
use super::percpu::{self, MAX_RUN_CPUS};
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

/// Kernel code selector.
pub const KERNEL_CS: u16 = 0x08;
/// Kernel data selector.
pub const KERNEL_SS: u16 = 0x10;
/// User data selector (RPL 3).
pub const USER_SS: u16 = 0x1B;
/// User code selector (RPL 3).
pub const USER_CS: u16 = 0x23;

/// The interrupt-stack-table slot of the double-fault stack, counted from 0 as the `x86_64`
/// crate does (the CPU's IST 1).
pub const DOUBLE_FAULT_IST_INDEX: u16 = 0;

/// The segments, in the order of the selectors above (checked when the kernel is compiled).
const fn segments() -> GlobalDescriptorTable {
    let mut gdt = GlobalDescriptorTable::new();
    let kernel_code = gdt.append(Descriptor::kernel_code_segment());
    let kernel_data = gdt.append(Descriptor::kernel_data_segment());
    let user_data = gdt.append(Descriptor::user_data_segment());
    let user_code = gdt.append(Descriptor::user_code_segment());
    assert!(
        kernel_code.0 == KERNEL_CS
            && kernel_data.0 == KERNEL_SS
            && user_data.0 == USER_SS
            && user_code.0 == USER_CS
    );
    gdt
}

/// One GDT per processor: the same segments, and each its own TSS descriptor.
static GDT: Global<[GlobalDescriptorTable; MAX_RUN_CPUS]> =
    Global::new([const { segments() }; MAX_RUN_CPUS]);
/// One TSS per processor.
static TSS: Global<[TaskStateSegment; MAX_RUN_CPUS]> =
    Global::new([const { TaskStateSegment::new() }; MAX_RUN_CPUS]);

/// Sets where this processor pushes the frame of its next entry from ring 3 (its TSS's
/// `rsp0`).
#[inline(always)]
pub fn set_rsp0(rsp0: u64) {
    // SAFETY: each processor writes only its own TSS, with interrupts off; the processor reads
    // `rsp0` only on an entry from ring 3, never while the kernel runs, and no reference to the
    // TSS is held across this write (the GDT's descriptor holds only its address).
    unsafe {
        (*TSS.as_ptr())[percpu::index()].privilege_stack_table[0] = VirtAddr::new_truncate(rsp0)
    };
}

/// Installs processor `cpu`'s GDT and TSS; `rsp0` is the stack for entries from ring 3 until
/// the first return to ring 3 sets it ([`set_rsp0`]), `df_top` the top of its double-fault
/// stack.
pub fn init(cpu: usize, rsp0: u64, df_top: u64) {
    // SAFETY: called once per processor at its start, before it enables interrupts: nothing
    // else refers to this processor's TSS or GDT yet; the GDT does not change after it is
    // loaded below, and the TSS only through `set_rsp0` on this processor, so the references
    // may live for good.
    let (tss, gdt) = unsafe {
        let tss = &mut (*TSS.as_ptr())[cpu];
        tss.privilege_stack_table[0] = VirtAddr::new(rsp0);
        tss.interrupt_stack_table[DOUBLE_FAULT_IST_INDEX as usize] = VirtAddr::new(df_top);
        (
            &*(tss as *const TaskStateSegment),
            &mut (*GDT.as_ptr())[cpu],
        )
    };
    let tss_selector = gdt.append(Descriptor::tss_segment(tss));
    let gdt: &'static GlobalDescriptorTable = gdt;
    gdt.load();
    // SAFETY: the selectors name the kernel code and data segments and the TSS of the GDT just
    // loaded; reloading CS (a far return) and the data segments changes no memory.
    unsafe {
        CS::set_reg(SegmentSelector(KERNEL_CS));
        SS::set_reg(SegmentSelector(KERNEL_SS));
        DS::set_reg(SegmentSelector(KERNEL_SS));
        ES::set_reg(SegmentSelector(KERNEL_SS));
        load_tss(tss_selector);
    }
}
