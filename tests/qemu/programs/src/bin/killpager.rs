//! A pager (boot module 0) that serves nothing: it refuses every fault with a reply word of its
//! own choosing (0xBAD) and prints each fault message and each exit notice word by word, so the
//! QEMU tests can check what the kernel sends: the vector and RIP of a fault, and in the exit
//! notice `KILLED | vector` (not the pager's word) and the RIP of the instruction that killed
//! the process.
#![no_std]
#![no_main]

use user_rt::*;

entry!(main);

/// What the pager replies to a fault: anything but 0 kills the thread.
const REFUSE: u64 = 0xBAD;

fn main(start: Start) -> u64 {
    check!(start.pager, "the first boot program is the pager");
    println!("killpager: refusing every fault");
    loop {
        let Received {
            token, words: m, ..
        } = ipc_receive(PAGER_ENDPOINT);
        check!(token >= 0, "receive: {}", token);
        let token = token as u64;
        if token & TOKEN_FAULT != 0 {
            println!(
                "killpager: fault vector {} at {:#x} (rip {:#x}) of space {:#x}",
                m[nr::FAULT_VECTOR],
                m[nr::FAULT_ADDR],
                m[nr::FAULT_RIP],
                m[nr::MSG_BADGE]
            );
            ipc_reply(token, REFUSE, 0);
        } else if token & TOKEN_EXIT != 0 {
            println!(
                "killpager: space {:#x} ended with code {:#x}, rip {:#x}",
                m[nr::MSG_BADGE],
                m[nr::EXIT_CODE],
                m[nr::EXIT_RIP]
            );
        } else {
            ipc_reply(token, u64::MAX, 0);
        }
    }
}
