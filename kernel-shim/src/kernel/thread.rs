//! Threads: saved registers, FPU/SSE state, and the queue links the scheduler and the IPC
//! endpoints thread them on.

use super::objects::Table;
use super::trap::TrapFrame;
use core::arch::asm;
use core::sync::atomic::{AtomicU32, Ordering};

/// What a thread is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The slot is unused.
    Free,
    /// On the run queue.
    Ready,
    /// On the CPU.
    Running,
    /// Queued on endpoint `.0` with a message (a call, a fault or an exit notice).
    SendBlocked(u16),
    /// Its message to endpoint `.0` was received; waiting for the reply.
    ReplyBlocked(u16),
    /// Waiting to receive on endpoint `.0`.
    RecvBlocked(u16),
    /// Waiting on the futex word at [`Thread::futex`] of its space, queued in bucket `.0`.
    FutexBlocked(u16),
}

impl State {
    const fn encode(self) -> u32 {
        let (tag, ep) = match self {
            State::Free => (0, 0),
            State::Ready => (1, 0),
            State::Running => (2, 0),
            State::SendBlocked(e) => (3, e),
            State::ReplyBlocked(e) => (4, e),
            State::RecvBlocked(e) => (5, e),
            State::FutexBlocked(b) => (6, b),
        };
        (tag << 16) | ep as u32
    }

    fn decode(word: u32) -> State {
        let e = word as u16;
        match word >> 16 {
            1 => State::Ready,
            2 => State::Running,
            3 => State::SendBlocked(e),
            4 => State::ReplyBlocked(e),
            5 => State::RecvBlocked(e),
            6 => State::FutexBlocked(e),
            _ => State::Free,
        }
    }
}

/// A thread's [`State`], which any processor may read (an atomic): it is written only by the
/// thread's owner (see [`super::lock`]), and read elsewhere only to find which lock to take
/// before it is read again under that lock.
pub struct StateCell(AtomicU32);

impl StateCell {
    /// A cell holding `s`.
    pub const fn new(s: State) -> StateCell {
        StateCell(AtomicU32::new(s.encode()))
    }

    /// The state.
    #[inline(always)]
    pub fn get(&self) -> State {
        State::decode(self.0.load(Ordering::Acquire))
    }

    /// Sets the state (by the thread's owner).
    #[inline(always)]
    pub fn set(&self, s: State) {
        self.0.store(s.encode(), Ordering::Release);
    }
}

/// What a blocked sender's message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgKind {
    /// An `ipc_call` from the thread.
    Call,
    /// A fault of the thread, sent by the kernel to the pager.
    Fault,
    /// The thread's exit (last of its space), sent by the kernel to the pager; no reply.
    Exit,
}

/// The 512-byte `fxsave` area.
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub struct Fpu(pub [u8; 512]);

impl Fpu {
    /// The state after `fninit` with SSE exceptions masked (FCW 0x37F, MXCSR 0x1F80).
    pub const fn initial() -> Fpu {
        let mut a = [0u8; 512];
        a[0] = 0x7F;
        a[1] = 0x03;
        a[24] = 0x80;
        a[25] = 0x1F;
        Fpu(a)
    }

    /// Saves this CPU's x87/SSE registers here.
    pub fn save(&mut self) {
        // SAFETY: the area is 512 bytes and 16-byte aligned, as fxsave requires; CR4.OSFXSR is
        // set at boot.
        unsafe { asm!("fxsave64 [{}]", in(reg) self.0.as_mut_ptr(), options(nostack)) };
    }

    /// Loads this CPU's x87/SSE registers from here.
    pub fn restore(&self) {
        // SAFETY: as in `save`; the area holds a state written by fxsave or `initial` (MXCSR
        // reserved bits clear), so fxrstor cannot fault.
        unsafe { asm!("fxrstor64 [{}]", in(reg) self.0.as_ptr(), options(nostack)) };
    }
}

/// One thread.
pub struct Thread {
    /// What it is doing.
    pub state: StateCell,
    /// Bumped when the slot is freed, so stale ids and tokens never match a new thread.
    pub generation: u16,
    /// Index of its address space.
    pub space: usize,
    /// Its registers while it is not on the CPU.
    pub frame: TrapFrame,
    /// Its x87/SSE registers while another thread owns the FPU.
    pub fpu: Fpu,
    /// Next thread in the queue it is on.
    pub next: Option<u16>,
    /// The message it sends while blocked as a sender (word 7 = its badge).
    pub msg: [u64; 8],
    /// What `msg` is.
    pub kind: MsgKind,
    /// The buffer lent with its call: (user address, length), checked at call time.
    pub lend: (u64, u64),
    /// Whether its call is a redox memory call the kernel routed to the pager: the reply's
    /// result word becomes its rax.
    pub routed: bool,
    /// The processor running it (while [`State::Running`]).
    pub cpu: u8,
    /// Its TLS base (FS), a user address.
    pub fs_base: u64,
    /// The user address of the futex word it waits on, or the key of the thread it joins
    /// (while [`State::FutexBlocked`]).
    pub futex: u64,
}

