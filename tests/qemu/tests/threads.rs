//! Threads and many processors on the metal: the `threads` program (spawn and join, thread
//! locals, a futex mutex, fault storms, the stale-TLB detector, fork, exit and a kill with
//! threads running) on four processors, on two, and on one.

use qemu_runner::Boot;

fn threads(cpus: u32) {
    let mut boot = Boot::new(&["memd", "threads"]);
    boot.cpus = cpus;
    boot.timeout = std::time::Duration::from_secs(240);
    let o = boot.run();
    o.assert_clean()
        .assert_log("threads: 8 threads joined, their Vec/Box/String sums exact")
        .assert_log("threads: thread locals through FS kept by each of 5 threads")
        .assert_log("threads: futex mutex: 6 x 2000 increments = 12000")
        .assert_log("threads: fault storm: 4 threads first-touched 256 disjoint and 256 shared")
        .assert_log("threads: fork with 3 threads running: the child has only the caller")
        .assert_log("threads: 50 forks while 3 threads allocated")
        .assert_log("each ended the whole process; frames back")
        .assert_log(&format!(
            "threads: stale-TLB detector, munmap: 1000 rounds on {cpus} processors"
        ))
        .assert_log(&format!(
            "threads: stale-TLB detector, mprotect: 1000 rounds on {cpus} processors"
        ))
        .assert_log("threads: stale-TLB detector, copy-on-write break: 250 rounds")
        .assert_log(&format!(
            "threads: fault handlers in 4 threads at once on {cpus} processors, 3 with an \
             alternate stack of its own and one on its own stack: 200 faults each"
        ))
        .assert_log("threads: 200 detached threads (half dropped running, half finished)")
        .assert_log("PASS threads")
        .assert_no_log("FAIL");
    if cpus > 1 {
        // The threads spread over the processors (over how many depends on the host's timing:
        // an idle processor takes a ready thread, and a short one may be done before the
        // last wakes up; at least two), and the detector's changes interrupted the processor
        // running the reader or writer: shootdown rounds were sent.
        let spread: u32 = o
            .log
            .split(&format!(" of {cpus} processors"))
            .next()
            .and_then(|s| s.rsplit("run on ").next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        assert!(
            spread >= 2,
            "the threads ran on {spread} processors\n{}",
            o.log
        );
        let rounds: u64 = o
            .log
            .split(" shootdown rounds")
            .next()
            .and_then(|s| s.rsplit(", ").next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        assert!(rounds >= 2000, "{rounds} shootdown rounds\n{}", o.log);
    }
}

#[test]
fn threads_on_four_processors() {
    threads(4);
}

#[test]
fn threads_on_two_processors() {
    threads(2);
}

#[test]
fn threads_on_one_processor() {
    threads(1);
}
