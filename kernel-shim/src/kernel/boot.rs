//! Boot: the PVH entry point, the boot page tables and the switch to long mode.
//!
//! QEMU (`-kernel`) finds the `XEN_ELFNOTE_PHYS32_ENTRY` note, loads the ELF at its physical
//! addresses and jumps to [`pvh_start`] in 32-bit protected mode, paging off, with `ebx` holding
//! the physical address of the `hvm_start_info` block.
//!
//! The boot code builds the kernel's own page tables by hand, with 2 MiB pages:
//!
//! ```text
//! PML4[0]   -> identity map of the first 4 GiB (used only until the first switch of CR3)
//! PML4[256] -> physical memory window: 0xFFFF_8000_0000_0000 + phys, first 4 GiB, supervisor
//!              (the kernel's own tables, `kmap`, map the first 64 GiB there)
//! PML4[511] -> kernel image: 0xFFFF_FFFF_8000_0000 + phys, first 1 GiB, supervisor
//! ```
//!
//! It enables PAE, long mode, NX, `syscall`, write protection, SSE (with SIMD exceptions as
//! #XM) and native x87 error reporting (CR0.NE: an unmasked x87 exception is a #MF of the
//! thread that caused it, not the legacy IRQ 13), loads a minimal GDT, and jumps to
//! `kmain_entry` in the higher half on the kernel stack. These tables serve only
//! until [`super::kmap`] builds the kernel's final ones (W^X, 4 KiB pages for the image,
//! guard pages under the stacks).
//!
//! The application processors come in the same way (`ap_trampoline`, run in real mode from a
//! copy at 0x8000, then `ap_start32` and `ap_long` on these boot tables: see `smp.rs`).
//!
//! The stacks of every processor live here too, each above a guard page the final tables
//! leave unmapped: its kernel stack (its entries from ring 3) and its double-fault stack
//! (IST 1).
//! An overflow of the kernel stack then faults on its guard page, which escalates to a double
//! fault on the other stack and is reported, instead of silently overwriting what lies below.

use super::percpu::MAX_RUN_CPUS;
use core::arch::global_asm;

/// Where the physical memory window starts.
pub const PHYS_OFFSET: u64 = 0xFFFF_8000_0000_0000;
/// How many bytes of physical memory the boot tables' window maps (until the kernel's own
/// tables replace them).
pub const BOOT_WINDOW_SIZE: u64 = 4 << 30;
/// How many bytes of physical memory the kernel's window maps: RAM above is ignored.
pub const PHYS_WINDOW_SIZE: u64 = 64 << 30;

/// Where the kernel image is mapped: virtual = physical + `KERNEL_VMA` (the linker script's).
pub const KERNEL_VMA: u64 = 0xFFFF_FFFF_8000_0000;

/// Size of a processor's kernel stack (the kernel never blocks on it).
pub const KERNEL_STACK_SIZE: usize = 64 * 1024;
/// Size of a processor's double-fault stack.
pub const DOUBLE_FAULT_STACK_SIZE: usize = 16 * 1024;
/// Size of a guard page.
const GUARD_SIZE: usize = 4096;

