//! Threads of the calling process, on the metal: [`spawn`] and [`JoinHandle::join`], futexes
//! ([`futex_wait`], [`futex_wake`]) and a [`Mutex`] built on them, and thread locals through
//! the FS base ([`tls_get`], [`tls_set`]).
//!
//! A thread's stack is a `MAP_STACK` mapping from memd: a Stack region with a Guard page under
//! it (an overflow faults there). Its FS base points at its [`Block`], whose first word points
//! at itself (the x86_64 TLS convention) and which holds [`TLS_SLOTS`] words of thread locals.
//! The first [`spawn`] (or thread-local access) of a process gives its first thread a block
//! too. A joined thread's stack and block are given back; a handle dropped unjoined detaches
//! the thread, whose stack and block then last as long as the process.
//!
//! The kernel bounds a process to [`kernel_shim::abi::MAX_THREADS_PER_SPACE`] threads
//! (`EAGAIN` beyond). The allocator (`VmAllocator`) is behind a lock, so `Vec` and `Box` work
//! from every thread.

use super::raw;
use crate::error::VmError;
use crate::flags::{MmapFlags, ProtectionFlags};
use crate::global::{vm_mmap, vm_munmap};
use alloc::boxed::Box;
use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

/// The stack a thread gets from [`spawn`]: 64 KiB (backed page by page as it is touched).
pub const DEFAULT_STACK: usize = 64 << 10;
/// Words of thread locals per thread.
pub const TLS_SLOTS: usize = 16;
/// The guard page memd places under a `MAP_STACK` mapping.
const GUARD: usize = 4096;

/// A thread's control block, where its FS base points.
#[repr(C, align(64))]
pub struct Block {
    /// The block's own address (`fs:0`, as the x86_64 TLS ABI has it).
    this: u64,
    /// The thread's locals.
    slots: [AtomicUsize; TLS_SLOTS],
    /// Whether the thread registered an alternate stack for faults (given back as it ends).
    alt_stack: AtomicBool,
}

impl Block {
    const fn new() -> Block {
        Block {
            this: 0,
            slots: [const { AtomicUsize::new(0) }; TLS_SLOTS],
            alt_stack: AtomicBool::new(false),
        }
    }
}

/// Notes whether the calling thread has an alternate stack registered with memd.
pub(crate) fn note_alt_stack(on: bool) {
    block().alt_stack.store(on, Ordering::Relaxed);
}

/// The first thread's block (the others' are on the heap).
struct MainBlock(UnsafeCell<Block>);
// SAFETY: only the first thread reaches it through FS after `main_block` set it up; the
// `Once` guards the one write of its self pointer.
unsafe impl Sync for MainBlock {}
static MAIN: MainBlock = MainBlock(UnsafeCell::new(Block::new()));
static MAIN_SET: spin::Once<()> = spin::Once::new();

/// Gives the first thread its block, once: a thread without one can only be the first (every
/// thread [`spawn`] starts has its own), and no other exists before the first `spawn`.
fn main_block() {
    MAIN_SET.call_once(|| {
        let at = MAIN.0.get();
        // SAFETY: the write happens once, before FS points at the block, so nothing else
        // reads the word concurrently.
        unsafe { (*at).this = at as u64 };
        let r = raw::set_tls(at as u64);
        debug_assert_eq!(r, 0);
    });
}

/// The calling thread's block.
fn block() -> &'static Block {
    main_block();
    let at: u64;
    // SAFETY: FS's base is the calling thread's block (its own, or the first thread's, set
    // just above): its first word holds the block's address.
    unsafe {
        core::arch::asm!("mov {}, fs:[0]", out(reg) at, options(nostack, readonly, preserves_flags))
    };
    // SAFETY: the address is a live block (a static, or one a running thread owns until it
    // is joined), never moved.
    unsafe { &*(at as *const Block) }
}

/// The calling thread's local word `slot` (< [`TLS_SLOTS`]; 0 until set).
pub fn tls_get(slot: usize) -> usize {
    block().slots[slot % TLS_SLOTS].load(Ordering::Relaxed)
}

/// Sets the calling thread's local word `slot` (< [`TLS_SLOTS`]).
pub fn tls_set(slot: usize, value: usize) {
    block().slots[slot % TLS_SLOTS].store(value, Ordering::Relaxed)
}

/// Waits while the futex word holds `expected` (returns at once if it does not, or when
/// woken; spurious returns are possible, as with every futex: check the condition again).
pub fn futex_wait(word: &AtomicU32, expected: u32) {
    loop {
        let r = raw::futex_wait(word.as_ptr() as u64, expected);
        // -EFAULT: the word's page is not present yet (never touched). Reading it brings the
        // page in; a word that no longer holds `expected` needs no wait at all.
        if r == -14 && word.load(Ordering::Acquire) == expected {
            continue;
        }
        return;
    }
}

/// Wakes up to `count` threads waiting on the futex word; how many were.
pub fn futex_wake(word: &AtomicU32, count: u32) -> u32 {
    raw::futex_wake(word.as_ptr() as u64, count as u64).max(0) as u32
}

/// A mutual-exclusion lock that sleeps in the kernel when contended (a futex word with three
/// states: free, locked, locked with waiters).
pub struct Mutex<T> {
    state: AtomicU32,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out the value to one thread at a time.
unsafe impl<T: Send> Sync for Mutex<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for Mutex<T> {}

/// The lock held; the value through `Deref`.
pub struct MutexGuard<'a, T> {
    mutex: &'a Mutex<T>,
}

