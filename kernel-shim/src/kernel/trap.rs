//! Entry and exit: the interrupt descriptor table, the exception/IRQ stubs, the `syscall`
//! entry, and the way back to ring 3.
//!
//! Every entry from ring 3 builds the same [`TrapFrame`] straight in the running thread's slot
//! of the thread table: the CPU pushes its part there (the TSS's `rsp0` is the end of that
//! frame, set at each return to ring 3) and the common entry pushes the rest, then moves to
//! the processor's kernel stack and calls [`super::dispatch`]; the `syscall` entry pushes a
//! whole frame there itself (at the per-CPU frame end, [`percpu`]) and calls
//! [`super::syscall_dispatch`]. Neither returns: each ends by [`return_to_user`]-ing a thread,
//! popping that thread's frame from its slot (a call answered at once: [`return_from_syscall`],
//! by `sysretq`). No frame is copied on the way in or out. The kernel keeps no state on its
//! stack between entries, so one kernel stack per processor serves every thread. Every entry
//! from ring 3 swaps in the kernel's GS base (`swapgs`: the per-CPU block) before it touches
//! anything per processor, and every return swaps it out just before `sysretq` or `iretq`. An
//! entry from ring 0 (an interrupt of an idle processor, a kernel fault) builds its frame on
//! the stack it was on and keeps GS. rbp is 0 when `dispatch` is called (the interrupted one is in the
//! frame): the chain of frame pointers a backtrace walks ends there ([`super::backtrace`]).
//!
//! Between the moment `resume` points the stack at a thread's slot and the `sysretq` or
//! `iretq`, the stack pointer is inside the thread table, with interrupts off: only an NMI or
//! a machine check could arrive then, and the kernel expects neither (see the README's limits).
//!
//! **The CPU state a process controls.** A process sets most of RFLAGS with `popfq` and, by
//! where it faults or calls from, its RIP; the kernel must neither run with that state nor
//! hand it back unchecked:
//!
//! - *On entry* the kernel's own RFLAGS are exactly `0x2` (every flag clear, interrupts off):
//!   `syscall` clears, through SFMASK ([`SYSCALL_FLAG_MASK`]), CF PF AF ZF SF TF IF DF OF,
//!   IOPL, NT, RF, AC and ID, as Linux does; an interrupt gate clears IF, TF, NT, RF and VM
//!   itself; and the common entry path then loads `0x2` with `popfq` for every other entry,
//!   which also clears DF and AC (an interrupt gate keeps them: AC set would switch SMAP off in
//!   ring 0). So a process's NT never reaches the kernel's `iretq`, its DF never a kernel string
//!   copy, its AC never the kernel's accesses.
//! - *On every return to ring 3* the saved frame is rewritten first, in this one place
//!   (`sanitize`, for [`return_to_user`] and [`return_from_syscall`]): RFLAGS become `(saved & `[`USER_RFLAGS`]`) | IF | 0x2` — the process keeps
//!   CF, PF, AF, ZF, SF, OF, DF, TF (single-stepping itself: the next instruction traps to
//!   its pager), AC (no effect: CR0.AM is clear) and ID; NT, IOPL, RF, VM, VIF, VIP and every
//!   reserved bit are cleared and IF is set. CS and SS are forced to the user selectors. RIP
//!   must lie below the user-half end (`0x0000_8000_0000_0000`): a frame whose RIP does not
//!   (a `syscall` in the last bytes of the user half, a jump to a non-canonical address that
//!   a pager resumed) never reaches `sysretq` or `iretq` — whose non-canonical return would
//!   fault in ring 0 — and the scheduler kills the thread instead, as a #GP.

use super::gdt::{DOUBLE_FAULT_IST_INDEX, KERNEL_CS, USER_CS, USER_SS};
use super::global::Global;
use super::percpu;
use core::arch::{global_asm, naked_asm};
use kernel_shim::paging::USER_END;
use x86_64::structures::idt::InterruptDescriptorTable;
use x86_64::{PrivilegeLevel, VirtAddr};

/// The `vector` value of a frame built by the `syscall` entry.
pub const SYSCALL_VECTOR: u64 = 0x100;
/// How many IDT vectors have stubs: the 32 exceptions, the 16 legacy PIC interrupts, and the
/// two interrupts processors send each other (reschedule, 48, and TLB shootdown, 49).
pub const STUB_COUNT: usize = 50;
/// The interrupt that wakes an idle processor to look at the run queue.
pub const RESCHEDULE_VECTOR: u64 = 48;

