//! Threads of the calling process, on the metal: [`spawn`] and [`JoinHandle::join`], futexes
//! ([`futex_wait`], [`futex_wake`]) and a [`Mutex`] built on them, and thread locals through
//! the FS base ([`tls_get`], [`tls_set`]).
//!
//! A thread's stack is a `MAP_STACK` mapping from memd: a Stack region with a Guard page under
//! it (an overflow faults there). Its FS base points at its [`Block`], whose first word points
//! at itself (the x86_64 TLS convention) and which holds [`TLS_SLOTS`] words of thread locals.
//! The first [`spawn`] (or thread-local access) of a process gives its first thread a block
//! too. A joined thread's stack and block are given back at the join. A handle dropped
//! unjoined detaches the thread (`pthread_detach`): its result is dropped where it ends, and
//! its stack and block, which it cannot give back while it runs on them, go to a graveyard of
//! at most [`kernel_shim::abi::MAX_THREADS_PER_SPACE`] that the next [`spawn`] empties (each
//! once the kernel says the thread has ended).
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
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

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
    /// [`RUNNING`], [`FINISHED`] (the result is in) or [`DETACHED`] (the handle is gone).
    state: AtomicU32,
    /// The thread's id, its stack and block (for a detached thread to bury itself).
    id: AtomicU64,
    stack: (usize, usize),
    block: *mut Block,
}

/// [`Packet::state`]: the thread runs and has a handle.
const RUNNING: u32 = 0;
/// [`Packet::state`]: the thread has left its result; the handle will take it.
const FINISHED: u32 = 1;
/// [`Packet::state`]: the handle was dropped; the thread cleans up after itself.
const DETACHED: u32 = 2;

/// A detached thread that ended: its id, and the stack and block to give back once the kernel
/// says it has ended.
#[derive(Clone, Copy)]
struct Grave {
    id: u64,
    stack: (usize, usize),
    block: *mut Block,
}

/// The graves not yet emptied (at most one per thread a process may have), as a stack.
pub struct Graveyard {
    graves: [Grave; MAX_THREADS],
    len: usize,
}
// SAFETY: a grave's block is only freed by whoever takes the grave out, under the lock.
unsafe impl Send for Graveyard {}

/// Threads a process may have (the kernel's bound).
const MAX_THREADS: usize = kernel_shim::abi::MAX_THREADS_PER_SPACE as usize;

static GRAVEYARD: spin::Mutex<Graveyard> = spin::Mutex::new(Graveyard {
    graves: [Grave {
        id: 0,
        stack: (0, 0),
        block: core::ptr::null_mut(),
    }; MAX_THREADS],
    len: 0,
});

/// Holds the graveyard until the guard drops: [`crate::Vm::fork`] keeps it across the `FORK`
/// request, as it keeps the heap, so that a child never inherits it locked by a thread it
/// does not have.
pub fn hold_for_fork() -> spin::MutexGuard<'static, Graveyard> {
    GRAVEYARD.lock()
}

/// A detached thread about to end puts its stack and block in the graveyard.
fn bury(grave: Grave) {
    let mut yard = GRAVEYARD.lock();
    // There is always room: each grave is a thread that ended, and at most `MAX_THREADS` can
    // have since the last `spawn` emptied the yard. Were there none, the stack would stay
    // mapped until the process ends.
    if yard.len < MAX_THREADS {
        let n = yard.len;
        yard.graves[n] = grave;
        yard.len += 1;
    }
}

