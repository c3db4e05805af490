//! Self tests of the kernel's own protections, chosen on the command line with
//! `selftest=NAME`: each does what only a kernel bug would, which must end in a fatal report
//! (of a ring-0 fault, or of the panic; QEMU exit status 35) and never succeed. The QEMU tests
//! boot each one.
//! Every fatal report ends with a backtrace ([`super::backtrace`]).
//!
//! | NAME | what the kernel does | the report |
//! |---|---|---|
//! | `kernel-fault` | reads an unmapped kernel address | #PF, page not present, cr2 `0xffff900000000000` |
//! | `panic` | panics | the panic report, with its backtrace |
//! | `write-text` | writes to its own text | #PF, protection violation, write |
//! | `write-rodata` | writes to its read-only data | #PF, protection violation, write |
//! | `write-window-text` | writes to its text through the physical window | #PF, protection violation, write |
//! | `exec-data` | writes a `ret` instruction into its data and calls it | #PF, protection violation, instruction fetch |
//! | `exec-window` | calls one of its functions through the physical window | #PF, protection violation, instruction fetch |
//! | `stack-overflow` | pushes below its stack | #DF (the push faults on the guard page, and so does the fault's own frame) |
//! | `smep` | calls the first program's entry point (needs SMEP) | #PF, protection violation, instruction fetch |
//! | `smap` | reads the first program's stack directly (needs SMAP) | #PF, protection violation, read |
//!
//! All but the last two run before any program is loaded; those two once the programs are
//! loaded, in the first program's address space.

use super::boot;
use super::bootinfo::BootInfo;
use super::elf::STACK_TOP;
use super::global::Global;
use super::kmap::Protections;
use super::pt;
use super::state::Kernel;
use super::thread::State;
use core::ptr;

/// Writable kernel data (bss) that `exec-data` fills with `ret` instructions and calls.
static DATA_RET: Global<[u8; 16]> = Global::new([0; 16]);
/// A value in the kernel's read-only data.
static RODATA_WORD: u64 = 0x5E1F_7E57;

/// A kernel function to write over and to call through the window.
#[inline(never)]
fn target() -> u64 {
    RODATA_WORD
}

fn announce(name: &str, what: &str) {
    log::warn!("kernel-shim: self test {}: {}", name, what);
}

/// Calls the code at `addr` (which must fault before running anything).
fn call(addr: u64) {
    // SAFETY: only ever given addresses that are not executable in ring 0, so the call raises
    // #PF on its fetch and the kernel stops with its report: no code there runs.
    let f: extern "C" fn() = unsafe { core::mem::transmute(addr as *const ()) };
    f();
}

/// Runs the self tests that need no program, as chosen on `info`'s command line.
pub fn before_programs(info: &BootInfo) {
    if info.has_flag("selftest=panic") {
        announce("panic", "panicking");
        panic!("self test");
    }
    if info.has_flag("selftest=kernel-fault") {
        announce("kernel-fault", "touching an unmapped kernel address");
        // SAFETY: deliberately faulting: the address is in an absent PML4 slot, so the read
        // raises #PF, which the kernel reports before halting. Nothing is ever read.
        unsafe { ptr::read_volatile(0xFFFF_9000_0000_0000 as *const u64) };
    }
    let text = target as *const () as u64;
    let text_in_window = boot::phys_to_virt(boot::image_to_phys(text));
    if info.has_flag("selftest=write-text") {
        announce("write-text", "writing to the kernel's text");
        // SAFETY: deliberately faulting: the text is mapped read-only, so the write raises #PF
        // and the kernel stops; the byte is never changed.
        unsafe { ptr::write_volatile(text as *mut u8, 0xCC) };
    }
    if info.has_flag("selftest=write-rodata") {
        announce("write-rodata", "writing to the kernel's read-only data");
        // SAFETY: as for `write-text`, in the read-only data.
        unsafe { ptr::write_volatile(&raw const RODATA_WORD as *mut u64, 0) };
    }
    if info.has_flag("selftest=write-window-text") {
        announce(
            "write-window-text",
            "writing to the kernel's text through the window",
        );
        // SAFETY: as for `write-text`: the window maps the kernel image read-only.
        unsafe { ptr::write_volatile(text_in_window as *mut u8, 0xCC) };
    }
    if info.has_flag("selftest=exec-data") {
        announce(
            "exec-data",
            "writing a ret into the kernel's data and calling it",
        );
        // SAFETY: boot, single-threaded: nothing else refers to DATA_RET.
        unsafe { ptr::write_volatile(DATA_RET.as_ptr(), [0xC3; 16]) };
        call(DATA_RET.as_ptr() as u64);
    }
    if info.has_flag("selftest=exec-window") {
        announce(
            "exec-window",
            "calling a kernel function through the window",
        );
        call(text_in_window);
    }
    if info.has_flag("selftest=stack-overflow") {
        announce("stack-overflow", "pushing below the kernel stack");
        // SAFETY: deliberately faulting: the push writes the guard page under the stack,
        // which is unmapped; the #PF cannot push its frame there either, so the CPU raises a
        // double fault on its own stack and the kernel reports it. Nothing returns.
        unsafe {
            core::arch::asm!(
                "mov rsp, {bottom}",
                "push rax",
                bottom = in(reg) boot::kernel_stack_bottom(0),
                options(noreturn)
            )
        }
    }
}

/// Runs the self tests that need a program loaded (`smep`, `smap`), in the address space of
/// the first program, if chosen on `info`'s command line and the CPU has the protection.
pub fn after_programs(k: &Kernel, info: &BootInfo, p: Protections) {
    let smep = info.has_flag("selftest=smep");
    let smap = info.has_flag("selftest=smap");
    if !smep && !smap {
        return;
    }
    let Some(t) = k.threads.iter().find(|t| t.state.get() != State::Free) else {
        log::warn!("kernel-shim: self test: no program loaded");
        return;
    };
    pt::activate(k.spaces[t.space].root);
    if smap {
        if !p.smap {
            log::warn!("kernel-shim: self test smap: the CPU has no SMAP");
            return;
        }
        announce("smap", "reading a program's stack directly");
        // SAFETY: deliberately faulting: the program's stack page is a user page, so with
        // SMAP (and RFLAGS.AC clear) the read raises #PF and the kernel stops.
        unsafe { ptr::read_volatile((STACK_TOP - 8) as *const u64) };
    }
    if smep {
        if !p.smep {
            log::warn!("kernel-shim: self test smep: the CPU has no SMEP");
            return;
        }
        announce("smep", "calling a program's entry point");
        call(t.frame.rip);
    }
}
