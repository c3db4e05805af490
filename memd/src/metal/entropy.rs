//! The seed of memd's layout randomization on the metal: 32 bytes from RDRAND where the CPU
//! has it (CPUID leaf 1, ECX bit 30), each word mixed with the jitter of RDTSC around it; on a
//! CPU without RDRAND, RDTSC jitter alone (weaker: said at boot). `aslr=off` on the kernel
//! command line turns randomization off (every process gets the fixed layout).

use core::arch::x86_64::{__cpuid, _rdtsc};

/// Where the seed came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `aslr=off` on the command line.
    Off,
    /// RDRAND, mixed with RDTSC jitter.
    Rdrand,
    /// RDTSC jitter alone.
    Rdtsc,
}

fn has_rdrand() -> bool {
    // CPUID leaf 1 exists on every x86_64 CPU.
    let leaf = __cpuid(1);
    leaf.ecx & (1 << 30) != 0
}

/// One RDRAND word, retried as Intel advises (10 times); `None` if the CPU gives none.
fn rdrand() -> Option<u64> {
    for _ in 0..10 {
        let value: u64;
        let ok: u8;
        // SAFETY: only called when CPUID says RDRAND exists; it writes a register and CF.
        unsafe {
            core::arch::asm!(
                "rdrand {v}",
                "setc {ok}",
                v = out(reg) value,
                ok = out(reg_byte) ok,
                options(nomem, nostack),
            )
        };
        if ok == 1 {
            return Some(value);
        }
    }
    None
}

/// The RDTSC jitter of a little work: the low bits of many short timings, folded.
fn jitter() -> u64 {
    let mut acc: u64 = 0x243F_6A88_85A3_08D3;
    for i in 0..64u64 {
        // SAFETY: RDTSC is allowed in ring 3 (CR4.TSD clear).
        let t0 = unsafe { _rdtsc() };
        core::hint::spin_loop();
        // SAFETY: as above.
        let t1 = unsafe { _rdtsc() };
        acc = (acc ^ t1.wrapping_sub(t0) ^ t1)
            .rotate_left(7)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15 | i);
    }
    acc
}

/// The seed for this boot, and where it came from (`None` when randomization is off).
pub fn seed() -> (Option<[u8; 32]>, Source) {
    if super::sys::cmdline().split(' ').any(|w| w == "aslr=off") {
        return (None, Source::Off);
    }
    let rdrand_ok = has_rdrand();
    let mut seed = [0u8; 32];
    let mut source = if rdrand_ok {
        Source::Rdrand
    } else {
        Source::Rdtsc
    };
    for chunk in seed.chunks_exact_mut(8) {
        let word = match rdrand_ok.then(rdrand).flatten() {
            Some(r) => r ^ jitter(),
            None => {
                source = Source::Rdtsc;
                jitter()
            }
        };
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    (Some(seed), source)
}
