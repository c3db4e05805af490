//! The kernel's state and the operations every part shares: creating and ending threads,
//! ending processes and spaces, and queueing a blocked sender on an endpoint.
//!
//! Who may touch what is the locking rule of [`super::lock`]: creating and ending are
//! exclusive entries', which reach everything through `&mut Kernel`. A thread running on another
//! processor is never freed in place: the processors running the threads of a space being
//! ended are first made to leave it ([`super::shootdown::leave_elsewhere`]), so none of them
//! touches those slots or tables again.

use super::devices::Devices;
use super::errno::{EAGAIN, ENOMEM, Errno};
use super::frames::FramePool;
use super::futex;
use super::ipc::{self, Endpoint, PAGER_ENDPOINT};
use super::lock::SpinLock;
use super::objects::MAX_THREADS_PER_SPACE;
use super::objects::Table;
use super::percpu::{self, MAX_RUN_CPUS};
use super::pt;
use super::sched::CpuSlot;
use super::shootdown;
use super::space::{self, Space};
use super::tables::{self, Reserve, TableMarks, Tables};
use super::thread::{MsgKind, Queue, State, Thread, thread_id};
use super::trap::TrapFrame;
use kernel_shim::abi;

/// The most physical ranges handed to the pager.
pub const MAX_PAGER_RANGES: usize = kernel_shim::abi::MAX_PAGER_RANGES;

/// Everything the kernel knows.
pub struct Kernel {
    /// Frames for the page tables of the pager and of kernel-loaded programs, and for boot
    /// images.
    pub frames: SpinLock<FramePool>,
    /// Frames the pager donated as page tables (see [`tables`]).
    pub table_marks: TableMarks,
    /// Address spaces: a table sized from RAM at boot ([`super::objects`]).
    pub spaces: Table<Space>,
    /// Threads, two slots per space.
    pub threads: Table<Thread>,
    /// IPC endpoints, [`ipc::MAX_ENDPOINTS_PER_SPACE`] for each space, each with its lock.
    pub endpoints: Table<SpinLock<Endpoint>>,
    /// Threads ready to run, for every processor.
    pub run_queue: SpinLock<Queue>,
    /// What the scheduler keeps per processor, by processor index.
    pub cpus: [CpuSlot; MAX_RUN_CPUS],
    /// Threads waiting on futex words (and joiners), by bucket (exclusive entries only).
    pub futexes: [Queue; futex::BUCKETS],
    /// The kernel's PML4 (kmap's tables), template of every space's upper half.
    pub kernel_root: u64,
    /// The pager's space.
    pub pager: Option<usize>,
    /// The physical ranges handed to the pager: the only frames it may map.
    pub pager_ranges: [(u64, u64); MAX_PAGER_RANGES],
    /// Entries used in `pager_ranges`.
    pub pager_ranges_len: usize,
    /// Bytes of the boot pack mapped read-only into the pager (0: none).
    pub bootpack_len: u64,
    /// The kernel command line (`cmdline_len` bytes), for the `cmdline` call.
    pub cmdline: [u8; 256],
    /// Bytes used in `cmdline`.
    pub cmdline_len: usize,
    /// The device ranges of the command line the kernel accepted (set at boot, then fixed).
    pub devices: Devices,
}

impl Kernel {
    /// The state before boot.
    pub const fn new() -> Kernel {
        Kernel {
            frames: SpinLock::new(FramePool::new()),
            table_marks: TableMarks::new(),
            spaces: Table::EMPTY,
            threads: Table::EMPTY,
            endpoints: Table::EMPTY,
            run_queue: SpinLock::new(Queue::EMPTY),
            cpus: [const { CpuSlot::off() }; MAX_RUN_CPUS],
            futexes: futex::EMPTY,
            kernel_root: 0,
            pager: None,
            pager_ranges: [(0, 0); MAX_PAGER_RANGES],
            pager_ranges_len: 0,
            bootpack_len: 0,
            cmdline: [0; 256],
            cmdline_len: 0,
            devices: Devices::NONE,
        }
    }

