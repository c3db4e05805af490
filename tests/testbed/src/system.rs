//! `System`: memd as the pager of simulated processes, over the emulated kernel and MMU.
//!
//! A simulated process is a pid and an address space; its "instructions" are the loads, stores
//! and fetches a test asks for through [`System::read`], [`System::write`] and
//! [`System::fetch`]. Each goes through the MMU, which walks the real page tables; a fault is
//! delivered to memd exactly as the kernel delivers it, and the access resumes or the process
//! is killed. Memory calls go through libvm over an in-process transport ([`System::client`]).
//!
//! A process that registered a fault handler (`Vm::set_fault_handler`) gets its refused
//! faults as the kernel delivers them on the metal: memd decides, the testbed writes the
//! frame on the alternate stack as `fault_deliver` does (through the page tables, each page
//! needing write access) and the access stops with [`FaultKind::Handled`]: the test is the
//! handler. Until it calls [`System::handler_return`] the process runs on its alternate stack
//! (its stack pointer is the frame), so a fault it takes then is one inside the handler.

use crate::hostkernel::HostKernel;
use crate::mmu::{self, Mmu};
use crate::physmem::PhysMem;
use libvm::proto::{Cqe, Sqe};
use libvm::transport::Transport;
use libvm::vm::Vm;
use memd::{Access, Death, FaultKill, FaultOutcome, FaultReason, Limits, Memd, Pid};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How big the simulated machine is.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Simulated RAM in bytes.
    pub ram_bytes: u64,
    /// Frames of it the kernel keeps for its own page tables (the kernel half's); the tables
    /// of every process are frames memd donates.
    pub table_frames: u64,
    /// Limits of every new process.
    pub limits: Limits,
    /// Bytes of memd's memory the bookkeeping of all processes may take.
    pub bookkeeping: usize,
    /// The process the out-of-memory policy never picks.
    pub oom_exempt: Option<Pid>,
    /// The seed of layout randomization (`None`, the default: the fixed layout).
    pub aslr_seed: Option<[u8; 32]>,
    /// Huge pages wherever they fit (memd's `Config::huge_always`).
    pub huge_always: bool,
    /// Bytes at the top of RAM that are a device's memory instead (0: no device), given to
    /// memd as device 0, named [`DEVICE_NAME`].
    pub device_bytes: u64,
}

/// The name of the simulated device (see [`Config::device_bytes`]).
pub const DEVICE_NAME: &str = "fb";

impl Default for Config {
    fn default() -> Config {
        Config {
            ram_bytes: 64 << 20,
            table_frames: 8,
            limits: Limits::default(),
            bookkeeping: memd::Config::default().bookkeeping,
            oom_exempt: None,
            aslr_seed: None,
            huge_always: false,
            device_bytes: 0,
        }
    }
}

/// Why a simulated access did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The address of the first byte that faulted.
    pub addr: u64,
    /// What went wrong.
    pub kind: FaultKind,
}

/// The kind of a fault that stopped an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Nothing mapped there: the process was killed (`SEGV_MAPERR`).
    Unmapped,
    /// The protection forbids it: the process was killed (`SEGV_ACCERR`).
    Access,
    /// No frame could be had: the process was killed.
    OutOfMemory,
    /// The process is not alive.
    NoProcess,
    /// The fault went to the process's handler, which runs now (see the module doc): the
    /// frame at `frame` holds `signal`, `code`, the address and the access.
    Handled {
        /// `SIGSEGV` (or `SIGBUS`).
        signal: u32,
        /// `SEGV_MAPERR`, `SEGV_ACCERR`, ...
        code: u32,
        /// Where the kernel wrote the frame (the handler's stack pointer).
        frame: u64,
    },
}

impl Fault {
    /// A protection fault at `addr`.
    pub fn access(addr: u64) -> Fault {
        Fault {
            addr,
            kind: FaultKind::Access,
        }
    }

    /// A fault at `addr` where nothing is mapped.
    pub fn unmapped(addr: u64) -> Fault {
        Fault {
            addr,
            kind: FaultKind::Unmapped,
        }
    }
}

/// The transport of one simulated process: stamps its pid as the kernel stamps the badge
/// (and, as the kernel's token does, names the calling thread: [`THREAD`]).
#[derive(Clone)]
pub struct ProcessTransport {
    memd: Arc<Memd<HostKernel>>,
    pid: Pid,
}

/// The thread id of every simulated process's one thread (its requests and faults).
pub const THREAD: u64 = 1;

impl Transport for ProcessTransport {
    fn call(&self, request: &Sqe, bulk: &mut [u8]) -> Cqe {
        let mut stamped = *request;
        stamped.caller = self.pid;
        self.memd.handle(self.pid, THREAD, &stamped, bulk)
    }
}

/// The simulated machine: RAM, kernel, MMU, and memd serving every process.
pub struct System {
    memd: Arc<Memd<HostKernel>>,
    phys: Arc<PhysMem>,
    mmu: Mmu,
    /// The processes running their fault handler: the stack pointers they had before each
    /// delivery, innermost last, and the frames.
    handling: Mutex<HashMap<Pid, Vec<(u64, u64)>>>,
}