/// The general-protection vector: a thread that cannot return to ring 3 is killed as a #GP.
pub const GENERAL_PROTECTION: u64 = 13;
/// The breakpoint vector: the one gate ring 3 may raise with `int3`.
pub const BREAKPOINT: u64 = 3;

/// RFLAGS bits.
pub mod rflags {
    /// Carry.
    pub const CF: u64 = 1 << 0;
    /// Always one.
    pub const FIXED: u64 = 1 << 1;
    /// Parity.
    pub const PF: u64 = 1 << 2;
    /// Auxiliary carry.
    pub const AF: u64 = 1 << 4;
    /// Zero.
    pub const ZF: u64 = 1 << 6;
    /// Sign.
    pub const SF: u64 = 1 << 7;
    /// Trap (single step).
    pub const TF: u64 = 1 << 8;
    /// Interrupts enabled.
    pub const IF: u64 = 1 << 9;
    /// Direction.
    pub const DF: u64 = 1 << 10;
    /// Overflow.
    pub const OF: u64 = 1 << 11;
    /// I/O privilege level (two bits).
    pub const IOPL: u64 = 3 << 12;
    /// Nested task: an `iretq` with it set raises #GP in long mode.
    pub const NT: u64 = 1 << 14;
    /// Resume (suppresses instruction breakpoints once).
    pub const RF: u64 = 1 << 16;
    /// Alignment check in ring 3; in ring 0 it switches SMAP off.
    pub const AC: u64 = 1 << 18;
    /// CPUID available (a process may toggle it to find out).
    pub const ID: u64 = 1 << 21;
}

/// The RFLAGS bits a process keeps across a return to ring 3 (see the module doc); every
/// other bit is cleared, then IF and the fixed bit 1 are set.
pub const USER_RFLAGS: u64 = {
    use rflags::*;
    CF | PF | AF | ZF | SF | TF | DF | OF | AC | ID
};

/// SFMASK: the RFLAGS bits `syscall` clears on entry (Linux's set).
pub const SYSCALL_FLAG_MASK: u64 = {
    use rflags::*;
    CF | PF | AF | ZF | SF | TF | IF | DF | OF | IOPL | NT | RF | AC | ID
};

/// The registers of a thread, as saved on entry to the kernel. Aligned to 16 bytes, and 176
/// bytes long, so the end of a thread's frame is a valid `rsp0` (the CPU aligns the stack to
/// 16 bytes before it pushes an interrupt frame).
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, Default)]
#[allow(missing_docs)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Interrupt vector, or [`SYSCALL_VECTOR`].
    pub vector: u64,
    /// CPU error code (0 where the CPU pushes none).
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const _: () = assert!(size_of::<TrapFrame>() == 176);

/// Offset of `cs` in a [`TrapFrame`].
const CS_OFFSET: usize = core::mem::offset_of!(TrapFrame, cs);

impl TrapFrame {
    /// All zero (not a valid frame to resume).
    pub const ZERO: TrapFrame = TrapFrame {
        r15: 0,
        r14: 0,
        r13: 0,
        r12: 0,
        r11: 0,
        r10: 0,
        r9: 0,
        r8: 0,
        rbp: 0,
        rdi: 0,
        rsi: 0,
        rdx: 0,
        rcx: 0,
        rbx: 0,
        rax: 0,
        vector: 0,
        error: 0,
        rip: 0,
        cs: 0,
        rflags: 0,
        rsp: 0,
        ss: 0,
    };

    /// A fresh ring-3 frame starting at `rip` with stack `rsp`, interrupts enabled.
    pub fn user(rip: u64, rsp: u64) -> TrapFrame {
        TrapFrame {
            rip,
            rsp,
            cs: USER_CS as u64,
            ss: USER_SS as u64,
            rflags: rflags::IF | rflags::FIXED,
            ..TrapFrame::default()
        }
    }

    /// Whether the frame was saved while running in ring 3.
    pub fn is_user(&self) -> bool {
        self.cs & 3 == 3
    }
}