    /// The badge of space `s`.
    pub fn badge(&self, s: usize) -> u64 {
        space::badge(s, self.spaces[s].generation)
    }

    /// The id of thread `t`.
    pub fn thread_id(&self, t: usize) -> u64 {
        thread_id(t, self.threads[t].generation)
    }

    /// Whether space `s` is the pager.
    pub fn is_pager(&self, s: usize) -> bool {
        self.pager == Some(s)
    }

    /// The pager's ranges.
    pub fn pager_ranges(&self) -> &[(u64, u64)] {
        &self.pager_ranges[..self.pager_ranges_len]
    }

    /// A new empty space with tables from the kernel pool; its slot.
    pub fn create_space(&mut self) -> Option<usize> {
        let s = self.spaces.iter().position(|s| !s.live)?;
        let root = pt::create(self.frames.get_mut(), self.kernel_root)?;
        self.open_space(s, root, None);
        Some(s)
    }

    /// A new empty space whose PML4 is the donated frame `root` (checked by the caller: one of
    /// the pager's, aligned, unmarked) and whose other tables will be donated too; its slot.
    pub fn create_donated_space(&mut self, root: u64) -> Option<usize> {
        let s = self.spaces.iter().position(|s| !s.live)?;
        let root = pt::create(&mut Tables::Root(Some(root)), self.kernel_root)?;
        self.table_marks.set(root, true);
        self.open_space(s, root, Some(Reserve::EMPTY));
        Some(s)
    }

    fn open_space(&mut self, s: usize, root: u64, reserve: Option<Reserve>) {
        let sp = &mut self.spaces[s];
        sp.live = true;
        sp.root = root;
        sp.threads = 0;
        sp.image = None;
        *sp.tables.get_mut() = reserve;
        log::trace!("kernel-shim: space {:#x} created", self.badge(s));
    }

    /// A new thread in space `s` with registers `frame`, FPU state `fpu` and TLS base
    /// `fs_base`, put on the run queue; its slot. A space's first thread takes a slot of the
    /// first half of the table, the others one of the second (`objects`); `EAGAIN` when the
    /// space has [`MAX_THREADS_PER_SPACE`] threads, `ENOMEM` when no slot is free.
    pub fn create_thread(
        &mut self,
        s: usize,
        frame: TrapFrame,
        fpu: super::thread::Fpu,
        fs_base: u64,
    ) -> Result<usize, Errno> {
        let first = self.spaces[s].threads == 0;
        if self.spaces[s].threads >= MAX_THREADS_PER_SPACE {
            return Err(EAGAIN);
        }
        let half = self.spaces.len();
        let slots = if first {
            0..half
        } else {
            half..self.threads.len()
        };
        let t = slots
            .clone()
            .find(|&t| self.threads[t].state.get() == State::Free)
            .ok_or(ENOMEM)?;
        let th = &mut self.threads[t];
        th.space = s;
        th.frame = frame;
        th.fpu = fpu;
        th.next = None;
        th.msg = [0; 8];
        th.kind = MsgKind::Call;
        th.lend = (0, 0);
        th.routed = false;
        th.fs_base = fs_base;
        th.futex = 0;
        self.spaces[s].threads += 1;
        self.wake(t);
        log::trace!(
            "kernel-shim: thread {:#x} started in space {:#x} at rip {:#x}",
            self.thread_id(t),
            self.badge(s),
            frame.rip
        );
        Ok(t)
    }