/// Gives back the stacks and blocks of the detached threads that ended: each once the kernel
/// says its thread has ended (at once, or as soon as it has left `thread_exit`). A stack memd
/// would not unmap goes back in the yard for the next time, and is the error returned.
fn empty_graveyard() -> Result<(), VmError> {
    let mut left = GRAVEYARD.lock().len;
    let mut result = Ok(());
    while left > 0 {
        left -= 1;
        let grave = {
            let mut yard = GRAVEYARD.lock();
            if yard.len == 0 {
                break;
            }
            yard.len -= 1;
            yard.graves[yard.len]
        };
        // An error is a thread that is not this process's (a fork's child has its parent's
        // graves): it runs nowhere here.
        let _gone = raw::thread_join(grave.id);
        match vm_munmap(grave.stack.0 as *mut u8, grave.stack.1) {
            // SAFETY: the thread has ended: nothing uses its block any more, and the grave (the
            // block's last owner) was taken out of the yard above.
            Ok(()) => drop(unsafe { Box::from_raw(grave.block) }),
            Err(e) => {
                bury(grave);
                result = Err(e);
            }
        }
    }
    result
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
    empty_graveyard()?;
    let size = stack.max(GUARD).next_multiple_of(GUARD);
    let base = vm_mmap(
        core::ptr::null_mut(),
        size,
        ProtectionFlags::READ_WRITE,
        MmapFlags::PRIVATE | MmapFlags::ANONYMOUS | MmapFlags::STACK,
    )? as usize;
    let block = Box::into_raw(Box::new(Block::new()));
    // SAFETY: a fresh block no other thread knows yet.
    unsafe { (*block).this = block as u64 };
    let packet = Box::into_raw(Box::new(Packet {
        result: UnsafeCell::new(None),
        state: AtomicU32::new(RUNNING),
        id: AtomicU64::new(0),
        stack: (base - GUARD, size + GUARD),
        block,
    }));
    let out = packet as usize;
    let job: Box<dyn FnOnce()> = Box::new(move || {
        let r = f();
        let packet = out as *mut Packet<T>;
        // SAFETY: the packet lives until the joiner has seen this thread end, or, detached,
        // until this thread drops it; only this thread writes the result, before it ends.
        unsafe { *(*packet).result.get() = Some(r) };
        // SAFETY: as above.
        if unsafe { (*packet).state.swap(FINISHED, Ordering::AcqRel) } == DETACHED {
            // SAFETY: detached: nobody else holds the packet any more (the handle set its id
            // before it could be dropped).
            let packet = unsafe { Box::from_raw(packet) };
            bury(Grave {
                id: packet.id.load(Ordering::Acquire),
                stack: packet.stack,
                block: packet.block,
            });
        }
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
    // SAFETY: the packet lives at least until the handle is dropped or joined.
    unsafe { (*packet).id.store(id as u64, Ordering::Release) };
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
            // Not joined: the handle goes, and with it the thread is detached.
            return Err(VmError::from_wire((-r) as i32, 0));
        }
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: the thread has ended: the packet and block are only ours now, and nothing
        // runs on the stack; `this` is not dropped, so nothing else takes them.
        let result = unsafe {
            let packet = Box::from_raw(this.packet);
            drop(Box::from_raw(this.block));
            packet.result.into_inner()
        };
        vm_munmap(this.stack.0 as *mut u8, this.stack.1)?;
        Ok(result)
    }
}

impl<T> Drop for JoinHandle<T> {
    /// Detaches the thread (`pthread_detach`): a thread still running drops its result and
    /// buries its stack and block itself as it ends; one that has ended already has its
    /// result dropped here, and its stack and block buried. The next [`spawn`] gives them back.
    fn drop(&mut self) {
        // SAFETY: the packet lives until this handle or, detached, the thread lets it go.
        if unsafe { (*self.packet).state.swap(DETACHED, Ordering::AcqRel) } != FINISHED {
            return;
        }
        // SAFETY: the thread has left its result and will not touch the packet again.
        drop(unsafe { Box::from_raw(self.packet) });
        bury(Grave {
            id: self.id,
            stack: self.stack,
            block: self.block,
        });
    }
}

/// The processor running the caller, and how many run the kernel.
pub fn cpu() -> (u32, u32) {
    raw::cpu_info()
}