/// Pushes the general registers of a [`TrapFrame`], rax first (its fields from `rax` up to
/// `r15`), for the entries that build frames: `trap_common` and the `syscall` entry.
macro_rules! push_registers {
    () => {
        concat!(
            "push rax\n",
            "push rbx\n",
            "push rcx\n",
            "push rdx\n",
            "push rsi\n",
            "push rdi\n",
            "push rbp\n",
            "push r8\n",
            "push r9\n",
            "push r10\n",
            "push r11\n",
            "push r12\n",
            "push r13\n",
            "push r14\n",
            "push r15\n",
        )
    };
}

/// Pops what [`push_registers`] pushed, with rsp at the frame: rsp is left at its `vector`.
macro_rules! pop_registers {
    () => {
        concat!(
            "pop r15\n",
            "pop r14\n",
            "pop r13\n",
            "pop r12\n",
            "pop r11\n",
            "pop r10\n",
            "pop r9\n",
            "pop r8\n",
            "pop rbp\n",
            "pop rdi\n",
            "pop rsi\n",
            "pop rdx\n",
            "pop rcx\n",
            "pop rbx\n",
            "pop rax\n",
        )
    };
}

/// Leaves to ring 3 by `sysretq`, with rsp at the frame's `vector` (after [`pop_registers`]):
/// rcx = the frame's rip, r11 = its rflags, rsp = its rsp.
macro_rules! sysret_tail {
    () => {
        concat!(
            "mov rcx, [rsp + 16]\n",
            "mov r11, [rsp + 32]\n",
            "mov rsp, [rsp + 40]\n",
            "swapgs\n",
            "sysretq\n",
        )
    };
}

// Stubs: push a zero error code where the CPU pushes none, push the vector, join `trap_common`.
// Each stub is 16 bytes, so stub `n` is at `trap_stubs + 16 * n`.
global_asm!(
    r#"
    .section .text
    .p2align 4
    .global trap_stubs
trap_stubs:
    .set vec, 0
    .rept {count}
    .p2align 4
    .if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    push vec
    .else
    push 0
    push vec
    .endif
    jmp trap_common
    .set vec, vec + 1
    .endr

    .p2align 4
    .global trap_common
trap_common:
    "#,
    push_registers!(),
    r#"
    mov rdi, rsp
    test byte ptr [rsp + {cs}], 3
    jz 1f
    swapgs
    mov rsp, gs:[{stack_top}]
1:
    xor ebp, ebp
    push {kernel_flags}
    popfq
    call {dispatch}
    ud2
    "#,
    count = const STUB_COUNT,
    dispatch = sym super::dispatch,
    kernel_flags = const rflags::FIXED,
    cs = const CS_OFFSET,
    stack_top = const percpu::STACK_TOP,
);

unsafe extern "C" {
    #[link_name = "trap_stubs"]
    static TRAP_STUBS: u8;
}

/// The `syscall` entry (LSTAR): builds a [`TrapFrame`] with vector [`SYSCALL_VECTOR`] in the
/// running thread's slot, as `trap_common` does for the other entries, and calls
/// [`super::syscall_dispatch`] on the kernel stack.
///
/// The CPU has put the return address in rcx and the flags in r11, and cleared the flags of
/// [`SYSCALL_FLAG_MASK`] (SFMASK): interrupts are off and NT, AC, TF and DF clear. That leaves
/// RFLAGS exactly `0x2` (VM, VIF and VIP cannot be set in 64-bit ring 3), the value
/// `trap_common` loads with `popfq`, so this path needs no `popfq`.
#[unsafe(naked)]
pub extern "C" fn syscall_entry() {
    naked_asm!(
        "swapgs",
        "mov gs:[{scratch}], rsp",
        "mov rsp, gs:[{frame_end}]",
        "push {user_ss}",
        "push qword ptr gs:[{scratch}]",
        "push r11",
        "push {user_cs}",
        "push rcx",
        "push 0",
        "push {vector}",
        push_registers!(),
        "mov rdi, rsp",
        "mov rsp, gs:[{stack_top}]",
        "xor ebp, ebp",
        "call {dispatch}",
        "ud2",
        scratch = const percpu::USER_RSP,
        frame_end = const percpu::FRAME_END,
        stack_top = const percpu::STACK_TOP,
        user_ss = const USER_SS as u64,
        user_cs = const USER_CS as u64,
        vector = const SYSCALL_VECTOR,
        dispatch = sym super::syscall_dispatch,
    )
}