    /// Takes thread `t` off whatever queue it waits on.
    fn unqueue(&mut self, t: usize) {
        let threads = &self.threads;
        // SAFETY (each queue below): the mode lock is exclusive (`&mut self`), so this entry
        // owns every queue and thread.
        match threads[t].state.get() {
            State::Ready => unsafe {
                self.run_queue.get_mut().remove(threads, t);
            },
            State::SendBlocked(ep) => unsafe {
                self.endpoints[ep as usize]
                    .get_mut()
                    .senders
                    .remove(threads, t);
            },
            State::RecvBlocked(ep) => unsafe {
                self.endpoints[ep as usize]
                    .get_mut()
                    .receivers
                    .remove(threads, t);
            },
            State::FutexBlocked(b) => unsafe {
                self.futexes[b as usize].remove(threads, t);
            },
            _ => {}
        }
    }

    /// Frees slot `t`: no processor keeps it as its current thread, hand-off or loaded
    /// registers (a thread running elsewhere was made to leave first:
    /// [`Kernel::stop_elsewhere`]).
    fn free_thread(&mut self, t: usize) {
        for cpu in self.cpus.iter_mut() {
            let cpu = cpu.get_mut();
            for slot in [&mut cpu.loaded, &mut cpu.current, &mut cpu.handoff] {
                if *slot == Some(t) {
                    *slot = None;
                }
            }
        }
        let th = &mut self.threads[t];
        th.vacate();
        th.next = None;
    }

    /// Ends thread `t` with `code`; `rip` is the instruction that killed it (0 for an exit).
    /// When it was the last of its space: a boot program's space is destroyed at once; and the
    /// pager (if any, and not the one ending) gets an exit notice with the space's badge, the
    /// code and the RIP ([`abi::EXIT_CODE`], [`abi::EXIT_RIP`]), so it can reclaim what it
    /// mapped there and say how the process ended.
    pub fn end_thread(&mut self, t: usize, code: u64, rip: u64) {
        self.unqueue(t);
        let s = self.threads[t].space;
        self.spaces[s].threads -= 1;
        let last = self.spaces[s].threads == 0;
        let badge = self.badge(s);
        let tid = self.thread_id(t);
        if !last {
            self.free_thread(t);
            futex::ended(self, s, tid);
            return;
        }
        if self.is_pager(s) {
            log::warn!(
                "kernel-shim: the pager (space {:#x}) ended with code {:#x}",
                badge,
                code
            );
            self.pager = None;
            self.free_thread(t);
            self.end_space(s);
            return;
        }
        if self.spaces[s].image.is_some() {
            self.end_space(s);
        }
        if self.pager.is_some() {
            log::debug!(
                "kernel-shim: space {:#x} ended with code {:#x}, exit notice to the pager",
                badge,
                code
            );
            let mut msg = [0; 8];
            msg[abi::EXIT_CODE] = code;
            msg[abi::EXIT_RIP] = rip;
            msg[abi::EXIT_THREAD] = tid;
            msg[abi::MSG_BADGE] = badge;
            let th = &mut self.threads[t];
            th.msg = msg;
            th.kind = MsgKind::Exit;
            th.lend = (0, 0);
            ipc::send(self, t, PAGER_ENDPOINT);
        } else {
            self.free_thread(t);
        }
    }

    /// Makes the other processors running threads of space `s` leave it, and waits until they
    /// have: afterwards none of them touches those threads' slots or the space's tables, and
    /// each has no current thread (its scheduler picks anew at its next entry).
    fn stop_elsewhere(&mut self, s: usize) {
        let me = percpu::index();
        let mut mask = 0u64;
        for (c, cpu) in self.cpus.iter_mut().enumerate() {
            if c != me
                && let Some(t) = cpu.get_mut().current
                && self.threads[t].space == s
            {
                mask |= 1 << c;
            }
        }
        if mask == 0 {
            return;
        }
        shootdown::leave_elsewhere(self.spaces[s].root, mask);
        for (c, cpu) in self.cpus.iter_mut().enumerate() {
            if mask & (1 << c) != 0 {
                // The thread's FPU state there is dropped with the thread.
                let cpu = cpu.get_mut();
                cpu.current = None;
                cpu.loaded = None;
            }
        }
    }

