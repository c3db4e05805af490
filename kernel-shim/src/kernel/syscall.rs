//! The system calls: `syscall` with the number in rax and arguments in rdi, rsi, rdx, r10, r8,
//! r9 (IPC also r12..r15). rax returns a value or -errno; rcx and r11 are clobbered.
//!
//! The table of every call, its arguments and who may make it is in [`kernel_shim::abi`], the
//! one definition user space shares; this file dispatches on those numbers. redox_syscall's
//! `fmap`/`funmap`/`mprotect` numbers are routed to the pager ([`super::redox`]).

use super::errno::{E2BIG, EINVAL, ENOMEM, ENOSYS, EXCLUSIVE, Errno, to_rax};
use super::ipc::Replied;
use super::pt::USER_TOP;
use super::state::Kernel;
use super::timer::TICK_NS;
use super::{fault, futex, ipc, pager, percpu, redox, serial, shootdown, usercopy};
use core::sync::atomic::Ordering;
use kernel_shim::abi as nr;

/// The largest `debug_write`.
pub const MAX_DEBUG_WRITE: u64 = 1 << 20;

/// What a call left the caller to do.
enum Done {
    /// Return `value` in rax.
    Value(u64),
    /// The caller blocked (or ended); its registers are set by whoever wakes it.
    Blocked,
    /// The call set every register of the caller itself.
    Restored,
}

/// `clock`: the time since boot, in the caller's rax, and straight back to it. It reads one
/// atomic and writes only the caller's frame, so it takes no lock: no other processor touches
/// the slot of a thread running here before this processor answers it (`shootdown`), which it
/// does only back in ring 3. Returns only if the frame cannot go back to ring 3.
#[inline(always)]
pub fn clock(frame: &mut super::trap::TrapFrame) {
    frame.rax = super::sched::TICKS.load(Ordering::Relaxed) * TICK_NS;
    // Returns only if the frame cannot go back to ring 3: the caller then takes the lock and
    // the scheduler kills the thread.
    let _refused = super::trap::return_from_syscall(frame);
}

/// Whether call `number` runs in a shared entry ([`super::lock`]): the calls of the fault
/// path and of IPC, and those that touch only the caller.
#[inline(always)]
pub fn is_shared(number: u64) -> bool {
    const SHARED: u64 = 1 << nr::CPU_INFO
        | 1 << nr::YIELD
        | 1 << nr::IPC_CALL
        | 1 << nr::IPC_RECEIVE
        | 1 << nr::IPC_REPLY
        | 1 << nr::IPC_REPLY_RECEIVE
        | 1 << nr::SPACE_APPLY
        | 1 << nr::SPACE_APPLY1;
    number < 64 && SHARED & (1 << number) != 0
}

/// Runs the system call of thread `t` (running here; its registers saved in its frame), one
/// of [`is_shared`]'s, in a shared entry. Returns `false` when the call must run in an
/// exclusive entry ([`handle`]): it changed nothing.
#[inline(always)]
pub fn handle_shared(k: &Kernel, t: usize) -> bool {
    let result = match k.threads[t].frame.rax {
        nr::IPC_REPLY => match ipc::reply(k, t) {
            Ok(Replied::Kill(_)) => return false,
            r => r.map(|_| Done::Value(0)),
        },
        nr::IPC_REPLY_RECEIVE => match ipc::reply_receive(k, t) {
            Ok(Replied::Kill(_)) => return false,
            r => r.map(|_| Done::Blocked),
        },
        n => common(k, t, n),
    };
    if result.as_ref().err() == Some(&EXCLUSIVE) {
        return false;
    }
    finish(k, t, result);
    true
}

/// The calls both kinds of entry run the same way.
#[inline(always)]
fn common(k: &Kernel, t: usize, number: u64) -> Result<Done, Errno> {
    match number {
        nr::CPU_INFO => Ok(Done::Value(
            percpu::index() as u64 | (shootdown::running() as u64) << 32,
        )),
        nr::YIELD => {
            // SAFETY: this processor's record, no other reference live.
            unsafe { k.cpu() }.preempt = true;
            Ok(Done::Value(0))
        }
        nr::IPC_CALL => ipc::call(k, t).map(|()| Done::Blocked),
        nr::IPC_RECEIVE => ipc::receive(k, t).map(|()| Done::Blocked),
        nr::SPACE_APPLY => pager::space_apply(k, t).map(Done::Value),
        nr::SPACE_APPLY1 => pager::space_apply1(k, t).map(Done::Value),
        _ => Err(ENOSYS),
    }
}

