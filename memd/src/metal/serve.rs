//! The receive/reply loop: every message on the pager's endpoint. memd runs one worker thread
//! per processor, each receiving on the endpoint and serving what it gets; the core's locks
//! (one per address space, a frame cache per worker, atomic frame counts) let faults and
//! calls of different processes proceed at once, and two faults of one page resolve it once
//! (the second finds it mapped: a spurious fault, resumed). The process records here
//! ([`Procs`]) are behind a read/write lock, read for the lookup every message makes and
//! written only for an update, never held across a call into the core or the kernel; the
//! lifecycle of processes (fork, spawn, exit, kill, wait, a death) is serialized by a second
//! lock, so the limits on children and processes are checked and charged as one step.
//!
//! | message | what memd does |
//! |---|---|
//! | fault (token bit `TOKEN_FAULT`), page fault | [`Memd::handle_fault`]: resume (reply 0), or the process is already torn down (by another worker: `FaultOutcome::Gone`) and the thread is told to die (reply 14) |
//! | fault, page fault of a process with a fault handler, refused | [`Memd::handle_fault`] answers with a delivery: the kernel's `fault_deliver` resumes the thread in the handler; a refused delivery kills the process as a refused fault does |
//! | fault, general protection, of a process with a fault handler | [`Memd::exception_delivery`]: delivered as `SIGSEGV`/`SI_KERNEL` |
//! | fault, any other exception | counted ([`Kill::Exception`]), reply with the vector: the kernel kills the thread, the exit notice follows |
//! | exit notice (`TOKEN_EXIT`) | [`Memd::exit`]: every frame returned, the kernel space destroyed; a waiting parent is answered |
//! | call `FORK` | [`Memd::fork`], then `thread_clone` of the caller into the child (which returns 0), reply the child's pid; `EAGAIN` past the caller's children limit ([`Procs::room`]) |
//! | call `SPAWN` | start the named boot module as a child ([`super::loader`]); `EAGAIN` as `FORK` |
//! | call `WAIT` | answer now if the child is dead (or, with `WAIT_NOHANG`, [`wait_status::RUNNING`] if not), else keep the token and answer when it dies; the fault address goes into the lent buffer, and a buffer memd cannot write gets `EFAULT` with the child left to be waited for again |
//! | call `GRANT_DEVICE` | [`Memd::grant_device`] to a live child of the caller (else `ESRCH`) |
//! | call `KILL` | a live child of the caller ends as at its exit ([`Memd::exit`]); its status says [`wait_status::PARENT`] |
//! | call `ARGS` | the argument string the caller was spawned with (its parent's, after a fork) |
//! | call `PROCESSES` | [`Memd::handle`] lists the pids; the parents and names are added from [`Procs`] |
//! | any other call | [`Memd::handle`], with the lent buffer copied in and out |
//!
//! Every copy into or out of a lent buffer is checked: one the kernel refuses (a buffer
//! read-only, not present, copy-on-write) gets `EFAULT` (`BadBuffer`), never a reply saying
//! memd wrote it.
//!
//! The caller's identity is the kernel's badge (word 7), mapped to memd's pid; a badge memd
//! does not know gets `ESRCH` (calls) or dies (faults).

use super::kernel::MetalKernel;
use super::loader;
use super::procs::{Answer, Procs, Program as Running, Waiter};
use super::sys::{self, println};
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel_shim::abi::bootpack::{self, Program};
use kernel_shim::abi::{
    self as nr, ACCESS_EXEC, ACCESS_WRITE, KILLED, PAGE_FAULT, TOKEN_EXIT, TOKEN_FAULT,
};
use libvm::VmError;
use libvm::proto::{self, Request, Sqe, wait_status};
use memd::stats::Kill;
use memd::{Access, Delivery, FaultKill, FaultOutcome, FaultReason, Memd, Pid};
use spin::{Mutex, RwLock};