impl<T> Mutex<T> {
    /// A free lock over `value`.
    pub const fn new(value: T) -> Mutex<T> {
        Mutex {
            state: AtomicU32::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock, sleeping while another thread holds it.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        if self
            .state
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.state.swap(2, Ordering::Acquire) != 0 {
                futex_wait(&self.state, 2);
            }
        }
        MutexGuard { mutex: self }
    }
}

impl<T> core::ops::Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard is the lock held: no other reference to the value exists.
        unsafe { &*self.mutex.value.get() }
    }
}

impl<T> core::ops::DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`.
        unsafe { &mut *self.mutex.value.get() }
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        if self.mutex.state.swap(0, Ordering::Release) == 2 {
            futex_wake(&self.mutex.state, 1);
        }
    }
}

/// What a thread hands its joiner.
struct Packet<T> {
    result: UnsafeCell<Option<T>>,
}

/// A thread started by [`spawn`]: [`join`](JoinHandle::join) waits for it and returns what it
/// returned.
pub struct JoinHandle<T> {
    id: u64,
    packet: *mut Packet<T>,
    block: *mut Block,
    stack: (usize, usize),
    _result: PhantomData<T>,
}

// SAFETY: the handle only names the thread and what it leaves; the result is `Send`.
unsafe impl<T: Send> Send for JoinHandle<T> {}

/// What the new thread runs: the closure behind the pointer in rdi, then its end.
extern "C" fn thread_main(job: *mut Box<dyn FnOnce()>) -> ! {
    // SAFETY: `spawn` leaked this box for the thread, which takes it back once.
    let job = unsafe { Box::from_raw(job) };
    job();
    if block().alt_stack.load(Ordering::Relaxed) {
        // Refused only when memd no longer knows the process (it is ending): nothing is left
        // to give back. Were it kept, the entry could apply to no later thread (ids carry a
        // generation); it would only take room in memd's table.
        let _ended = super::fault_entry::drop_alt_stack().is_err();
    }
    raw::thread_exit(0)
}

/// Starts a thread running `f` with a stack of [`DEFAULT_STACK`] bytes.
pub fn spawn<F, T>(f: F) -> Result<JoinHandle<T>, VmError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    spawn_with_stack(DEFAULT_STACK, f)
}

/// Starts a thread running `f` with a stack of `stack` bytes (rounded up to pages).
pub fn spawn_with_stack<F, T>(stack: usize, f: F) -> Result<JoinHandle<T>, VmError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    main_block();
    let size = stack.max(GUARD).next_multiple_of(GUARD);
    let base = vm_mmap(
        core::ptr::null_mut(),
        size,
        ProtectionFlags::READ_WRITE,
        MmapFlags::PRIVATE | MmapFlags::ANONYMOUS | MmapFlags::STACK,
    )? as usize;
    let packet = Box::into_raw(Box::new(Packet {
        result: UnsafeCell::new(None),
    }));
    let block = Box::into_raw(Box::new(Block::new()));
    // SAFETY: a fresh block no other thread knows yet.
    unsafe { (*block).this = block as u64 };
    let out = packet as usize;
    let job: Box<dyn FnOnce()> = Box::new(move || {
        let r = f();
        // SAFETY: the packet lives until the joiner has seen this thread end; only this
        // thread writes it, before it ends.
        unsafe { *(*(out as *mut Packet<T>)).result.get() = Some(r) };
    });
    let job = Box::into_raw(Box::new(job));
    // At entry rsp + 8 is 16-byte aligned, as after a call.
    let rsp = (base + size - 8) as u64;
    let id = raw::thread_create(
        thread_main as *const () as u64,
        rsp,
        job as u64,
        block as u64,
    );
    if id < 0 {
        // SAFETY: the thread did not start: the three are still only ours.
        unsafe {
            drop(Box::from_raw(job));
            drop(Box::from_raw(packet));
            drop(Box::from_raw(block));
        }
        let refused = VmError::from_wire((-id) as i32, 0);
        // The kernel's refusal is the error to report; the stack's unmap is attempted, and
        // only a second refusal (memd's) would be reported in its place.
        vm_munmap((base - GUARD) as *mut u8, size + GUARD)?;
        return Err(refused);
    }
    Ok(JoinHandle {
        id: id as u64,
        packet,
        block,
        stack: (base - GUARD, size + GUARD),
        _result: PhantomData,
    })
}

impl<T> JoinHandle<T> {
    /// The thread's id (the kernel's).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The thread's stack mapping, its guard page included: `(lowest address, bytes)`, as
    /// `pthread_attr_getstack` tells it (a program keeps its own requests off it).
    pub fn stack(&self) -> (usize, usize) {
        self.stack
    }

    /// Waits for the thread to end, gives back its stack and block, and returns what it
    /// returned (`None` if it ended without returning: `thread_exit`); an error if memd
    /// refused to unmap the stack (the thread is joined all the same, its result dropped), or
    /// the kernel's refusal to join (`InvalidArgument` for a thread joining itself: it still
    /// runs, and keeps its stack and block).
    pub fn join(self) -> Result<Option<T>, VmError> {
        // The kernel answers once the thread has ended (at once if it has).
        let r = raw::thread_join(self.id);
        if r < 0 {
            return Err(VmError::from_wire((-r) as i32, 0));
        }
        // SAFETY: the thread has ended: the packet and block are only ours now, and nothing
        // runs on the stack.
        let result = unsafe {
            let packet = Box::from_raw(self.packet);
            drop(Box::from_raw(self.block));
            packet.result.into_inner()
        };
        vm_munmap(self.stack.0 as *mut u8, self.stack.1)?;
        Ok(result)
    }
}

/// The processor running the caller, and how many run the kernel.
pub fn cpu() -> (u32, u32) {
    raw::cpu_info()
}