/// Puts the result of thread `t`'s call in its rax, and goes straight back to it when nothing
/// else must run ([`super::sched::resume_caller`]); returns otherwise.
#[inline(always)]
fn finish(k: &Kernel, t: usize, result: Result<Done, Errno>) {
    let rax = match result {
        Ok(Done::Value(v)) => v,
        Ok(Done::Blocked | Done::Restored) => return,
        Err(e) => to_rax(e),
    };
    // SAFETY: the caller still runs here (a call that answers at once does not block it).
    unsafe { k.threads.slot(t) }.frame.rax = rax;
    super::sched::resume_caller(k, t);
}

/// Runs the system call of thread `t` (running here; its registers saved in its frame) in an
/// exclusive entry: any call.
#[inline(never)]
pub fn handle(k: &mut Kernel, t: usize) {
    // The number and the one argument read here (not a copy of the whole frame).
    let (number, arg) = (k.threads[t].frame.rax, k.threads[t].frame.rdi);
    let result: Result<Done, Errno> = match number {
        nr::DEBUG_WRITE => debug_write(k, t).map(Done::Value),
        nr::DEBUG_READ => debug_read(k, t).map(Done::Value),
        // A process's exit code is 32 bits: the bits above, `KILLED` among them, are the
        // kernel's to set, so no process can pass its exit off as a kill.
        nr::EXIT => {
            k.end_process(t, arg & 0xFFFF_FFFF, 0);
            Ok(Done::Blocked)
        }
        nr::THREAD_EXIT => {
            k.end_thread(t, arg & 0xFFFF_FFFF, 0);
            Ok(Done::Blocked)
        }
        nr::THREAD_JOIN => futex::join(k, t).map(|()| Done::Blocked),
        nr::FUTEX_WAIT => futex::wait(k, t).map(|()| Done::Blocked),
        nr::FUTEX_WAKE => futex::wake(k, t).map(Done::Value),
        nr::SET_TLS => set_tls(k, t).map(Done::Value),
        nr::THREAD_CREATE => thread_create(k, t).map(Done::Value),
        nr::IPC_REPLY => match ipc::reply(k, t) {
            Ok(Replied::Kill(c)) => {
                kill_refused(k, c);
                Ok(Done::Value(0))
            }
            r => r.map(|_| Done::Value(0)),
        },
        nr::IPC_REPLY_RECEIVE => match ipc::reply_receive(k, t) {
            Ok(Replied::Kill(c)) => {
                kill_refused(k, c);
                // Checked by `reply_receive` already: the endpoint is the caller's.
                ipc::receive(k, t).map(|()| Done::Blocked)
            }
            r => r.map(|_| Done::Blocked),
        },
        nr::IPC_READ => ipc::transfer(k, t, false).map(Done::Value),
        nr::IPC_WRITE => ipc::transfer(k, t, true).map(Done::Value),
        nr::ENDPOINT_CREATE => ipc::open(k, k.threads[t].space)
            .map(|e| Done::Value(e as u64))
            .ok_or(ENOMEM),
        nr::SPACE_CREATE => pager::space_create(k, t).map(Done::Value),
        nr::SPACE_DESTROY => pager::space_destroy(k, t).map(Done::Value),
        nr::SPACE_RECLAIM => pager::space_reclaim(k, t).map(Done::Value),
        nr::FAULT_DELIVER => fault::fault_deliver(k, t).map(Done::Value),
        nr::FAULT_RETURN => fault::fault_return(k, t).map(|()| Done::Restored),
        nr::THREAD_START => pager::thread_start(k, t).map(Done::Value),
        nr::THREAD_CLONE => pager::thread_clone(k, t).map(Done::Value),
        nr::PAGER_INFO => pager::pager_info(k, t).map(Done::Value),
        nr::BOOTPACK_INFO => pager::bootpack_info(k, t).map(Done::Value),
        nr::PAGE_TABLE_FRAMES => pager::page_table_frames(k, t).map(Done::Value),
        nr::CMDLINE => cmdline(k, t).map(Done::Value),
        nr::DEVICE_INFO => pager::device_info(k, t).map(Done::Value),
        n if redox::is_routed(n) => redox::route(k, t, n).map(|()| Done::Blocked),
        n => common(k, t, n),
    };
    finish(k, t, result);
}

