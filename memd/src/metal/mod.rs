//! memd on the metal: the first ring-3 task, pager of every other.
//!
//! How it starts (see `_start`):
//! 1. `pager_info`: the free physical ranges the kernel handed it, all mapped read/write in
//!    its window at `WINDOW_BASE + physical address` before it ran.
//! 2. It keeps the first [`HEAP_BYTES`] (and 8 bytes a frame, for the frame allocator's
//!    tables) + [`STACK_BYTES`] of the largest range for itself —
//!    memory mapped eagerly (through the window), so memd never faults — and moves its stack
//!    there. The heap grows with demand afterwards ([`grow_heap`]): [`HEAP_STEP`] bytes of
//!    consecutive free frames at a time, taken from the frames of processes (through the
//!    window, mapped already), up to a quarter of them; half of each step raises the budget of
//!    the bookkeeping of processes.
//! 3. The rest of the frames go to memd's core ([`memd::Memd::new`]) over [`kernel::MetalKernel`].
//! 4. `bootpack_info`: the boot pack the kernel mapped read-only at `BOOTPACK_BASE`; memd starts
//!    module 1 (the first program after itself); the others wait to be `SPAWN`ed by name.
//! 5. [`serve::Server::run`]: requests, faults and exit notices, forever.
//!
//! One concept per file: [`sys`] (raw system calls), [`logger`] (the log and its level),
//! [`entropy`] (the seed of layout randomization), [`kernel`]
//! (the `Kernel` trait), [`loader`] (ELF boot modules), [`procs`] (parents, children, waits),
//! [`serve`] (the loop).

pub mod entropy;
pub mod kernel;
pub mod loader;
pub mod logger;
pub mod procs;
pub mod serve;
pub mod sys;

use alloc::vec::Vec;
use kernel_shim::abi::{self as nr, BOOTPACK_BASE, MAX_PAGER_RANGES, WINDOW_BASE};
use sys::println;

/// Bytes of memd's own heap at start (region maps, page maps, process records of every
/// process); it grows by [`HEAP_STEP`] when a quarter of it is left.
pub const HEAP_BYTES: u64 = 12 << 20;
/// Bytes the heap grows by at a time.
pub const HEAP_STEP: u64 = 4 << 20;

/// The most bytes the heap may reach: a quarter of the frames memd was given (set at start).
static HEAP_MAX: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(HEAP_BYTES);

/// Grows memd's heap by [`HEAP_STEP`] when less than a quarter of it is free, or of the
/// bookkeeping budget is left, and it is below its maximum, with frames `memd` gives up for
/// good (see the module doc); half of the step goes to the bookkeeping budget. Nothing happens
/// when no run of free frames is long enough.
pub fn grow_heap(memd: &memd::Memd<kernel::MetalKernel>) {
    let (used, total) = own_memory();
    let (booked, budget) = memd.bookkeeping_use();
    let max = HEAP_MAX.load(core::sync::atomic::Ordering::Relaxed);
    let short = total - used < total / 4 || budget - booked.min(budget) < budget / 4;
    if !short || total + HEAP_STEP > max {
        return;
    }
    let Some(start) = memd.take_own_memory(HEAP_STEP, (HEAP_STEP / 2) as usize) else {
        return;
    };
    let at = (WINDOW_BASE + start) as usize;
    // SAFETY: the frames `[start, start + HEAP_STEP)` were free and are memd's own for good
    // now (off the free list, counted in use); the window maps them read/write at `at`, and
    // nothing else refers to them.
    unsafe { HEAP.lock().add_to_heap(at, at + HEAP_STEP as usize) };
    log::info!(
        "memd: heap grown to {} KiB ({} KiB in use)",
        (total + HEAP_STEP) / 1024,
        used / 1024
    );
}
/// Bytes of memd's own stack.
pub const STACK_BYTES: u64 = 256 << 10;

/// memd's own allocator: buddy blocks over memory mapped eagerly at start (see Cargo.toml).
#[global_allocator]
static HEAP: buddy_system_allocator::LockedHeap<32> = buddy_system_allocator::LockedHeap::empty();

/// The kernel's slots of spaces and threads (`pager_info`): the most processes at once.
static KERNEL_SLOTS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// memd's own heap: bytes in use (as the allocator counts them: whole buddy blocks) and its
/// size, for `GLOBAL_STATS`.
pub fn own_memory() -> (u64, u64) {
    let heap = HEAP.lock();
    (
        heap.stats_alloc_actual() as u64,
        heap.stats_total_bytes() as u64,
    )
}