/// The most bytes of a lent buffer memd copies in and out.
const MAX_BULK: usize = 16 * 1024;
/// Messages between two looks at memd's own heap ([`super::grow_heap`]).
const HEAP_CHECK: u64 = 64;

/// memd on the metal: the core, the processes, the boot pack.
pub struct Server {
    memd: Memd<MetalKernel>,
    procs: RwLock<Procs>,
    /// Held across each change to the set of processes (see the module doc).
    life: Mutex<()>,
    pack: &'static [u8],
    /// Messages served.
    messages: AtomicU64,
}

fn reply_cqe(token: u64, tag: u32, result: Result<u64, VmError>) {
    let w = proto::cqe_to_words(&proto::encode_reply(tag, result));
    sys::reply(token, w[0], w[1]);
}

/// Adds the parents and names memd's metal side knows to the `PROCESSES` entries in `bulk`.
fn name_processes(procs: &Procs, bulk: &mut [u8]) {
    use libvm::proto::{ProcessInfo, Words};
    for chunk in bulk.chunks_exact_mut(ProcessInfo::WORDS * 8) {
        let Some(mut info) = ProcessInfo::read_from(chunk).filter(|i| i.pid != 0) else {
            break;
        };
        info.parent = procs.parent(info.pid).unwrap_or(0);
        if let Some(p) = procs.program(info.pid) {
            let n = p.name.len().min(proto::MAX_NAME);
            info.name[..n].copy_from_slice(&p.name.as_bytes()[..n]);
        }
        info.write_to(chunk);
    }
}

impl Server {
    /// A server over `memd`, with the boot pack `pack` (empty if none).
    pub fn new(memd: Memd<MetalKernel>, pack: &'static [u8]) -> Server {
        Server {
            memd,
            procs: RwLock::new(Procs::default()),
            life: Mutex::new(()),
            pack,
            messages: AtomicU64::new(0),
        }
    }