    /// Ends the whole process of thread `t`: every other thread of its space without notice
    /// (those running elsewhere made to stop first), then `t` with `code` and `rip` as
    /// [`Kernel::end_thread`] does, the last of its space.
    pub fn end_process(&mut self, t: usize, code: u64, rip: u64) {
        let s = self.threads[t].space;
        if self.spaces[s].threads > 1 {
            self.stop_elsewhere(s);
            for u in 0..self.threads.len() {
                if self.spaces[s].threads <= 1 {
                    break;
                }
                let th = &self.threads[u];
                if u != t
                    && th.state.get() != State::Free
                    && th.space == s
                    && th.kind != MsgKind::Exit
                {
                    self.unqueue(u);
                    self.free_thread(u);
                    self.spaces[s].threads -= 1;
                }
            }
        }
        self.end_thread(t, code, rip);
    }

    /// Kills the process of thread `t` for exception `vector` at `rip` (every thread of its
    /// space), saying so on the console with the `cause`; its exit code is [`abi::KILLED`]
    /// `| vector`.
    ///
    /// The line: `kernel-shim: killed thread T of space S: NAME (vector V) at rip R (CAUSE)`,
    /// NAME being [`abi::vector_name`] of V and R the RIP the CPU saved (the faulting
    /// instruction; for a trap, a breakpoint or a single step, the one after it).
    pub fn kill(&mut self, t: usize, vector: u64, rip: u64, cause: &str) {
        let s = self.threads[t].space;
        log::warn!(
            "kernel-shim: killed thread {:#x} of space {:#x}: {} (vector {}) at rip {:#x} ({})",
            self.thread_id(t),
            self.badge(s),
            abi::vector_name(vector),
            vector,
            rip,
            cause,
        );
        self.end_process(t, abi::KILLED | (vector & 0xFFFF_FFFF), rip);
    }

    /// Kills the process of thread `t`, stopped at a fault (waiting for the pager, or running
    /// here), for that fault: its exit code names the fault's own vector.
    pub fn kill_at_fault(&mut self, t: usize, cause: &str) {
        self.threads[t].state.set(State::Running);
        let f = self.threads[t].frame;
        self.kill(t, f.vector, f.rip, cause);
    }

    /// Ends space `s`: its threads end without notice, its endpoints close, its tables (and a
    /// boot image) return to the kernel pool.
    pub fn end_space(&mut self, s: usize) {
        if !self.spaces[s].live {
            return;
        }
        log::trace!("kernel-shim: space {:#x} ended", self.badge(s));
        self.stop_elsewhere(s);
        // Its live threads (an exit notice waiting for the pager is not one of them) are
        // counted: the walk stops at the last.
        let mut left = self.spaces[s].threads;
        let mut t = 0;
        while left > 0 && t < self.threads.len() {
            let th = &self.threads[t];
            if th.state.get() != State::Free && th.space == s && th.kind != MsgKind::Exit {
                self.unqueue(t);
                self.free_thread(t);
                left -= 1;
            }
            t += 1;
        }
        for ep in ipc::slots_of(s) {
            if ep < self.endpoints.len() && self.endpoints[ep].get_mut().live {
                ipc::close(self, ep);
            }
        }
        if self.is_pager(s) {
            self.pager = None;
        }
        let root = self.spaces[s].root;
        if let Some((first, count)) = self.spaces[s].image {
            self.frames.get_mut().free_contiguous(first, count);
        }
        pt::leave(root, self.kernel_root);
        match self.spaces[s].tables.get_mut().take() {
            Some(mut reserve) => {
                // Every table and spare frame goes back to the pager (unmarked).
                pt::destroy(&mut Tables::Release(&self.table_marks), root);
                tables::release_reserve(&self.table_marks, &mut reserve);
            }
            None => pt::destroy(self.frames.get_mut(), root),
        }
        let sp = &mut self.spaces[s];
        sp.live = false;
        sp.threads = 0;
        sp.image = None;
        sp.generation = sp.generation.wrapping_add(1).max(1);
    }
}