// The PVH note, the 32-bit entry and the trampoline to 64-bit code.
global_asm!(
    r#"
    .section .note.Xen, "a", @note
    .p2align 2
    .long 4
    .long 8
    .long 18
    .asciz "Xen"
    .p2align 2
    .quad pvh_start
    .p2align 2

    .section .boot.bss, "aw", @nobits
    .p2align 12
boot_pml4:    .skip 4096
boot_pdpt_lo: .skip 4096
boot_pdpt_hi: .skip 4096
boot_pd:      .skip 4 * 4096

    .section .boot.data, "aw"
    .p2align 3
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF
    .quad 0x00CF92000000FFFF
    .quad 0x00CF9A000000FFFF
boot_gdt_ptr:
    .word 31
    .long boot_gdt

    .section .boot.text, "ax"
    // The boot GDT's data segment in DS, ES and SS, and null FS and GS: the first thing both
    // processors' 64-bit code does.
    .macro data_segments
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    .endm

    .code32
    .global pvh_start
pvh_start:
    cli
    cld
    mov esi, ebx

    mov edi, offset boot_pml4
    mov ecx, 7 * 1024
    xor eax, eax
    rep stosd

    mov eax, offset boot_pdpt_lo
    or eax, 3
    mov dword ptr [boot_pml4], eax
    mov dword ptr [boot_pml4 + 256 * 8], eax
    mov eax, offset boot_pdpt_hi
    or eax, 3
    mov dword ptr [boot_pml4 + 511 * 8], eax

    mov eax, offset boot_pd
    or eax, 3
    mov dword ptr [boot_pdpt_lo], eax
    mov dword ptr [boot_pdpt_hi + 510 * 8], eax
    add eax, 4096
    mov dword ptr [boot_pdpt_lo + 8], eax
    add eax, 4096
    mov dword ptr [boot_pdpt_lo + 16], eax
    add eax, 4096
    mov dword ptr [boot_pdpt_lo + 24], eax

    mov edi, offset boot_pd
    xor ecx, ecx
2:
    mov eax, ecx
    shl eax, 21
    or eax, 0x83
    mov dword ptr [edi + ecx * 8], eax
    inc ecx
    cmp ecx, 2048
    jne 2b

    mov edi, offset boot_long
    jmp enter_long_mode

    // Long mode on the boot tables, for the booting processor and the others alike: PAE and
    // the FPU/SSE bits, CR3, EFER (long mode, NX, `syscall`), paging and write protection, the
    // boot GDT, and a far return to the 64-bit code at `edi`. Needs a stack; keeps esi.
enter_long_mode:
    mov eax, cr4
    or eax, 0x620
    mov cr4, eax
    mov eax, offset boot_pml4
    mov cr3, eax
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x901
    wrmsr
    mov eax, cr0
    and eax, 0xFFFFFFF3
    or eax, 0x80010023
    mov cr0, eax
    lgdt [boot_gdt_ptr]
    mov eax, 0x08
    push eax
    push edi
    retf

    // The application processors' way in (see `smp.rs`). `ap_trampoline`..`ap_trampoline_end`
    // is copied to physical `smp::AP_TRAMPOLINE` (0x8000) and run there in real mode by the
    // startup IPI (CS = 0x0800, IP = 0): it loads the boot GDT (its pointer is in the copied
    // page, at 0x8002, where real mode reaches it), enters protected mode and jumps to
    // `ap_start32`, which switches to long mode on the boot tables as `pvh_start` does
    // (`enter_long_mode`), and
    // `ap_long` calls the kernel's `ap_entry` on the stack the starting processor left in
    // `AP_STACK_TOP`.
    .code16
    .global ap_trampoline
ap_trampoline:
    // A short jump over the GDT pointer, which thus lies at 0x8002.
    .byte 0xEB, 0x06
    .word 31
    .long boot_gdt
    cli
    cld
    xor ax, ax
    mov ds, ax
    lgdt [0x8002]
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    .byte 0x66, 0xEA
    .long ap_start32
    .word 0x18
    .global ap_trampoline_end
ap_trampoline_end:

    .code32
ap_start32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    // `enter_long_mode`'s far return needs a stack: the top of the trampoline's page.
    mov esp, 0x9000
    mov edi, offset ap_long
    jmp enter_long_mode

    .code64
ap_long:
    data_segments
    movabs rax, offset {ap_stack}
    mov rsp, [rax]
    xor ebp, ebp
    movabs rax, offset {ap_entry}
    call rax
5:
    hlt
    jmp 5b

    .code64
boot_long:
    data_segments
    movabs rsp, offset kernel_stack_top
    mov edi, esi
    xor ebp, ebp
    movabs rax, offset {entry}
    call rax
3:
    hlt
    jmp 3b

    .section .bss.kernel_stack, "aw", @nobits
    .p2align 12
    .global cpu_stacks
cpu_stacks:
    .rept {cpus}
    .skip {guard_size}
    .skip {stack_size}
    .skip {guard_size}
    .skip {df_stack_size}
    .endr
    .global kernel_stack_top
    .set kernel_stack_top, cpu_stacks + {guard_size} + {stack_size}

    .section .text
    "#,
    entry = sym super::kmain_entry,
    ap_entry = sym super::smp::ap_entry,
    ap_stack = sym super::smp::AP_STACK_TOP,
    stack_size = const KERNEL_STACK_SIZE,
    df_stack_size = const DOUBLE_FAULT_STACK_SIZE,
    guard_size = const GUARD_SIZE,
    cpus = const MAX_RUN_CPUS,
);