impl Thread {
    /// An unused slot.
    pub const fn free() -> Thread {
        Thread {
            state: StateCell::new(State::Free),
            generation: 1,
            space: 0,
            frame: TrapFrame::ZERO,
            fpu: Fpu::initial(),
            next: None,
            msg: [0; 8],
            kind: MsgKind::Call,
            lend: (0, 0),
            routed: false,
            cpu: 0,
            fs_base: 0,
            futex: 0,
        }
    }
}

impl Thread {
    /// Marks the slot free, with a new generation, so stale ids and tokens never match the
    /// next thread in it.
    pub fn vacate(&mut self) {
        self.state.set(State::Free);
        self.generation = self.generation.wrapping_add(1).max(1);
    }
}

/// A thread's id as processes see it: generation and slot.
pub fn thread_id(index: usize, generation: u16) -> u64 {
    ((generation as u64) << 16) | index as u64
}

/// The slot and generation of a thread id (the slot may be out of range).
pub fn split_id(id: u64) -> (usize, u16) {
    ((id & 0xFFFF) as usize, ((id >> 16) & 0xFFFF) as u16)
}

/// A FIFO of threads, linked through [`Thread::next`]; a thread is on at most one queue.
#[derive(Clone, Copy, Debug, Default)]
pub struct Queue {
    head: Option<u16>,
    tail: Option<u16>,
}

impl Queue {
    /// An empty queue.
    pub const EMPTY: Queue = Queue {
        head: None,
        tail: None,
    };

    /// Appends thread `t`.
    ///
    /// # Safety
    /// The caller owns the queue and every thread on it, and `t` (see [`super::lock`]): it
    /// holds the queue's lock, or the mode lock exclusive.
    pub unsafe fn push(&mut self, threads: &Table<Thread>, t: usize) {
        // SAFETY: the caller owns `t` and the queue's threads (contract); one slot at a time.
        unsafe {
            threads.slot(t).next = None;
            match self.tail {
                Some(last) => threads.slot(last as usize).next = Some(t as u16),
                None => self.head = Some(t as u16),
            }
        }
        self.tail = Some(t as u16);
    }

    /// Takes the first thread.
    ///
    /// # Safety
    /// As [`Queue::push`].
    pub unsafe fn pop(&mut self, threads: &Table<Thread>) -> Option<usize> {
        let first = self.head? as usize;
        // SAFETY: the caller owns the queue's threads (contract).
        let th = unsafe { threads.slot(first) };
        self.head = th.next;
        if self.head.is_none() {
            self.tail = None;
        }
        th.next = None;
        Some(first)
    }

    /// Removes thread `t` wherever it is; whether it was there.
    ///
    /// # Safety
    /// As [`Queue::push`].
    pub unsafe fn remove(&mut self, threads: &Table<Thread>, t: usize) -> bool {
        let mut prev: Option<usize> = None;
        let mut cur = self.head;
        while let Some(c) = cur {
            let c = c as usize;
            // SAFETY: the caller owns the queue's threads (contract); one slot at a time.
            let next = unsafe { threads.slot(c).next };
            if c == t {
                // SAFETY: as above.
                unsafe {
                    match prev {
                        Some(p) => threads.slot(p).next = next,
                        None => self.head = next,
                    }
                    threads.slot(c).next = None;
                }
                if self.tail == Some(c as u16) {
                    self.tail = prev.map(|p| p as u16);
                }
                return true;
            }
            prev = Some(c);
            cur = next;
        }
        false
    }

    /// The first thread for which `f` holds.
    ///
    /// # Safety
    /// As [`Queue::push`].
    pub unsafe fn find(
        &self,
        threads: &Table<Thread>,
        f: impl Fn(&Thread) -> bool,
    ) -> Option<usize> {
        let mut cur = self.head;
        while let Some(c) = cur {
            // SAFETY: the caller owns the queue's threads (contract).
            let th = unsafe { threads.slot(c as usize) };
            if f(th) {
                return Some(c as usize);
            }
            cur = th.next;
        }
        None
    }

    /// Whether the queue is empty.
    pub fn is_empty(&self) -> bool {
        self.head.is_none()
    }
}