/// The entry: rdi = memd's badge, rdx = 1 (the pager).
#[unsafe(no_mangle)]
pub extern "C" fn _start(badge: u64, _thread: u64, pager: u64) -> ! {
    // The first of memd's worker threads; its stack is the boot one until the move below.
    sys::become_worker(0, 0);
    if pager != 1 {
        println!("memd: not started as the pager");
        sys::exit(1);
    }
    let mut info = [0u64; 2 + 2 * MAX_PAGER_RANGES];
    let n = sys::call(
        nr::PAGER_INFO,
        info.as_mut_ptr() as u64,
        (info.len() * 8) as u64,
        0,
        0,
    );
    if n <= 0 || info[0] != WINDOW_BASE {
        println!("memd: no frames ({})", n);
        sys::exit(1);
    }
    // The count of ranges; in bits 32.. the kernel's slots of spaces and threads.
    KERNEL_SLOTS.store(n as u64 >> 32, core::sync::atomic::Ordering::Relaxed);
    let n = (n as u64 & 0xFFFF_FFFF) as usize;
    let largest = (0..n).max_by_key(|&i| info[3 + 2 * i]).unwrap_or(0);
    let (start, len) = (info[2 + 2 * largest], info[3 + 2 * largest]);
    // The heap starts with room for the frame allocator's own tables too (a count and a free
    // list of twice the frames, 12 bytes a frame), whatever the size of RAM: twice that rounded
    // up to a power of two, as the buddy allocator hands out each table as one aligned block.
    let frames: u64 = (0..n).map(|i| info[3 + 2 * i] / 4096).sum();
    let heap = HEAP_BYTES + (2 * (frames * 12).next_power_of_two()).next_multiple_of(1 << 20);
    let own = heap + STACK_BYTES;
    if len < 2 * own {
        println!("memd: the largest range ({} bytes) is too small", len);
        sys::exit(1);
    }
    // SAFETY: the first `own` bytes of the range are memd's frames, mapped read/write in the
    // window for good; they are taken out of the range given to the frame allocator below, so
    // nothing else ever uses them.
    unsafe {
        HEAP.lock()
            .init((WINDOW_BASE + start) as usize, heap as usize)
    };
    let mut ranges = Vec::with_capacity(n);
    for i in 0..n {
        let (s, l) = (info[2 + 2 * i], info[3 + 2 * i]);
        if i == largest {
            ranges.push((s + own, s + l));
        } else {
            ranges.push((s, s + l));
        }
    }
    let ranges = alloc::boxed::Box::leak(ranges.into_boxed_slice());
    println!("memd: pager {:#x}, {} frame ranges", badge, n);
    let stack_top = WINDOW_BASE + start + own;
    sys::become_worker(0, stack_top);
    // SAFETY: switches to memd's own stack (above, mapped and unused) and calls `serve_main`,
    // which never returns; nothing on the boot stack is used afterwards except `ranges`, which
    // lives in the heap. rbp is cleared: the chain of frame pointers ends at `serve_main`.
    unsafe {
        core::arch::asm!(
            "mov rsp, {top}",
            "xor ebp, ebp",
            "call {main}",
            "ud2",
            top = in(reg) stack_top,
            main = sym serve_main,
            in("rdi") ranges.as_ptr(),
            in("rsi") ranges.len(),
            options(noreturn),
        )
    }
}

extern "C" fn serve_main(ranges: *const (u64, u64), n: usize) -> ! {
    // SAFETY: the leaked slice `_start` passed: valid for good.
    let ranges = unsafe { core::slice::from_raw_parts(ranges, n) };
    // Half the heap is what the bookkeeping of all processes (regions, resident pages) may
    // take, so no client can make memd run out of its own memory, by splitting mappings or by
    // forking large processes; the other half is for everything else memd keeps.
    // The out-of-memory policy never picks init, the first program (pid 1).
    // Before anything is logged: the level comes from the command line.
    logger::init();
    let (aslr_seed, source) = entropy::seed();
    // `max_map_count=N` on the command line: the most regions a process may have (Linux's
    // sysctl `vm.max_map_count`, 65,530 by default).
    let mut limits = memd::Limits::default();
    if let Some(n) = sys::cmdline()
        .split(' ')
        .find_map(|w| w.strip_prefix("max_map_count=")?.parse().ok())
    {
        limits.regions = n;
    }
    let config = memd::Config {
        limits,
        bookkeeping: (HEAP_BYTES / 2) as usize,
        oom_exempt: Some(1),
        aslr_seed,
        // `thp=always`: huge pages wherever they fit (Linux's `always` mode).
        huge_always: sys::cmdline().split(' ').any(|w| w == "thp=always"),
    };
    log::info!(
        "memd: address-space layout randomization {}",
        match source {
            entropy::Source::Off => "off (aslr=off)",
            entropy::Source::Rdrand => "on (seeded from RDRAND and RDTSC)",
            entropy::Source::Rdtsc => "on (seeded from RDTSC jitter only: no RDRAND)",
        }
    );
    let memd = memd::Memd::new(kernel::MetalKernel, ranges, config);
    add_devices(&memd);
    // The limits the core does not keep: children a process may have and processes in all
    // (memd's records, and the kernel's slots: memd itself takes one).
    let slots = KERNEL_SLOTS.load(core::sync::atomic::Ordering::Relaxed);
    memd.set_host_limits(
        procs::MAX_CHILDREN as u64,
        (procs::MAX_RECORDS as u64).min(slots.saturating_sub(1)),
    );
    HEAP_MAX.store(
        (memd.global_stats().frames_total * 4096 / 4).max(HEAP_BYTES),
        core::sync::atomic::Ordering::Relaxed,
    );
    let pack_len = sys::call(nr::BOOTPACK_INFO, 0, 0, 0, 0).max(0) as usize;
    // SAFETY: the kernel mapped `pack_len` bytes of the boot pack read-only at BOOTPACK_BASE
    // for good, and nothing writes them.
    let pack: &'static [u8] =
        unsafe { core::slice::from_raw_parts(BOOTPACK_BASE as *const u8, pack_len) };
    let stats = memd.global_stats();
    log::info!(
        "memd: ready: {} frames ({} KiB), heap {} KiB, boot pack {} bytes",
        stats.frames_total,
        stats.frames_total * 4,
        own_memory().1 / 1024,
        pack_len
    );
    let server: &'static serve::Server =
        alloc::boxed::Box::leak(alloc::boxed::Box::new(serve::Server::new(memd, pack)));
    SERVER.call_once(|| server);
    let workers = start_workers();
    log::info!(
        "memd: {} worker thread{} serving the pager endpoint",
        workers,
        if workers == 1 { "" } else { "s" }
    );
    server.start_index(1);
    if server.alive() == 0 {
        log::warn!("memd: nothing to run");
    }
    server.run()
}