unsafe extern "C" {
    /// The stacks of every processor (defined above).
    #[link_name = "cpu_stacks"]
    static CPU_STACKS: u8;
    /// First byte of the kernel's text (linker script; page aligned).
    #[link_name = "__text_start"]
    static TEXT_START: u8;
    /// First byte of the kernel's read-only data, just past the text (page aligned).
    #[link_name = "__rodata_start"]
    static RODATA_START: u8;
    /// First byte of the kernel's data and bss, just past the read-only data (page aligned).
    #[link_name = "__data_start"]
    static DATA_START: u8;
    /// First byte past the kernel image (page aligned).
    #[link_name = "__image_end"]
    static IMAGE_END: u8;
    /// First byte of the kernel image in physical memory.
    #[link_name = "__kernel_phys_start"]
    static KERNEL_PHYS_START: u8;
    /// First byte after the kernel image in physical memory.
    #[link_name = "__kernel_phys_end"]
    static KERNEL_PHYS_END: u8;
}

/// The bytes of one processor's stacks: a guard page, its kernel stack, a guard page, its
/// double-fault stack.
const CPU_STACKS_SIZE: usize = 2 * GUARD_SIZE + KERNEL_STACK_SIZE + DOUBLE_FAULT_STACK_SIZE;

/// Where processor `cpu`'s stacks start (its first guard page).
fn cpu_stacks(cpu: usize) -> u64 {
    // Only the address of the symbol is taken, never its value.
    &raw const CPU_STACKS as u64 + (cpu * CPU_STACKS_SIZE) as u64
}

/// The address just past processor `cpu`'s kernel stack: where its entries from ring 3 run.
pub fn kernel_stack_top(cpu: usize) -> u64 {
    kernel_stack_bottom(cpu) + KERNEL_STACK_SIZE as u64
}

/// The lowest address of processor `cpu`'s kernel stack: an overflow goes below it, into its
/// guard page.
pub fn kernel_stack_bottom(cpu: usize) -> u64 {
    cpu_stacks(cpu) + GUARD_SIZE as u64
}

/// The address just past processor `cpu`'s double-fault stack (IST 1).
pub fn double_fault_stack_top(cpu: usize) -> u64 {
    cpu_stacks(cpu + 1)
}

/// Whether `virt` is one of the guard pages the kernel's tables leave unmapped: under each
/// processor's kernel stack and under its double-fault stack.
pub fn is_guard_page(virt: u64) -> bool {
    (0..MAX_RUN_CPUS).any(|cpu| virt == cpu_stacks(cpu) || virt == kernel_stack_top(cpu))
}

/// The parts of the kernel image as virtual addresses, each page aligned: text, read-only
/// data, and data with bss, in this order, back to back.
pub struct ImageLayout {
    /// Start of the text.
    pub text: u64,
    /// Start of the read-only data (end of the text).
    pub rodata: u64,
    /// Start of the data and bss (end of the read-only data).
    pub data: u64,
    /// End of the image.
    pub end: u64,
}

/// Where the parts of the kernel image are (from the linker script's symbols).
pub fn image_layout() -> ImageLayout {
    ImageLayout {
        text: &raw const TEXT_START as u64,
        rodata: &raw const RODATA_START as u64,
        data: &raw const DATA_START as u64,
        end: &raw const IMAGE_END as u64,
    }
}

/// The physical address of `virt`, an address inside the kernel image's mapping.
pub fn image_to_phys(virt: u64) -> u64 {
    virt - KERNEL_VMA
}

/// The physical range `[start, end)` the kernel image occupies.
pub fn kernel_image() -> (u64, u64) {
    // The linker-script symbols are absolute with physical values: the address is the value.
    (
        &raw const KERNEL_PHYS_START as u64,
        &raw const KERNEL_PHYS_END as u64,
    )
}

/// The kernel-virtual address of physical address `phys` in the physical memory window.
pub fn phys_to_virt(phys: u64) -> u64 {
    PHYS_OFFSET + phys
}
