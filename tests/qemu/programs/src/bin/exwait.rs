//! Under memd: spawns each exception program of the QEMU tests and waits for it, printing
//! `exwait: NAME ended with status S`, the raw `WAIT` status: `KILLED | vector` for a process
//! the kernel killed for an exception.
#![no_std]
#![no_main]

use user_rt::*;

entry!(main);

/// The programs that raise one exception each.
const EXCEPTIONS: [&str; 6] = [
    "divzero",
    "singlestep",
    "breakpoint",
    "badopcode",
    "gpfault",
    "x87fault",
];

fn main(_: Start) -> u64 {
    let vm = vm();
    for name in EXCEPTIONS {
        let pid = match vm.spawn(name) {
            Ok(pid) => pid,
            Err(e) => {
                println!("FAIL exwait: spawn {}: {:?}", name, e);
                return 1;
            }
        };
        match vm.wait(pid) {
            Ok((status, _)) => println!("exwait: {} ended with status {:#x}", name, status),
            Err(e) => {
                println!("FAIL exwait: wait {}: {:?}", name, e);
                return 1;
            }
        }
    }
    println!("PASS exwait");
    0
}