/// How often the same fault may come back right after memd resolved it before the access is
/// declared stuck (a bug in memd or the kernel).
const MAX_REFAULTS: u32 = 4;

impl System {
    /// Builds a machine of `config.ram_bytes` of RAM with memd as its pager.
    pub fn new(config: Config) -> System {
        let phys = Arc::new(PhysMem::with_device(
            config.ram_bytes,
            config.table_frames,
            config.device_bytes,
        ));
        let ranges = phys.memd_ranges();
        let kernel = HostKernel::new(Arc::clone(&phys));
        let mmu = kernel.mmu();
        let memd = Arc::new(Memd::new(
            kernel,
            &ranges,
            memd::Config {
                limits: config.limits,
                bookkeeping: config.bookkeeping,
                oom_exempt: config.oom_exempt,
                aslr_seed: config.aslr_seed,
                huge_always: config.huge_always,
            },
        ));
        if let Some((base, len)) = phys.device_range() {
            memd.add_device(DEVICE_NAME, base, len)
                .expect("the first device is taken");
        }
        System {
            memd,
            phys,
            mmu,
            handling: Mutex::new(HashMap::new()),
        }
    }

    /// `len` bytes of the device's memory from `offset`, as the device holds them.
    pub fn device_read(&self, offset: u64, len: usize) -> Vec<u8> {
        let (base, _) = self.phys.device_range().expect("a device");
        let mut bytes = vec![0; len];
        self.phys
            .window()
            .read(x86_64::PhysAddr::new(base + offset), &mut bytes)
            .expect("inside the device");
        bytes
    }

    /// The device stores `bytes` at `offset` of its memory.
    pub fn device_write(&self, offset: u64, bytes: &[u8]) {
        let (base, _) = self.phys.device_range().expect("a device");
        self.phys
            .window()
            .write(x86_64::PhysAddr::new(base + offset), bytes)
            .expect("inside the device");
    }

    /// The leaf page-table flags of `addr` in process `pid` now (no fault), if it is mapped.
    pub fn page_flags(&self, pid: Pid, addr: u64) -> Option<kernel_shim::paging::PageTableFlags> {
        let space = self.memd.space_of(pid).ok()?;
        Some(self.memd.kernel().translate(space, addr)?.flags)
    }

    /// The simulated stack pointer of process `pid`: the frame of the handler it runs, else 0
    /// (its own stack, never an alternate one).
    fn stack_pointer(&self, pid: Pid) -> u64 {
        let handling = self.handling.lock().unwrap();
        handling
            .get(&pid)
            .and_then(|frames| frames.last())
            .map_or(0, |&(_, frame)| frame)
    }

    /// Process `pid` returns from its fault handler (the kernel's `fault_return`): it runs on
    /// the stack it had before the delivery. Whether it was in its handler.
    pub fn handler_return(&self, pid: Pid) -> bool {
        let mut handling = self.handling.lock().unwrap();
        handling.get_mut(&pid).and_then(|f| f.pop()).is_some()
    }

    /// The kernel's `fault_deliver` for a fault at `addr`: the frame written at
    /// `d.frame`, through the page tables (every page writable, checked before any byte is
    /// written, as the kernel does); whether it was.
    fn deliver(&self, pid: Pid, space: u64, addr: u64, access: Access, d: &memd::Delivery) -> bool {
        use kernel_shim::abi::fault_frame as ff;
        let bits = match access {
            Access::Read => 0,
            Access::Write => kernel_shim::abi::ACCESS_WRITE,
            Access::Execute => kernel_shim::abi::ACCESS_EXEC,
        };
        let sp = self.stack_pointer(pid);
        let mut words = [0u64; ff::WORDS];
        words[ff::SIGNAL] = u64::from(d.signal);
        words[ff::CODE] = u64::from(d.code);
        words[ff::ADDR] = addr;
        words[ff::ACCESS] = bits;
        words[ff::VECTOR] = kernel_shim::abi::PAGE_FAULT;
        words[ff::RSP] = sp;
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let pages = (d.frame & !4095..d.frame + ff::BYTES).step_by(4096);
        let writable = pages.clone().all(|p| {
            self.mmu
                .access(space, p.max(d.frame), Access::Write)
                .is_ok()
        });
        if !writable || self.mmu.write(space, d.frame, &bytes).is_err() {
            return false;
        }
        let mut handling = self.handling.lock().unwrap();
        handling.entry(pid).or_default().push((sp, d.frame));
        true
    }

    /// memd itself.
    pub fn memd(&self) -> &Memd<HostKernel> {
        &self.memd
    }

    /// A new process with an empty image.
    pub fn spawn(&self) -> Result<Pid, libvm::VmError> {
        self.memd.spawn()
    }

    /// The libvm handle of process `pid`.
    pub fn client(&self, pid: Pid) -> Vm<ProcessTransport> {
        Vm::new(self.transport(pid))
    }

