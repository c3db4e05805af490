//! Several processes faulting and mapping at once under timer preemption (module 1 of a memd
//! boot; `worker` in the pack): four workers run together; each must finish with 0 and every
//! frame must come back.
#![no_std]
#![no_main]

use user_rt::*;

entry!(main);

const WORKERS: usize = 4;

fn main(_: Start) -> u64 {
    let vm = vm();
    let base = global_stats();
    let mut pids = [0u64; WORKERS];
    for p in pids.iter_mut() {
        let pid = vm.spawn("worker");
        check!(pid.is_ok(), "spawn worker: {:?}", pid);
        *p = pid.unwrap_or(0);
    }
    for pid in pids {
        let w = vm.wait(pid);
        check!(w.map(|w| w.0) == Ok(0), "worker {} ended with {:?}", pid, w);
    }
    let after = global_stats();
    check!(
        after.frames_used == base.frames_used,
        "frames {} -> {}",
        base.frames_used,
        after.frames_used
    );
    println!("PASS stress");
    0
}