/// Kills the process of thread `c`, whose fault the pager refused (its exit code names the
/// fault's own vector, not what the pager replied).
fn kill_refused(k: &mut Kernel, c: usize) {
    k.kill_at_fault(c, "the pager refused its fault");
}

/// `thread_create(rip, rsp, arg, tls)`: a new thread of the caller's own space (its stack is
/// the caller's to provide: memory from its pager), on the run queue; its id.
#[inline(never)]
fn thread_create(k: &mut Kernel, t: usize) -> Result<u64, Errno> {
    let f = k.threads[t].frame;
    if f.rdi >= USER_TOP || f.rsi >= USER_TOP || f.r10 >= USER_TOP {
        return Err(EINVAL);
    }
    let mut frame = super::trap::TrapFrame::user(f.rdi, f.rsi);
    frame.rdi = f.rdx;
    let s = k.threads[t].space;
    let n = k.create_thread(s, frame, super::thread::Fpu::initial(), f.r10)?;
    Ok(k.thread_id(n))
}

/// `set_tls(base)`: the caller's FS base, loaded now and at each switch to it.
#[inline(never)]
fn set_tls(k: &mut Kernel, t: usize) -> Result<u64, Errno> {
    let base = k.threads[t].frame.rdi;
    if base >= USER_TOP {
        return Err(EINVAL);
    }
    k.threads[t].fs_base = base;
    // The caller runs here: its base is loaded now, as every switch to it does.
    super::sched::write_fs_base(base);
    Ok(0)
}

#[inline(never)]
fn debug_write(k: &mut Kernel, t: usize) -> Result<u64, Errno> {
    let f = k.threads[t].frame;
    let (ptr, len) = (f.rdi, f.rsi);
    usercopy::check_range(ptr, len)?;
    if len > MAX_DEBUG_WRITE {
        return Err(E2BIG);
    }
    let root = k.spaces[k.threads[t].space].root;
    let mut buf = [0u8; 256];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        usercopy::copy_in(root, ptr + done, &mut buf[..n])?;
        serial::write_bytes(&buf[..n]);
        done += n as u64;
    }
    Ok(len)
}

/// `cmdline(ptr, len)`: copies the kernel command line (cut to `len`); any process may read it.
#[inline(never)]
fn cmdline(k: &mut Kernel, t: usize) -> Result<u64, Errno> {
    let f = k.threads[t].frame;
    usercopy::check_range(f.rdi, f.rsi)?;
    let n = k.cmdline_len.min(f.rsi as usize);
    let root = k.spaces[k.threads[t].space].root;
    let line = k.cmdline;
    // The whole destination a full line could need must be the caller's to write, whatever
    // the length of this boot's line.
    usercopy::check_writable(root, f.rdi, f.rsi.min(line.len() as u64))?;
    usercopy::copy_out(root, f.rdi, &line[..n])?;
    Ok(n as u64)
}

#[inline(never)]
fn debug_read(k: &mut Kernel, t: usize) -> Result<u64, Errno> {
    let f = k.threads[t].frame;
    let (ptr, len) = (f.rdi, f.rsi.min(256));
    usercopy::check_range(ptr, f.rsi)?;
    let root = k.spaces[k.threads[t].space].root;
    let mut buf = [0u8; 256];
    // Check that the whole destination is writable before taking bytes off the UART.
    usercopy::copy_out(root, ptr, &buf[..len as usize])?;
    let mut n = 0;
    while n < len as usize {
        match serial::read_byte() {
            Some(b) => {
                buf[n] = b;
                n += 1;
            }
            None => break,
        }
    }
    usercopy::copy_out(root, ptr, &buf[..n])?;
    Ok(n as u64)
}