/// Gives memd the device ranges of the command line the kernel accepted (see
/// [`memd::device`]), under their names.
fn add_devices(memd: &memd::Memd<kernel::MetalKernel>) {
    let line = sys::cmdline();
    for (i, word) in kernel_shim::abi::devices::parse(&line).enumerate() {
        let (base, len) = sys::syscall4(nr::DEVICE_INFO, i as u64, 0, 0, 0);
        let Some(dev) = word.filter(|_| base >= 0) else {
            continue;
        };
        match memd.add_device(dev.name, base as u64, len) {
            Some(index) => log::info!(
                "memd: device {} ({}) at {:#x}, {:#x} bytes",
                index,
                dev.name,
                base,
                len
            ),
            None => log::warn!("memd: device {} not kept", dev.name),
        }
    }
}

/// The server every worker runs.
static SERVER: spin::Once<&'static serve::Server> = spin::Once::new();

/// Starts a worker thread for each processor but the first (whose worker is this thread),
/// each on a stack of [`STACK_BYTES`] from memd's heap (mapped already: memd never faults);
/// how many workers there are in all.
fn start_workers() -> usize {
    let (_, cpus) = libvm::sys::raw::cpu_info();
    let mut workers = 1;
    for index in 1..(cpus as usize).min(sys::MAX_WORKERS) {
        let stack: &'static mut [u8] =
            alloc::boxed::Box::leak(alloc::vec![0u8; STACK_BYTES as usize].into_boxed_slice());
        let top = (stack.as_ptr() as u64 + STACK_BYTES) & !15;
        let block = sys::worker_block(index, top);
        let t = sys::call(
            nr::THREAD_CREATE,
            worker_main as *const () as u64,
            top - 8,
            index as u64,
            block,
        );
        if t < 0 {
            log::warn!("memd: no worker thread {} (errno {})", index, -t);
            break;
        }
        workers += 1;
    }
    workers
}

/// A worker thread: the server's loop, for good.
extern "C" fn worker_main(_index: u64) -> ! {
    match SERVER.get() {
        Some(server) => server.run(),
        None => sys::exit(1),
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("memd: PANIC: {}", info);
    backtrace();
    sys::exit(101)
}

/// Deepest backtrace printed.
const MAX_FRAMES: usize = 32;

/// Prints the return addresses of the calls that led here, in the format the boot runner
/// symbolizes (`backtrace (memd):`, then `  #N 0xADDRESS` a line; #0 is in this function):
/// memd is built with frame pointers, so each frame holds its caller's rbp and return address.
/// Only frames inside memd's own stack are read.
#[inline(never)]
fn backtrace() {
    let (rip, mut rbp): (u64, u64);
    // SAFETY: reads rip and rbp into registers; no memory is touched.
    unsafe {
        core::arch::asm!("lea {}, [rip]", "mov {}, rbp", out(reg) rip, out(reg) rbp,
                         options(nomem, nostack, preserves_flags))
    };
    // Only frames of this worker's own stack (none before `_start` moved to memd's stack).
    let top = sys::stack_top();
    let bottom = top.saturating_sub(STACK_BYTES);
    println!("backtrace (memd):\n  #0 {:#x}", rip);
    for n in 1..MAX_FRAMES {
        if rbp % 8 != 0 || rbp < bottom || rbp.saturating_add(16) > top {
            break;
        }
        // SAFETY: `rbp` and the word above it lie inside memd's own stack (checked above),
        // mapped for good and readable; a frame pointer that is not one only gives wrong
        // numbers, never a read outside it.
        let (next, ret) = unsafe {
            (
                core::ptr::read_volatile(rbp as *const u64),
                core::ptr::read_volatile((rbp + 8) as *const u64),
            )
        };
        if ret == 0 {
            break;
        }
        println!("  #{} {:#x}", n, ret);
        // Frames of callers lie higher up: a chain that does not climb is at its end.
        if next <= rbp {
            break;
        }
        rbp = next;
    }
}
