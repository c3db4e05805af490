//! The seed's free functions, bound to the transport of the calling process.
//!
//! On the metal a process has one transport, installed once at start with [`set_transport`].
//! In the hosted testbed many simulated processes share one host process, one per thread: with
//! feature `std`, `bind_thread` gives the calling thread a transport of its own, which takes
//! precedence over the process-wide one. Without any transport every function fails with
//! [`NO_TRANSPORT`]; none of them panics.

use crate::error::{VmError, VmResult};
use crate::flags::{MmapFlags, ProtectionFlags};
use crate::transport::Transport;
use crate::vm::{MemoryStats, Vm};
use syscall::error::ENOSYS;

#[cfg(any(feature = "std", test))]
use alloc::sync::Arc;
#[cfg(any(feature = "std", test))]
use core::cell::RefCell;

/// The error of every free function called before any transport is installed (`ENOSYS`, kept
/// apart from [`VmError::BadRequest`], which is memd refusing a message).
pub const NO_TRANSPORT: VmError = VmError::Other(ENOSYS);

/// A transport that can be installed once and read from any thread afterwards.
struct Slot(spin::Once<&'static (dyn Transport + Sync)>);

impl Slot {
    const fn new() -> Slot {
        Slot(spin::Once::new())
    }

    /// Installs `transport` unless one is installed already ([`VmError::AlreadyMapped`]).
    fn set(&self, transport: &'static (dyn Transport + Sync)) -> VmResult<()> {
        let mut installed = false;
        self.0.call_once(|| {
            installed = true;
            transport
        });
        if installed {
            Ok(())
        } else {
            Err(VmError::AlreadyMapped)
        }
    }

    fn get(&self) -> Option<&'static (dyn Transport + Sync)> {
        self.0.get().copied()
    }
}

/// The process-wide transport.
static PROCESS: Slot = Slot::new();

/// Installs the process-wide transport. It can be installed once per process; a second call
/// changes nothing and fails with [`VmError::AlreadyMapped`].
pub fn set_transport(transport: &'static (dyn Transport + Sync)) -> VmResult<()> {
    PROCESS.set(transport)
}

#[cfg(any(feature = "std", test))]
std::thread_local! {
    /// The calling thread's own transport, if bound.
    static THREAD: RefCell<Option<Arc<dyn Transport + Send + Sync>>> = const { RefCell::new(None) };
}

/// Binds `transport` to the calling thread: until [`unbind_thread`], the free functions called
/// on this thread use it instead of the process-wide one. Returns the binding it replaces.
/// (During the destruction of the thread's locals nothing can be bound: `transport` is dropped
/// and `None` returned.)
#[cfg(any(feature = "std", test))]
pub fn bind_thread(
    transport: Arc<dyn Transport + Send + Sync>,
) -> Option<Arc<dyn Transport + Send + Sync>> {
    THREAD
        .try_with(|bound| bound.replace(Some(transport)))
        .ok()
        .flatten()
}

/// Removes the calling thread's binding, returning it; the free functions called on this thread
/// use the process-wide transport again.
#[cfg(any(feature = "std", test))]
pub fn unbind_thread() -> Option<Arc<dyn Transport + Send + Sync>> {
    THREAD.try_with(|bound| bound.take()).ok().flatten()
}

/// Runs `f` with a handle on the calling thread's transport, else the process-wide one. A
/// thread whose locals are already destroyed counts as unbound.
fn with_vm<R>(f: impl FnOnce(&Vm<&dyn Transport>) -> VmResult<R>) -> VmResult<R> {
    #[cfg(any(feature = "std", test))]
    {
        // The binding is cloned out, so a call made while the transport runs (or a binding
        // changed meanwhile) never meets a borrowed cell.
        let bound = THREAD
            .try_with(|bound| bound.try_borrow().ok().and_then(|b| b.clone()))
            .ok()
            .flatten();
        if let Some(transport) = bound {
            return f(&Vm::new(&*transport));
        }
    }
    match PROCESS.get() {
        Some(transport) => f(&Vm::new(transport)),
        None => Err(NO_TRANSPORT),
    }
}

/// Maps `length` bytes with protection `prot` (see [`Vm::mmap`]); `addr` is the fixed address
/// or the hint (null: anywhere). Returns the mapping.
pub fn vm_mmap(
    addr: *mut u8,
    length: usize,
    prot: ProtectionFlags,
    flags: MmapFlags,
) -> VmResult<*mut u8> {
    with_vm(|vm| vm.mmap_ptr(addr.addr(), length, prot, flags))
}

/// Unmaps every page of `[addr, addr + length)` (see [`Vm::munmap`]).
pub fn vm_munmap(addr: *mut u8, length: usize) -> VmResult<()> {
    with_vm(|vm| vm.munmap(addr.addr(), length))
}

/// Registers the process's fault handler and the calling thread's alternate stack (see
/// [`Vm::set_fault_handler`]); the entry registered before.
pub fn vm_set_fault_handler(entry: u64, stack: u64, stack_len: u64) -> VmResult<u64> {
    with_vm(|vm| vm.set_fault_handler(entry, stack, stack_len))
}

