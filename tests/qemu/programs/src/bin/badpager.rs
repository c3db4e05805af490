//! A hostile pager (boot module 0): it resumes every fault without fixing anything and
//! reports exits. The kernel must still never return a thread to an address outside the user
//! half: a thread whose saved instruction pointer is not below the user-half end is killed
//! instead.
#![no_std]
#![no_main]

use user_rt::*;

entry!(main);

fn main(start: Start) -> u64 {
    check!(start.pager, "the first boot program is the pager");
    println!("badpager: resuming every fault");
    loop {
        let Received {
            token, words: m, ..
        } = ipc_receive(PAGER_ENDPOINT);
        check!(token >= 0, "receive: {}", token);
        let token = token as u64;
        if token & TOKEN_FAULT != 0 {
            println!(
                "badpager: resuming fault vector {} at {:#x} (rip {:#x}) of space {:#x}",
                m[0], m[1], m[3], m[7]
            );
            ipc_reply(token, 0, 0);
        } else if token & TOKEN_EXIT != 0 {
            println!("badpager: space {:#x} ended with code {:#x}", m[7], m[0]);
        } else {
            ipc_reply(token, u64::MAX, 0);
        }
    }
}