    /// The transport of process `pid` (to bind libvm's free functions to a thread).
    pub fn transport(&self, pid: Pid) -> ProcessTransport {
        ProcessTransport {
            memd: Arc::clone(&self.memd),
            pid,
        }
    }

    /// Forks process `pid` (memd's half of fork; a simulated process has no registers).
    pub fn fork(&self, pid: Pid) -> Result<Pid, libvm::VmError> {
        self.memd.fork(pid, THREAD)
    }

    /// Process `pid` exits with `status`.
    pub fn exit(&self, pid: Pid, status: i32) -> Result<(), libvm::VmError> {
        self.handling.lock().unwrap().remove(&pid);
        self.memd.exit(pid, status)
    }

    /// How process `pid` died, if it did.
    pub fn reap(&self, pid: Pid) -> Option<Death> {
        self.memd.reap(pid)
    }

    /// Process `pid` stores `bytes` at `addr`.
    pub fn write(&self, pid: Pid, addr: u64, bytes: &[u8]) -> Result<(), Fault> {
        self.run(pid, addr, Access::Write, |space, at, done| {
            self.mmu.write(space, at, &bytes[done..])
        })
    }

    /// Process `pid` loads `len` bytes from `addr`.
    pub fn read(&self, pid: Pid, addr: u64, len: usize) -> Result<Vec<u8>, Fault> {
        let mut buf = vec![0u8; len];
        self.run(pid, addr, Access::Read, |space, at, done| {
            self.mmu.read(space, at, &mut buf[done..])
        })?;
        Ok(buf)
    }

    /// Process `pid` fetches `len` bytes of instructions from `addr`.
    pub fn fetch(&self, pid: Pid, addr: u64, len: usize) -> Result<Vec<u8>, Fault> {
        let mut buf = vec![0u8; len];
        self.run(pid, addr, Access::Execute, |space, at, done| {
            self.mmu.fetch(space, at, &mut buf[done..])
        })?;
        Ok(buf)
    }

    /// Runs one access, handing each fault to memd as the kernel does, until it completes or
    /// the process is killed.
    fn run(
        &self,
        pid: Pid,
        addr: u64,
        access: Access,
        mut step: impl FnMut(u64, u64, usize) -> Result<(), mmu::FaultInfo>,
    ) -> Result<(), Fault> {
        let space = self.memd.space_of(pid).map_err(|_| Fault {
            addr,
            kind: FaultKind::NoProcess,
        })?;
        let mut done = 0usize;
        let mut last = None;
        let mut refaults = 0;
        let mut refused_seen = self.memd.kernel().stats().refused;
        loop {
            let at = addr.wrapping_add(done as u64);
            match step(space, at, done) {
                Ok(()) => return Ok(()),
                Err(info) => {
                    done = (info.addr - addr) as usize;
                    // A fault memd left unresolved because the kernel refused (the testbed's
                    // refusing mode) is not a stuck access: it is tried again.
                    let refused = self.memd.kernel().stats().refused;
                    if last == Some(info.addr) && refused == refused_seen {
                        refaults += 1;
                        assert!(
                            refaults < MAX_REFAULTS,
                            "memd resolved the fault at {:#x} but the MMU faults again",
                            info.addr
                        );
                    } else {
                        refaults = 0;
                    }
                    refused_seen = refused;
                    last = Some(info.addr);
                    let sp = self.stack_pointer(pid);
                    match self.memd.handle_fault(pid, THREAD, info.addr, access, sp) {
                        FaultOutcome::Resolved => {}
                        FaultOutcome::Deliver { delivery, kill } => {
                            if !self.deliver(pid, space, info.addr, access, &delivery) {
                                let own = self.memd.kill_for(pid, kill);
                                self.handling.lock().unwrap().remove(&pid);
                                return Err(if own { killed(kill) } else { gone(info.addr) });
                            }
                            self.memd.count_handled();
                            return Err(Fault {
                                addr: info.addr,
                                kind: FaultKind::Handled {
                                    signal: delivery.signal,
                                    code: delivery.code,
                                    frame: delivery.frame,
                                },
                            });
                        }
                        FaultOutcome::Kill(kill) => {
                            self.handling.lock().unwrap().remove(&pid);
                            return Err(killed(kill));
                        }
                        FaultOutcome::Gone => {
                            self.handling.lock().unwrap().remove(&pid);
                            return Err(gone(info.addr));
                        }
                    }
                }
            }
        }
    }
}

/// The fault of an access by a process another thread ended meanwhile (the out-of-memory
/// policy for another's fault, or its own exit): it stops as a process killed for want of
/// memory does; its death is what memd recorded.
fn gone(addr: u64) -> Fault {
    Fault {
        addr,
        kind: FaultKind::OutOfMemory,
    }
}

/// The fault a killed process's access stopped with.
fn killed(kill: FaultKill) -> Fault {
    Fault {
        addr: kill.addr,
        kind: match kill.reason {
            FaultReason::MapErr => FaultKind::Unmapped,
            FaultReason::AccErr => FaultKind::Access,
            FaultReason::OutOfMemory => FaultKind::OutOfMemory,
        },
    }
}