/// Sets the protection of `[addr, addr + length)` (see [`Vm::mprotect`]).
pub fn vm_mprotect(addr: *mut u8, length: usize, prot: ProtectionFlags) -> VmResult<()> {
    with_vm(|vm| vm.mprotect(addr.addr(), length, prot))
}

/// Advice about `[addr, addr + length)` (see [`Vm::madvise`]): `VmAllocator` gives memd back
/// the pages of freed blocks with `MADV_DONTNEED`.
pub(crate) fn vm_madvise(addr: *mut u8, length: usize, advice: u64) -> VmResult<()> {
    with_vm(|vm| vm.madvise(addr.addr(), length, advice))
}

/// Resizes, or with `flags` `MREMAP_MAYMOVE` moves, the mapping at `addr` (see
/// [`Vm::mremap`]): `VmAllocator` grows a large block in place, or moves its pages rather
/// than copying them. Returns where the mapping is now.
pub(crate) fn vm_mremap(
    addr: *mut u8,
    old_len: usize,
    new_len: usize,
    flags: u64,
) -> VmResult<*mut u8> {
    with_vm(|vm| vm.mremap(addr.addr(), old_len, new_len, flags, 0))
        .map(core::ptr::with_exposed_provenance_mut)
}

/// Which pages of `[addr, addr + length)` are resident (see [`Vm::mincore`]): `VmAllocator`
/// zeroes only those of a block handed out zeroed, the others read zero already.
pub(crate) fn vm_mincore(addr: *mut u8, length: usize, vec: &mut [u8]) -> VmResult<()> {
    with_vm(|vm| vm.mincore(addr.addr(), length, vec))
}

/// Sets the program break (0 only asks for it); returns the break now (see [`Vm::brk`]).
pub fn vm_brk(addr: usize) -> VmResult<usize> {
    with_vm(|vm| vm.brk(addr))
}

/// Moves the program break by `increment`; returns the old break (see [`Vm::sbrk`]).
pub fn vm_sbrk(increment: isize) -> VmResult<usize> {
    with_vm(|vm| vm.sbrk(increment))
}

/// The caller's memory summary (see [`Vm::memory_stats`]).
pub fn get_memory_stats() -> VmResult<MemoryStats> {
    with_vm(|vm| vm.memory_stats())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{self, Request};
    use crate::transport::doubles::{Recorder, answering};
    use std::thread;

    // No test installs the process-wide transport: `Slot` is tested on an instance of its own,
    // so the free functions of an unbound thread always meet no transport.

    fn every_function() -> [VmResult<usize>; 6] {
        let p = core::ptr::without_provenance_mut(0x4000_0000);
        [
            vm_mmap(
                p,
                4096,
                ProtectionFlags::READ,
                MmapFlags::anonymous_private(),
            )
            .map(|p| p.addr()),
            vm_munmap(p, 4096).map(|_| 0),
            vm_mprotect(p, 4096, ProtectionFlags::NONE).map(|_| 0),
            vm_brk(0),
            vm_sbrk(4096),
            get_memory_stats().map(|s| s.mapped_pages),
        ]
    }

    #[test]
    fn without_a_transport_every_function_fails() {
        assert!(unbind_thread().is_none());
        for result in every_function() {
            assert_eq!(result, Err(NO_TRANSPORT));
        }
    }

    #[test]
    fn a_slot_is_set_once() {
        type Answer = fn(&proto::Sqe, &mut [u8]) -> proto::Cqe;
        static FIRST: Recorder<Answer> =
            Recorder::new(|sqe: &proto::Sqe, _: &mut [u8]| proto::encode_reply(sqe.tag, Ok(1)));
        let slot = Slot::new();
        assert!(slot.get().is_none());
        assert_eq!(slot.set(&FIRST), Ok(()));
        assert_eq!(slot.set(&FIRST), Err(VmError::AlreadyMapped));
        let got = slot.get().unwrap();
        let reply = got.call(&Request::Fork.encode(), &mut []);
        assert_eq!(proto::decode_reply(&reply), Ok(1));
    }

    #[test]
    fn each_thread_sees_its_own_transport() {
        let workers: Vec<_> = [0x1000_0000u64, 0x2000_0000]
            .into_iter()
            .map(|brk| {
                thread::spawn(move || {
                    let memd = Arc::new(answering(Ok(brk)));
                    assert!(bind_thread(memd.clone()).is_none());
                    for _ in 0..100 {
                        assert_eq!(vm_brk(0), Ok(brk as usize));
                        assert_eq!(vm_sbrk(0), Ok(brk as usize));
                    }
                    assert_eq!(memd.sent().len(), 200);
                    // Rebinding returns the old binding; unbinding leaves no transport.
                    let other = Arc::new(answering(Ok(7)));
                    assert!(bind_thread(other).is_some());
                    assert_eq!(vm_brk(0), Ok(7));
                    assert!(unbind_thread().is_some());
                    assert_eq!(vm_brk(0), Err(NO_TRANSPORT));
                    assert_eq!(memd.sent().len(), 200);
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
    }

    #[test]
    fn errors_from_memd_come_back() {
        bind_thread(Arc::new(answering(Err(VmError::LimitExceeded))));
        for result in every_function() {
            assert_eq!(result, Err(VmError::LimitExceeded));
        }
        unbind_thread();
    }
}