    /// The boot module named `name` (never memd itself, module 0).
    fn module(&self, name: &str) -> Option<Program<'static>> {
        bootpack::parse(self.pack)?.skip(1).find(|p| p.name == name)
    }

    /// The pid of the process whose space has badge `badge`.
    /// (A badge not known yet may be a process being made by another worker, which holds the
    /// lifecycle lock until its record is in: the second look waits for it.)
    fn pid_of(&self, badge: u64) -> Option<Pid> {
        if let Some(pid) = self.procs.read().pid_of(badge) {
            return Some(pid);
        }
        let _life = self.life.lock();
        self.procs.read().pid_of(badge)
    }

    /// The parent of `pid`, if it has one.
    fn parent(&self, pid: Pid) -> Option<Pid> {
        self.procs.read().parent(pid)
    }

    /// The name of the program `pid` runs (`?` if unknown).
    fn name(&self, pid: Pid) -> String {
        self.procs
            .read()
            .program(pid)
            .map_or_else(|| "?".into(), |p| p.name.clone())
    }

    /// Starts the module at `index` of the pack (for the first program at boot).
    pub fn start_index(&self, index: usize) {
        let _life = self.life.lock();
        let Some(p) = bootpack::parse(self.pack).and_then(|mut it| it.nth(index)) else {
            return;
        };
        match self.start(p, None, &[]) {
            Ok(pid) => {
                log::info!("memd: started {} as pid {}", p.name, pid);
                // The first program holds every device's capability.
                if let Err(e) = self.memd.grant_devices(pid, self.memd.all_devices()) {
                    log::error!("memd: devices not granted to {}: {:?}", p.name, e);
                }
            }
            Err(e) => log::error!("memd: cannot start {}: {}", p.name, e),
        }
    }

    fn start(
        &self,
        p: Program<'static>,
        parent: Option<Pid>,
        args: &[u8],
    ) -> Result<Pid, loader::LoadError> {
        // W^X passes from a parent to what it spawns.
        let deny = parent.is_some_and(|p| self.memd.denies_write_exec(p).unwrap_or(false));
        let pid = loader::start(&self.memd, p.bytes, deny)?;
        let space = self.memd.space_of(pid).map_err(|e| {
            self.forget(pid);
            loader::LoadError::Vm(e)
        })?;
        let program = Running {
            name: p.name.into(),
            args: args.to_vec(),
        };
        self.procs.write().add(pid, space, parent, program);
        Ok(pid)
    }

    /// Ends process `pid` that never made it into [`Procs`] (its memory returned), and drops
    /// the core's record of its death.
    fn forget(&self, pid: Pid) {
        // The only refusal is `NoSuchProcess`: then the core holds nothing of it.
        if self.memd.exit(pid, -1).is_ok() {
            self.memd.reap(pid);
        }
    }

    /// Serves messages forever (each worker thread runs this).
    pub fn run(&self) -> ! {
        let mut bulk = alloc::vec![0u8; MAX_BULK];
        loop {
            let m = sys::receive();
            if m.token < 0 {
                continue;
            }
            let token = m.token as u64;
            let badge = m.words[nr::MSG_BADGE];
            if token & TOKEN_FAULT != 0 {
                self.fault(token, badge, &m.words);
            } else if token & TOKEN_EXIT != 0 {
                self.exited(badge, m.words[nr::EXIT_CODE], m.words[nr::EXIT_RIP]);
            } else {
                self.request(token, badge, &m.words, m.lend, &mut bulk);
            }
            self.oom_victims();
            let served = self.messages.fetch_add(1, Ordering::Relaxed) + 1;
            if served.is_multiple_of(HEAP_CHECK) {
                super::grow_heap(&self.memd);
            }
        }
    }

    /// Announces the processes the out-of-memory policy killed for another's fault, and
    /// answers their parents.
    fn oom_victims(&self) {
        for pid in self.memd.take_oom_victims() {
            let _life = self.life.lock();
            log::warn!("memd: killed pid {}: out of memory (largest process)", pid);
            self.died(
                pid,
                wait_status::fault(wait_status::OOM, wait_status::READ),
                0,
            );
        }
    }

    /// Records the death of `pid` and answers a parent waiting for it (under the lifecycle
    /// lock).
    fn died(&self, pid: Pid, status: u64, addr: u64) {
        // The core's record of the death is not needed: the status is kept here (until the
        // parent waits), so the core's is dropped at once and its table of the dead stays
        // empty.
        self.memd.reap(pid);
        let answer = self.procs.write().died(pid, status, addr);
        if let Some(a) = answer {
            self.answer(a);
        }
    }

    /// Delivers a `WAIT`'s answer: the fault address into the lent buffer (when 8 bytes are
    /// lent), then the status; the child is reaped. A buffer memd cannot write gets
    /// `BadBuffer` and the child stays a zombie, to be waited for again.
    fn answer(&self, a: Answer) {
        let w = a.waiter;
        if w.lend >= 8 && sys::ipc_write(w.token, 0, &a.addr.to_le_bytes()) < 0 {
            return reply_cqe(w.token, w.tag, Err(VmError::BadBuffer));
        }
        self.procs.write().reap(a.child);
        reply_cqe(w.token, w.tag, Ok(a.status));
    }

    fn fault(&self, token: u64, badge: u64, w: &[u64; 8]) {
        let vector = w[nr::FAULT_VECTOR];
        let sp = w[nr::FAULT_SP];
        let thread = w[nr::FAULT_THREAD];
        let Some(pid) = self.pid_of(badge) else {
            sys::reply(token, PAGE_FAULT, 0);
            return;
        };
        if vector != PAGE_FAULT {
            if let Some(d) = self.memd.exception_delivery(pid, thread, vector, sp)
                && self.deliver(token, pid, &d)
            {
                return;
            }
            // The kernel kills the thread; its exit notice brings the status.
            self.memd.count_kill(Kill::Exception);
            sys::reply(token, vector.max(1), 0);
            return;
        }
        let addr = w[nr::FAULT_ADDR];
        let bits = w[nr::FAULT_ACCESS];
        let access = if bits & ACCESS_EXEC != 0 {
            Access::Execute
        } else if bits & ACCESS_WRITE != 0 {
            Access::Write
        } else {
            Access::Read
        };
        match self.memd.handle_fault(pid, thread, addr, access, sp) {
            FaultOutcome::Resolved => {
                log::debug!(
                    "memd: pid {} {:?} fault at {:#x} resolved",
                    pid,
                    access,
                    addr
                );
                sys::reply(token, 0, 0);
            }
            FaultOutcome::Deliver { delivery, kill } => {
                if !self.deliver(token, pid, &delivery) {
                    let _life = self.life.lock();
                    if self.memd.kill_for(pid, kill) {
                        self.killed(token, badge, pid, kill);
                    } else {
                        sys::reply(token, PAGE_FAULT, 0);
                    }
                }
            }
            // Ended by another worker meanwhile, which says so: the thread only dies.
            FaultOutcome::Gone => sys::reply(token, PAGE_FAULT, 0),
            FaultOutcome::Kill(kill) => {
                let _life = self.life.lock();
                self.killed(token, badge, pid, kill)
            }
        }
    }

    /// Asks the kernel to resume the faulting thread behind `token` in its process's handler;
    /// whether it did (a refusal changed nothing: the thread still waits for a reply).
    fn deliver(&self, token: u64, pid: Pid, d: &Delivery) -> bool {
        let r = sys::call(nr::FAULT_DELIVER, token, d.entry, d.frame, d.info());
        if r < 0 {
            log::warn!(
                "memd: pid {}: the kernel refused to deliver a fault to its handler (frame at \
                 {:#x}, errno {})",
                pid,
                d.frame,
                -r
            );
            return false;
        }
        log::debug!(
            "memd: pid {} fault (signal {}, code {}) delivered to its handler at {:#x}",
            pid,
            d.signal,
            d.code,
            d.entry
        );
        self.memd.count_handled();
        true
    }

    /// Tells the kernel to end the thread behind `token`, whose process memd killed for
    /// `kill` (its memory is returned already), and answers its parent (under the lifecycle
    /// lock).
    fn killed(&self, token: u64, badge: u64, pid: Pid, kill: FaultKill) {
        let (reason, why) = match kill.reason {
            FaultReason::MapErr => (wait_status::MAPERR, "nothing mapped"),
            FaultReason::AccErr => (wait_status::ACCERR, "protection"),
            FaultReason::OutOfMemory => (wait_status::OOM, "out of memory (largest process)"),
        };
        let (acc, what) = match kill.access {
            Access::Read => (wait_status::READ, "read"),
            Access::Write => (wait_status::WRITE, "write"),
            Access::Execute => (wait_status::EXEC, "execute"),
        };
        log::warn!(
            "memd: killed pid {} (space {:#x}): {} at {:#x} ({})",
            pid,
            badge,
            what,
            kill.addr,
            why
        );
        // The space is gone already (its memory returned); the reply only tells a kernel that
        // still holds the thread to end it.
        sys::reply(token, PAGE_FAULT, 0);
        self.died(pid, wait_status::fault(reason, acc), kill.addr);
    }

    fn exited(&self, badge: u64, code: u64, rip: u64) {
        let _life = self.life.lock();
        let Some(pid) = self.procs.read().pid_of(badge) else {
            return;
        };
        let killed = code & KILLED != 0;
        let status = if code & KILLED != 0 {
            KILLED | (code & 0xFFFF_FFFF)
        } else {
            wait_status::exited(code as u32)
        };
        // Said of a process no parent waits for (the first program, an orphan), at every log
        // level: the boot runner reads the first program's exit status here.
        let name = self.name(pid);
        if killed {
            let vector = code & 0xFF;
            log::warn!(
                "memd: killed pid {} (space {:#x}): {} (vector {}) at rip {:#x}",
                pid,
                badge,
                wait_status::vector_name(vector),
                vector,
                rip
            );
        }
        if self.parent(pid).is_none() {
            if killed {
                println!(
                    "memd: pid {} ({}) ended: killed by the kernel: {} (vector {}) at rip {:#x}",
                    pid,
                    name,
                    wait_status::vector_name(code & 0xFF),
                    code & 0xFF,
                    rip
                );
            } else {
                println!(
                    "memd: pid {} ({}) ended: exit status {}",
                    pid, name, code as u32
                );
            }
        }
        // A process memd ended itself (the out-of-memory policy) is gone already: its frames
        // went back then.
        if let Err(e) = self.memd.exit(pid, code as i32)
            && e != VmError::NoSuchProcess
        {
            println!("memd: ending pid {}: {:?}", pid, e);
        }
        // For a kill by an exception, the word a parent's WAIT gets is where it happened.
        self.died(pid, status, if killed { rip } else { 0 });
    }

    fn request(&self, token: u64, badge: u64, w: &[u64; 8], lend: u64, bulk: &mut [u8]) {
        let sqe: Sqe = proto::sqe_from_words(w);
        let tag = sqe.tag;
        let Some(pid) = self.pid_of(badge) else {
            reply_cqe(token, tag, Err(VmError::NoSuchProcess));
            return;
        };
        let decoded = Request::decode(&sqe);
        log::debug!("memd: pid {} {:?}", pid, decoded);
        match decoded {
            Ok(Request::Fork) => {
                let _life = self.life.lock();
                self.fork(token, tag, pid)
            }
            Ok(r @ Request::Spawn { .. }) => {
                let name = r.name().unwrap_or("");
                let mut args = alloc::vec![0u8; (lend as usize).min(proto::MAX_ARGS)];
                if !args.is_empty() && sys::ipc_read(token, 0, &mut args) < 0 {
                    return reply_cqe(token, tag, Err(VmError::BadBuffer));
                }
                let _life = self.life.lock();
                let room = self.procs.read().room(Some(pid));
                let result = match self.module(name) {
                    Some(p) => room.and_then(|()| {
                        self.start(p, Some(pid), &args).map_err(|e| match e {
                            loader::LoadError::Vm(v) => v,
                            loader::LoadError::Thread(_) => VmError::OutOfMemory,
                            loader::LoadError::BadElf(_) => VmError::BadRequest,
                        })
                    }),
                    None => Err(VmError::NoSuchProcess),
                };
                reply_cqe(token, tag, result);
            }
            Ok(Request::Args) => {
                let args = self
                    .procs
                    .read()
                    .program(pid)
                    .map_or_else(Vec::new, |p| p.args.clone());
                let n = args.len().min(lend as usize);
                if n > 0 && sys::ipc_write(token, 0, &args[..n]) < 0 {
                    return reply_cqe(token, tag, Err(VmError::BadBuffer));
                }
                reply_cqe(token, tag, Ok(n as u64));
            }
            Ok(Request::Wait { pid: child, nohang }) => {
                let _life = self.life.lock();
                let alive = self.parent(child) == Some(pid) && self.memd.space_of(child).is_ok();
                if nohang && alive {
                    return reply_cqe(token, tag, Ok(wait_status::RUNNING));
                }
                let waiter = Waiter { token, tag, lend };
                let answer = self.procs.write().wait(pid, child, waiter);
                match answer {
                    Ok(Some(a)) => self.answer(a),
                    Ok(None) => {}
                    Err(e) => reply_cqe(token, tag, Err(e)),
                }
            }
            Ok(Request::GrantDevice { pid: child, device }) => {
                let _life = self.life.lock();
                // Only to a live child.
                let result = if self.parent(child) != Some(pid) {
                    Err(VmError::NoSuchProcess)
                } else {
                    self.memd.grant_device(pid, child, device).map(|()| 0)
                };
                reply_cqe(token, tag, result);
            }
            Ok(Request::Kill { pid: child }) => {
                let _life = self.life.lock();
                // Only a parent, and only of a live child: a zombie's status stays as it died.
                if self.parent(child) != Some(pid) || self.memd.exit(child, -1).is_err() {
                    return reply_cqe(token, tag, Err(VmError::NoSuchProcess));
                }
                self.memd.count_kill(Kill::Parent);
                let name = self.name(child);
                log::warn!(
                    "memd: killed pid {} ({}): its parent, pid {}, asked (KILL)",
                    child,
                    name,
                    pid
                );
                reply_cqe(token, tag, Ok(0));
                self.died(child, wait_status::killed_by_parent(), 0);
            }
            _ => {
                let n = (lend as usize).min(MAX_BULK);
                let writes = matches!(
                    sqe.opcode,
                    proto::GLOBAL_STATS
                        | proto::PROCESS_STATS
                        | proto::REGIONS
                        | proto::PROCESSES
                        | proto::PRLIMIT
                        | proto::MINCORE
                );
                if sqe.opcode == proto::GLOBAL_STATS {
                    let (used, total) = super::own_memory();
                    self.memd.set_own_memory(used, total);
                }
                let bulk = &mut bulk[..n];
                bulk.fill(0);
                if writes && n > 0 && sys::ipc_read(token, 0, bulk) < 0 {
                    reply_cqe(token, tag, Err(VmError::BadBuffer));
                    return;
                }
                // The token is the calling thread's id.
                let cqe = self.memd.handle_decoded(pid, token, tag, decoded, bulk);
                if sqe.opcode == proto::PROCESSES {
                    name_processes(&self.procs.read(), bulk);
                }
                if writes
                    && n > 0
                    && proto::decode_reply(&cqe).is_ok()
                    && sys::ipc_write(token, 0, bulk) < 0
                {
                    // Nothing was changed: these calls only read memd's state.
                    return reply_cqe(token, tag, Err(VmError::BadBuffer));
                }
                let r = proto::cqe_to_words(&cqe);
                sys::reply(token, r[0], r[1]);
            }
        }
    }

    /// Forks `parent` (under the lifecycle lock).
    fn fork(&self, token: u64, tag: u32, parent: Pid) {
        let room = self.procs.read().room(Some(parent));
        if let Err(e) = room {
            return reply_cqe(token, tag, Err(e));
        }
        let child = match self.memd.fork(parent, token) {
            Ok(c) => c,
            Err(e) => return reply_cqe(token, tag, Err(e)),
        };
        let Ok(space) = self.memd.space_of(child) else {
            self.forget(child);
            return reply_cqe(token, tag, Err(VmError::OutOfMemory));
        };
        // In the child the call returns the reply (tag, 0).
        let w0 = proto::cqe_to_words(&proto::encode_reply(tag, Ok(0)))[0];
        let t = sys::call(nr::THREAD_CLONE, token, space, w0, 0);
        if t < 0 {
            self.forget(child);
            return reply_cqe(token, tag, Err(VmError::OutOfMemory));
        }
        self.memd.forked_thread(child, t as u64);
        let mut procs = self.procs.write();
        // The parent's record is there: its call was mapped to it, and records change only
        // under the lifecycle lock held here. A child takes its parent's name and arguments.
        let program = match procs.program(parent) {
            Some(p) => p.clone(),
            None => {
                log::error!(
                    "memd: pid {} forked without a record; its child has no name",
                    parent
                );
                Running::default()
            }
        };
        procs.add(child, space, Some(parent), program);
        drop(procs);
        reply_cqe(token, tag, Ok(child));
    }

    /// Processes alive.
    pub fn alive(&self) -> usize {
        self.procs.read().alive()
    }
}