/// Why a thread cannot go back to ring 3: its saved RIP is not below the user-half end.
#[derive(Clone, Copy, Debug)]
pub struct OutsideUserHalf {
    /// The RIP it would have returned to.
    pub rip: u64,
}

/// Makes `frame` a valid ring-3 frame, the one place that does it (see the module doc):
/// RFLAGS masked to [`USER_RFLAGS`] plus IF, CS and SS the user selectors; an error, nothing
/// changed, when its RIP is not below the user-half end.
#[inline(always)]
fn sanitize(frame: &mut TrapFrame) -> Result<(), OutsideUserHalf> {
    if frame.rip >= USER_END {
        return Err(OutsideUserHalf { rip: frame.rip });
    }
    frame.rflags = (frame.rflags & USER_RFLAGS) | rflags::IF | rflags::FIXED;
    frame.cs = USER_CS as u64;
    frame.ss = USER_SS as u64;
    Ok(())
}

/// Returns to ring 3 with the registers of `frame`, the slot in the thread table of the
/// thread this processor runs, [`sanitize`]d first; the mode lock is given back just before.
/// The next entry from ring 3 on this processor builds its frame in the same slot (the per-CPU
/// frame end, the TSS's `rsp0`). Returns only when `frame`'s RIP is not below the user-half
/// end: then nothing was changed, the lock is still held, and the caller must kill the thread.
pub fn return_to_user(frame: &mut TrapFrame) -> OutsideUserHalf {
    if let Err(e) = sanitize(frame) {
        return e;
    }
    let end = (frame as *mut TrapFrame as u64) + size_of::<TrapFrame>() as u64;
    percpu::set_frame_end(end);
    super::gdt::set_rsp0(end);
    super::lock::release();
    // SAFETY: the frame is now a valid ring-3 frame: user selectors, sane flags and a RIP
    // below the user-half end (so canonical, as `sysretq` and `iretq` need); it lives in the
    // thread table, not on the kernel stack, and no other processor touches the slot of a
    // thread running here (one being ended elsewhere is first made to leave: `shootdown`).
    unsafe { resume(frame) }
}

/// [`return_to_user`] for the thread whose system call the kernel is answering at once, with
/// the frame the `syscall` entry built: the entry used that thread's slot, so the frame end
/// and `rsp0` are its own already, and the frame leaves by `sysretq`. Returns only when the
/// frame's RIP is not below the user-half end (nothing changed, the lock still held).
pub fn return_from_syscall(frame: &mut TrapFrame) -> OutsideUserHalf {
    if let Err(e) = sanitize(frame) {
        return e;
    }
    super::lock::release();
    // SAFETY: as in `return_to_user`; the frame was built by the `syscall` entry, so
    // `sysretq` is the way it leaves.
    unsafe { sysret(frame) }
}

/// Idles this processor: on the top of its kernel stack, interrupts on, halted until one
/// arrives; its entry (from ring 0) goes to [`super::dispatch`], which never comes back here.
/// Call without the mode lock, after loading the kernel's own tables.
#[unsafe(naked)]
pub extern "C" fn idle_wait() -> ! {
    naked_asm!(
        "mov rsp, gs:[{stack_top}]",
        "2:",
        "sti",
        "hlt",
        "cli",
        "jmp 2b",
        stack_top = const percpu::STACK_TOP,
    )
}

/// Pops `frame` where it is (the stack pointer goes into the thread table); a frame saved by
/// `syscall` leaves by `sysretq` (rcx and r11 are clobbered, as the system-call ABI says), any
/// other by `iretq`.
///
/// # Safety
/// `frame` must be a valid ring-3 frame (user selectors, RIP below the user-half end, sane
/// RFLAGS: [`return_to_user`] makes it so) that does not live on the kernel stack.
#[unsafe(naked)]
unsafe extern "C" fn resume(frame: *const TrapFrame) -> ! {
    naked_asm!(
        "mov rsp, rdi",
        pop_registers!(),
        "cmp qword ptr [rsp], {vector}",
        "jne 2f",
        sysret_tail!(),
        "2:",
        "add rsp, 16",
        "swapgs",
        "iretq",
        vector = const SYSCALL_VECTOR,
    )
}

