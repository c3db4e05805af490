//! memd driven from several threads at once: processes of their own, and one process shared by
//! all threads. Everything must come out consistent, with every frame returned.

use libvm::{MmapFlags, ProtectionFlags as P};
use std::sync::Arc;
use std::thread;
use testbed::system::{Config, System};

const PAGE: u64 = 4096;

#[test]
fn many_threads_many_processes() {
    let sys = Arc::new(System::new(Config {
        ram_bytes: 128 << 20,
        table_frames: 4096,
        ..Config::default()
    }));
    let baseline = sys.memd().global_stats();
    let workers: Vec<_> = (0..8u8)
        .map(|t| {
            let sys = Arc::clone(&sys);
            thread::spawn(move || {
                for round in 0..25u8 {
                    let p = sys.spawn().unwrap();
                    let vm = sys.client(p);
                    let a = vm
                        .mmap(0, 16 * 4096, P::READ_WRITE, MmapFlags::anonymous_private())
                        .unwrap() as u64;
                    for i in 0..16 {
                        sys.write(p, a + i * PAGE, &[t, round, i as u8]).unwrap();
                    }
                    let c = sys.fork(p).unwrap();
                    sys.write(c, a, &[0xEE]).unwrap();
                    vm.mprotect((a + 4 * PAGE) as usize, 4 * 4096, P::READ)
                        .unwrap();
                    for i in 0..16 {
                        assert_eq!(sys.read(p, a + i * PAGE, 3).unwrap(), [t, round, i as u8]);
                    }
                    assert_eq!(sys.read(c, a, 3).unwrap(), [0xEE, round, 0]);
                    vm.munmap((a + 8 * PAGE) as usize, 8 * 4096).unwrap();
                    sys.exit(c, 0).unwrap();
                    sys.exit(p, 0).unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let end = sys.memd().global_stats();
    assert_eq!(end.frames_used, baseline.frames_used);
    assert_eq!(end.page_table_frames, baseline.page_table_frames);
    assert_eq!(end.ops_fork, 8 * 25);
    assert_eq!(sys.memd().bookkeeping(), 0);
}

#[test]
fn many_threads_one_process() {
    let sys = Arc::new(System::new(Config::default()));
    let p = sys.spawn().unwrap();
    let workers: Vec<_> = (0..6u8)
        .map(|t| {
            let sys = Arc::clone(&sys);
            thread::spawn(move || {
                let vm = sys.client(p);
                let mut mine = Vec::new();
                for i in 0..100u8 {
                    let a = vm
                        .mmap(0, 2 * 4096, P::READ_WRITE, MmapFlags::anonymous_private())
                        .unwrap() as u64;
                    sys.write(p, a + PAGE, &[t, i]).unwrap();
                    mine.push((a, i));
                    if i % 3 == 0 {
                        let (old, _) = mine.remove(0);
                        vm.munmap(old as usize, 2 * 4096).unwrap();
                    }
                }
                for (a, i) in mine {
                    assert_eq!(sys.read(p, a + PAGE, 2).unwrap(), [t, i]);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let stats = sys.memd().process_stats(p).unwrap();
    // Each thread keeps 66 mappings with one touched page each.
    assert_eq!(stats.resident_pages, 6 * 66);
}

/// A process ended (by a kill from another thread) while its own threads keep calling memd:
/// a call that finds it gone gets `NoSuchProcess` and holds nothing afterwards. Nothing done
/// to a process after its end may keep a region, a frame or a page table (no such leftovers
/// in memd's figures once every caller stopped).
#[test]
fn calls_racing_the_end_of_their_process() {
    let sys = Arc::new(System::new(Config {
        ram_bytes: 128 << 20,
        table_frames: 4096,
        ..Config::default()
    }));
    let baseline = sys.memd().global_stats();
    let mut refused = 0;
    for round in 0..200u64 {
        let p = sys.spawn().unwrap();
        let callers: Vec<_> = (0..3u64)
            .map(|t| {
                let sys = Arc::clone(&sys);
                thread::spawn(move || {
                    let vm = sys.client(p);
                    let mut calls = 0u64;
                    loop {
                        let r = match (calls + t) % 4 {
                            0 => vm
                                .mmap(
                                    0,
                                    4 * 4096,
                                    P::READ_WRITE,
                                    MmapFlags::anonymous_private().populate(),
                                )
                                .map(drop),
                            1 => vm.brk(0).and_then(|b| vm.brk(b + 4096)).map(drop),
                            2 => match sys.fork(p) {
                                Ok(child) => sys.exit(child, 0),
                                Err(e) => Err(e),
                            },
                            _ => vm
                                .mmap(0, 4096, P::READ_WRITE, MmapFlags::anonymous_private())
                                .and_then(|a| vm.mlock(a, 4096)),
                        };
                        calls += 1;
                        match r {
                            Ok(()) => {}
                            Err(libvm::VmError::NoSuchProcess) => return calls,
                            Err(e) => panic!("round {round}: call {calls} of {t}: {e:?}"),
                        }
                    }
                })
            })
            .collect();
        // Let the callers get going (a different moment each round), then end the process.
        for _ in 0..round % 50 {
            thread::yield_now();
        }
        sys.exit(p, 0).unwrap();
        for c in callers {
            assert!(c.join().unwrap() >= 1);
            refused += 1;
        }
    }
    assert_eq!(refused, 600);
    let end = sys.memd().global_stats();
    assert_eq!(end.frames_used, baseline.frames_used);
    assert_eq!(end.page_table_frames, baseline.page_table_frames);
    assert_eq!(end.processes, baseline.processes);
    assert_eq!(sys.memd().bookkeeping(), 0);
}
