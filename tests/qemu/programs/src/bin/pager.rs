//! The test pager (boot module 0): serves faults by mapping zeroed frames in the demand area
//! `0x1000_0000..0x1100_0000` and refuses every other fault; answers the test services
//! (echo with the sender's badge, bulk transfer through a lent buffer); reports exits.
#![no_std]
#![no_main]

use user_rt::*;

entry!(main);

/// Faults here are served with fresh zeroed frames.
const DEMAND: core::ops::Range<u64> = 0x1000_0000..0x1100_0000;

/// Service: reply (word 1 + 1, sender's badge).
pub const SVC_ECHO: u64 = 1;
/// Service: read the lent buffer (length word 1), reply with its byte sum, then write the
/// bytes back reversed.
pub const SVC_BULK: u64 = 2;
/// Service: try to read past the lent buffer; reply with the kernel's status.
pub const SVC_OVERREAD: u64 = 3;

fn main(start: Start) -> u64 {
    check!(start.pager, "the first boot program is the pager");
    let mut info = [0u64; 34];
    let r = syscall6(nr::PAGER_INFO, info.as_mut_ptr() as u64, 34 * 8, 0, 0, 0, 0);
    check!(r > 0, "pager_info: {}", r);
    // The count of ranges; the kernel's slots above bit 32.
    let (n, slots) = (r & 0xFFFF_FFFF, r >> 32);
    check!(
        n > 0 && slots >= 64,
        "pager_info: {} ranges, {} slots",
        n,
        slots
    );
    let window = info[0];
    let (mut next, end) = (info[2], info[2] + info[3]);
    println!(
        "pager: ready, window {:#x}, {} ranges, first {:#x}..{:#x}",
        window, n, next, end
    );
    loop {
        let Received {
            token, words: m, ..
        } = ipc_receive(PAGER_ENDPOINT);
        check!(token >= 0, "receive: {}", token);
        let token = token as u64;
        let badge = m[7];
        if token & TOKEN_FAULT != 0 {
            let (vector, addr, access) = (m[0], m[1], m[2]);
            if vector == 14 && DEMAND.contains(&addr) && next < end {
                let frame = next;
                next += 4096;
                // SAFETY: the window maps every frame of our ranges read/write; the frame is
                // fresh, nobody else uses it.
                unsafe { core::ptr::write_bytes((window + frame) as *mut u8, 0, 4096) };
                let page = addr & !0xFFF;
                let (r, done) = space_apply(badge, &[[OP_MAP, page, frame, 3]]);
                check!(r == 0 && done == 1, "map for a fault: {} {}", r, done);
                // An unmap whose last word is neither 0 nor `UNMAP_PRUNE` is refused whole:
                // the page stays mapped (the thread resumes without a second fault).
                let (r, done) = space_apply(badge, &[[OP_UNMAP, page, 1, 2]]);
                check!(
                    r == -errno::EINVAL && done == 0,
                    "an unmap with b = 2: {} {}",
                    r,
                    done
                );
                println!(
                    "pager: mapped {:#x} for space {:#x} (access {})",
                    page, badge, access
                );
                ipc_reply(token, 0, 0);
            } else {
                println!(
                    "pager: refusing fault vector {} at {:#x} of space {:#x}",
                    vector, addr, badge
                );
                ipc_reply(token, 14, 0);
            }
        } else if token & TOKEN_EXIT != 0 {
            println!("pager: space {:#x} ended with code {:#x}", badge, m[0]);
        } else {
            match m[0] {
                SVC_ECHO => {
                    ipc_reply(token, m[1] + 1, badge);
                }
                SVC_BULK => {
                    let len = m[1] as usize;
                    let mut buf = [0u8; 8192];
                    let len = len.min(buf.len());
                    let r = ipc_read(token, 0, &mut buf[..len]);
                    let sum: u64 = buf[..len].iter().map(|&b| b as u64).sum();
                    buf[..len].reverse();
                    let w = ipc_write(token, 0, &buf[..len]);
                    ipc_reply(
                        token,
                        if r == len as i64 && w == len as i64 {
                            sum
                        } else {
                            u64::MAX
                        },
                        0,
                    );
                }
                SVC_OVERREAD => {
                    let mut buf = [0u8; 16];
                    let r = ipc_read(token, m[1], &mut buf);
                    ipc_reply(token, r as u64, 0);
                }
                _ => {
                    ipc_reply(token, u64::MAX, 0);
                }
            }
        }
    }
}