/// [`resume`] of a frame the `syscall` entry built: by `sysretq`, without asking.
///
/// # Safety
/// As [`resume`], and `frame` was built by the `syscall` entry.
#[unsafe(naked)]
unsafe extern "C" fn sysret(frame: *const TrapFrame) -> ! {
    naked_asm!("mov rsp, rdi", pop_registers!(), sysret_tail!(),)
}

static IDT: Global<InterruptDescriptorTable> = Global::new(InterruptDescriptorTable::new());

/// Fills and loads the IDT (the `x86_64` crate's table): every exception the CPU may raise and
/// the 16 PIC interrupts get their stub as an interrupt gate (IF cleared on entry, the code
/// segment the current one: call after [`super::gdt::init`]); double faults run on their own
/// stack. Every gate has DPL 0, so `int n` from ring 3 is a #GP, except the breakpoint's: DPL 3
/// (as Linux's), so a process's `int3` is reported as the breakpoint it is.
///
/// The reserved vectors (15, 22 to 27, 31) stay absent (the crate keeps them out of reach and
/// the CPU never raises them); their stubs only keep stub `n` at `trap_stubs + 16 * n`.
pub fn init_idt() {
    let stub = |vector: u8| VirtAddr::new(&raw const TRAP_STUBS as u64 + 16 * vector as u64);
    // SAFETY: boot, before interrupts are enabled: nothing else refers to the IDT, and it does
    // not change once loaded below, so the reference may live for good.
    let idt = unsafe { &mut *IDT.as_ptr() };
    // SAFETY: stub `n` is the entry of vector `n`, and every stub takes the frame its vector
    // gives: it pushes a zero where the CPU pushes no error code (the same list of vectors as
    // the stubs' assembly), so each address suits its gate. The IST index is the double-fault
    // stack's, set in the TSS and used by no other gate.
    unsafe {
        for vector in [0, 1, 2, 4, 5, 6, 7, 9, 16, 19, 20, 28]
            .into_iter()
            .chain(32..STUB_COUNT as u8)
        {
            idt[vector].set_handler_addr(stub(vector));
        }
        idt.breakpoint
            .set_handler_addr(stub(BREAKPOINT as u8))
            .set_privilege_level(PrivilegeLevel::Ring3);
        idt.double_fault
            .set_handler_addr(stub(8))
            .set_stack_index(DOUBLE_FAULT_IST_INDEX);
        idt.invalid_tss.set_handler_addr(stub(10));
        idt.segment_not_present.set_handler_addr(stub(11));
        idt.stack_segment_fault.set_handler_addr(stub(12));
        idt.general_protection_fault.set_handler_addr(stub(13));
        idt.page_fault.set_handler_addr(stub(14));
        idt.alignment_check.set_handler_addr(stub(17));
        idt.machine_check.set_handler_addr(stub(18));
        idt.cp_protection_exception.set_handler_addr(stub(21));
        idt.vmm_communication_exception.set_handler_addr(stub(29));
        idt.security_exception.set_handler_addr(stub(30));
    }
    let idt: &'static InterruptDescriptorTable = idt;
    idt.load();
}

/// Loads the IDT [`init_idt`] filled, on a processor started after it.
pub fn load_idt() {
    // SAFETY: the IDT was filled at boot and never changes again: a shared reference to it
    // lives for good.
    let idt: &'static InterruptDescriptorTable = unsafe { &*IDT.as_ptr() };
    idt.load();
}

/// Programs this processor's `syscall` MSRs: STAR selectors, LSTAR entry, SFMASK
/// [`SYSCALL_FLAG_MASK`].
pub fn init_syscall() {
    use x86_64::registers::model_specific::Msr;
    // sysret loads CS = base + 16 and SS = base + 8 (user code 0x20, user data 0x18), syscall
    // loads CS = KERNEL_CS and SS = KERNEL_CS + 8.
    let sysret_base: u64 = 0x10;
    let star = (sysret_base << 48) | ((KERNEL_CS as u64) << 32);
    // SAFETY: the MSRs exist on every x86_64 CPU (EFER.SCE was set at boot); the entry point
    // is a valid naked function and the selectors match the GDT.
    unsafe {
        Msr::new(0xC000_0081).write(star);
        Msr::new(0xC000_0082).write(syscall_entry as *const () as u64);
        Msr::new(0xC000_0084).write(SYSCALL_FLAG_MASK);
    }
}
