//! The GDT and TSS.
//!
//! Selector layout, fixed by `syscall`/`sysret` (STAR): kernel code 0x08, kernel data 0x10,
//! user data 0x18 (|3 = 0x1B), user code 0x20 (|3 = 0x23), TSS 0x28.
//!
//! The TSS gives the stack for entries from ring 3 (`rsp0`, the top of the kernel stack) and
//! a separate stack for double faults (IST 1), so a kernel stack overflow is still reported
//! (both stacks, and their guard pages, are in [`super::boot`]).

use super::global::Global;
use core::arch::asm;

/// Kernel code selector.
pub const KERNEL_CS: u16 = 0x08;
/// Kernel data selector.
pub const KERNEL_SS: u16 = 0x10;
/// User data selector (RPL 3).
pub const USER_SS: u16 = 0x1B;
/// User code selector (RPL 3).
pub const USER_CS: u16 = 0x23;
const TSS_SEL: u16 = 0x28;

/// IST index (1-based) of the double-fault stack.
pub const DOUBLE_FAULT_IST: u8 = 1;

#[repr(C, packed(4))]
struct Tss {
    reserved0: u32,
    rsp: [u64; 3],
    reserved1: u64,
    ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    iomap_base: u16,
}

static TSS: Global<Tss> = Global::new(Tss {
    reserved0: 0,
    rsp: [0; 3],
    reserved1: 0,
    ist: [0; 7],
    reserved2: 0,
    reserved3: 0,
    iomap_base: size_of::<Tss>() as u16,
});
static GDT: Global<[u64; 7]> = Global::new([0; 7]);

/// Installs the GDT and TSS; `rsp0` is the stack for entries from ring 3, `df_top` the top of
/// the double-fault stack.
pub fn init(rsp0: u64, df_top: u64) {
    let tss = TSS.as_ptr();
    // SAFETY: called once at boot before interrupts are enabled; nothing else refers to the
    // TSS or GDT yet.
    unsafe {
        (*tss).rsp[0] = rsp0;
        (*tss).ist[(DOUBLE_FAULT_IST - 1) as usize] = df_top;
    }
    let base = tss as u64;
    let limit = (size_of::<Tss>() - 1) as u64;
    let tss_low = (limit & 0xFFFF)
        | ((base & 0xFF_FFFF) << 16)
        | (0x89 << 40)
        | (((limit >> 16) & 0xF) << 48)
        | (((base >> 24) & 0xFF) << 56);
    let tss_high = base >> 32;
    let gdt = GDT.as_ptr();
    // SAFETY: as above; the GDT is a static, so the pointer given to `lgdt` stays valid.
    unsafe {
        *gdt = [
            0,
            0x00AF_9A00_0000_FFFF,
            0x00CF_9200_0000_FFFF,
            0x00CF_F200_0000_FFFF,
            0x00AF_FA00_0000_FFFF,
            tss_low,
            tss_high,
        ];
        #[repr(C, packed(2))]
        struct Ptr {
            limit: u16,
            base: u64,
        }
        let ptr = Ptr {
            limit: (size_of::<[u64; 7]>() - 1) as u16,
            base: gdt as u64,
        };
        asm!(
            "lgdt [{ptr}]",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {ss:x}",
            "mov es, {ss:x}",
            "mov ss, {ss:x}",
            "ltr {tss:x}",
            ptr = in(reg) &ptr,
            cs = in(reg) KERNEL_CS as u64,
            ss = in(reg) KERNEL_SS as u64,
            tss = in(reg) TSS_SEL as u64,
            tmp = out(reg) _,
        );
    }
}
