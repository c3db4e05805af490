//! IPC round trips with the pager: the badge the receiver sees is the kernel's, whatever the
//! sender puts in word 7; bulk data through a lent buffer, both ways; reads past the lent
//! buffer are refused.
#![no_std]
#![no_main]

use user_rt::*;

entry!(main);

fn main(start: Start) -> u64 {
    let forged = [1u64, 41, 0, 0, 0, 0, 0, 0xBAD_BAD6E];
    let (st, r0, r1) = ipc_call(PAGER_ENDPOINT, &forged, &mut []);
    check!(st == 0 && r0 == 42, "echo: {} {}", st, r0);
    check!(
        r1 == start.badge,
        "the pager saw badge {:#x}, ours is {:#x}",
        r1,
        start.badge
    );
    let n = 200;
    let t0 = clock();
    for i in 0..n {
        let (st, r0, _) = ipc_call(PAGER_ENDPOINT, &[1, i, 0, 0, 0, 0, 0, 0], &mut []);
        check!(st == 0 && r0 == i + 1, "round trip {}", i);
    }
    println!("ipcping: {} round trips in {} us", n, (clock() - t0) / 1000);
    let mut buf = [0u8; 5000];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = i as u8;
    }
    let sum: u64 = buf.iter().map(|&b| b as u64).sum();
    let (st, r0, _) = ipc_call(PAGER_ENDPOINT, &[2, 5000, 0, 0, 0, 0, 0, 0], &mut buf);
    check!(st == 0 && r0 == sum, "bulk: {} {} want {}", st, r0, sum);
    check!(
        buf[0] == (4999 % 256) as u8 && buf[4999] == 0,
        "bulk write-back"
    );
    let mut small = [0u8; 32];
    let (st, r0, _) = ipc_call(PAGER_ENDPOINT, &[3, 20, 0, 0, 0, 0, 0, 0], &mut small);
    check!(
        st == 0 && -(r0 as i64) == errno::EINVAL,
        "read past the lent buffer: {}",
        r0 as i64
    );
    println!("PASS ipcping");
    0
}
