//! libvm's entry for faults a process handles itself (see [`crate::fault`]): memd resumes a
//! faulting thread at [`fault_entry`] on the alternate stack, with rsp = rdi = the
//! [`FaultFrame`] the kernel wrote; the entry saves the FPU and SSE state below the frame
//! (`fxsave`: the handler is Rust code, free to use them), calls the handler registered with
//! [`handle_faults`], restores the state and gives the frame's registers back to the thread
//! with the kernel's `fault_return`.

use crate::error::VmResult;
use crate::fault::FaultFrame;
use crate::transport::Transport;
use crate::vm::Vm;
use core::arch::naked_asm;
use core::sync::atomic::{AtomicUsize, Ordering};
use kernel_shim::abi as nr;

/// The handler [`fault_entry`] calls (a `fn(&mut FaultFrame)`; 0 before any).
static HANDLER: AtomicUsize = AtomicUsize::new(0);

/// Runs `handler` for every fault of this process that would kill it, on the alternate stack
/// `stack` (at least [`crate::fault::MIN_STACK`] bytes; a fault inside the handler kills the
/// process). The handler may change mappings and the frame's registers; when it returns the
/// thread goes on with them (the faulting instruction is tried again unless `rip` moved).
pub fn handle_faults<T: Transport>(
    vm: &Vm<T>,
    handler: fn(&mut FaultFrame),
    stack: &'static mut [u8],
) -> VmResult<()> {
    HANDLER.store(handler as usize, Ordering::Release);
    let entry = fault_entry as *const () as u64;
    vm.set_fault_handler(entry, stack.as_mut_ptr() as u64, stack.len() as u64)?;
    super::thread::note_alt_stack(true);
    Ok(())
}

/// Gives the calling thread its own alternate stack for the handler [`handle_faults`]
/// registered (`None`: none, and the handler runs on the thread's own stack), as a thread
/// calls `sigaltstack`. Each thread that may fault while another handles a fault should have
/// one, or run the handler on its own stack: two threads never share one. A thread
/// [`super::thread::spawn`] started gives its stack back when it ends. A call before
/// [`handle_faults`] is `InvalidAddress` (there is no entry to run on it).
pub fn alt_stack<T: Transport>(vm: &Vm<T>, stack: Option<&'static mut [u8]>) -> VmResult<()> {
    if HANDLER.load(Ordering::Acquire) == 0 {
        return Err(crate::error::VmError::InvalidAddress);
    }
    let entry = fault_entry as *const () as u64;
    let (at, len) = stack.map_or((0, 0), |s| (s.as_mut_ptr() as u64, s.len() as u64));
    vm.set_fault_handler(entry, at, len)?;
    super::thread::note_alt_stack(len != 0);
    Ok(())
}

/// Gives the calling thread's alternate stack back (as the thread ends).
pub(crate) fn drop_alt_stack() -> VmResult<()> {
    let entry = fault_entry as *const () as u64;
    crate::global::vm_set_fault_handler(entry, 0, 0)?;
    super::thread::note_alt_stack(false);
    Ok(())
}

/// Called by [`fault_entry`] with the frame.
extern "C" fn dispatch(frame: *mut FaultFrame) {
    let handler = HANDLER.load(Ordering::Acquire);
    if handler == 0 {
        // Unreachable (the entry is registered only after the handler is stored); should it
        // happen, the process ends as a shell reports a death by SIGSEGV.
        crate::sys::raw::exit(128 + u64::from(crate::fault::SIGSEGV));
    }
    // SAFETY: `HANDLER` only ever holds 0 or a `fn(&mut FaultFrame)` stored by
    // `handle_faults`, and the two have the same size.
    let handler: fn(&mut FaultFrame) = unsafe { core::mem::transmute(handler) };
    // SAFETY: the kernel wrote the frame at rdi, 16-byte aligned, in this thread's alternate
    // stack, and nothing else refers to it while the handler runs.
    handler(unsafe { &mut *frame });
}

/// The entry memd resumes a faulting thread at (rsp = rdi = the frame, 16-byte aligned).
#[unsafe(naked)]
unsafe extern "C" fn fault_entry() -> ! {
    naked_asm!(
        "mov rbx, rdi",
        "sub rsp, 512",
        "fxsave64 [rsp]",
        "call {dispatch}",
        "fxrstor64 [rsp]",
        "mov rdi, rbx",
        "mov eax, {fault_return}",
        "syscall",
        // The frame could not be read back: nothing to return to.
        "ud2",
        dispatch = sym dispatch,
        fault_return = const nr::FAULT_RETURN,
    )
}
