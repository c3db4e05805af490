//! QEMU tests of the system as its users meet it: memstat's figures checked against what a
//! program did, init's demonstration, and init's prompt driven through the serial console.

use qemu_runner::Boot;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// The programs of the demonstration's boot image (init spawns the others by name).
const DEMO: &[&str] = &["memd", "init", "memstat", "hello", "segv_ro"];

fn boot(programs: &[&str]) -> Boot {
    let mut b = Boot::new(programs);
    b.timeout = Duration::from_secs(120);
    b
}

/// The `key=value` words of the first log line starting with `prefix`.
fn figures(log: &str, prefix: &str) -> HashMap<String, u64> {
    let line = log
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?} in\n{log}"));
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

/// The first log line starting with `prefix`, parsed as JSON.
fn json(log: &str, prefix: &str) -> Value {
    let line = log
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no JSON line {prefix:?} in\n{log}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("invalid JSON ({e}): {line}"))
}

fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[test]
fn memstat_figures_match_what_a_program_did() {
    // One processor, whatever `QEMU_SMP` says: the figures are checked exactly against what
    // statprobe did, which holds only while nothing else runs as memstat takes its snapshot
    // (on several, statprobe's own stack and heap may take a copy or a page meanwhile).
    let mut b = boot(&["memd", "statprobe", "memstat"]);
    b.cpus = 1;
    let o = b.run();
    o.assert_clean()
        .assert_log("PASS statprobe")
        .assert_log("PASS statprobe hwm")
        .assert_no_log("FAIL")
        .assert_no_log("PANIC");
    let before = figures(&o.log, "statprobe: before ");
    let did = figures(&o.log, "statprobe: did ");
    let (np, m, k) = (did["N"], did["M"], did["K"]);
    let (pid, child) = (did["pid"], did["child"]);
    // The child counted its own copy-on-write copies: one per page it wrote.
    o.assert_log(&format!("statprobe child: wrote {m} pages, {m} copies"));

    let all = json(&o.log, "{\"system\"");
    let sys = &all["system"];
    let procs = all["processes"].as_array().expect("processes");
    let find = |p: u64| {
        procs
            .iter()
            .find(|e| n(e, "pid") == p)
            .unwrap_or_else(|| panic!("pid {p} missing in {all}"))
    };
    let (parent, kid) = (find(pid), find(child));
    let memstat = procs
        .iter()
        .find(|e| e["name"] == "memstat")
        .expect("memstat lists itself");
    assert_eq!(parent["name"], "statprobe");
    assert_eq!((n(kid, "ppid"), &kid["name"]), (pid, &parent["name"]));
    assert_eq!(n(memstat, "ppid"), pid);
    assert_eq!(n(sys, "processes"), 3);

    // What the probe did: N + K pages mapped in 2 regions, M + K touched, no heap.
    assert_eq!(n(parent, "rss_pages"), before["rss"] + m + k);
    assert_eq!(n(parent, "vsz_pages"), before["vsz"] + np + k);
    assert_eq!(n(parent, "regions"), before["regions"] + 2);
    assert_eq!(n(parent, "heap_bytes"), before["heap"]);
    // The high-water mark holds the pages the probe wrote at least, and the system's peak of
    // frames in use what is in use.
    assert!(n(parent, "hwm_pages") >= m + k);
    assert!(n(sys, "frames_peak") >= n(sys, "frames_used"));
    // The limits a user meets, as memstat states them: regions a process (max_map_count),
    // children a process, processes at once (memd's records and the kernel's slots, 952 in
    // the test's 128 MiB guest, less memd's own).
    assert_eq!(n(sys, "limit_regions"), 65_530);
    assert_eq!(n(sys, "limit_children"), 256);
    assert!((64..=4096).contains(&n(sys, "limit_processes")), "{sys}");
    assert_eq!(n(parent, "huge_pages"), 0);
    // A fork keeps the resident set; every resident page is shared or private.
    assert_eq!(n(kid, "rss_pages"), n(parent, "rss_pages"));
    for p in [parent, kid, memstat] {
        assert_eq!(
            n(p, "shared_pages") + n(p, "private_pages"),
            n(p, "rss_pages")
        );
    }
    // Each copy leaves one private page in each process; everything else stays shared (the K
    // shared pages among them).
    let copies = n(sys, "cow_copies") - before["cow_copies"];
    assert!(
        (m..=m + 4).contains(&copies),
        "{copies} copies for {m} pages"
    );
    assert_eq!(
        n(parent, "private_pages") + n(kid, "private_pages"),
        2 * copies
    );
    assert_eq!(n(kid, "shared_pages"), n(kid, "rss_pages") - copies);
    assert!(n(kid, "shared_pages") >= k && n(kid, "private_pages") >= m);
    // Every data frame used since the baseline (page tables aside): the pages touched, the
    // copies, memstat's own.
    assert_eq!(
        (n(sys, "frames_used") - n(sys, "page_table_frames"))
            - (before["frames_used"] - before["tables"]),
        m + k + copies + n(memstat, "rss_pages")
    );
    assert_eq!(
        n(sys, "frames_used") + n(sys, "frames_free"),
        n(sys, "frames_total")
    );

    // The region map after the child has gone: the anonymous and the shared region.
    let map = json(&o.log, "{\"process\"");
    assert_eq!(n(&map["process"], "pid"), pid);
    assert_eq!(n(&map["process"], "shared_pages"), k);
    let regions = map["regions"].as_array().expect("regions");
    assert_eq!(regions.len() as u64, n(&map["process"], "regions"));
    let anon = regions
        .iter()
        .find(|r| r["kind"] == "anon")
        .expect("anon region");
    assert_eq!(
        (n(anon, "size"), n(anon, "resident_pages"), &anon["prot"]),
        (np * 4096, m, &Value::from("rw-"))
    );
    let shared = regions
        .iter()
        .find(|r| r["kind"] == "shared")
        .expect("shared region");
    assert_eq!(
        (n(shared, "size"), n(shared, "resident_pages")),
        (k * 4096, k)
    );
    assert_eq!(shared["shared"], true);
    let bar = map["bar"].as_str().expect("bar");
    assert!(bar.contains('m') && bar.contains('S') && bar.contains('c') && bar.contains('s'));
}

#[test]
fn the_demonstration_runs_every_step_and_powers_off() {
    let o = boot(DEMO).run();
    o.assert_clean()
        .assert_log("memd: started init as pid 1")
        .assert_log("mmap: 16 pages at ")
        .assert_log("touched 8: RSS ")
        .assert_log("mprotect: pages 0..4 now read-only")
        .assert_log("fork: child 2 wrote 4 pages, 4 COW copies, parent still reads 'hello'")
        .assert_log("shared: child 3 wrote 2 MAP_SHARED pages, the parent reads its word 0x5ea5")
        .assert_log("heap: sbrk(+64 KiB)")
        .assert_log_line(
            "segv: child 4 wrote to read-only memory: killed (SIGSEGV): write at 0x",
            ", SEGV_ACCERR (protection)",
        )
        .assert_log("spawn: the boot module hello (pid 5) exited with status 0")
        .assert_log("page tables ")
        .assert_log("  PID  PPID NAME")
        .assert_log("START            END")
        .assert_log("bar: low to high address")
        .assert_log("init: demonstration done: 7 steps as expected, 0 not")
        .assert_log("init: demonstration passed; exit status 0, powering off")
        .assert_no_log("NOT AS EXPECTED")
        .assert_no_log("FAIL")
        .assert_no_log("PANIC");
}

#[test]
fn the_prompt_answers_over_the_serial_console() {
    let o = boot(DEMO)
        .cmdline("init=interactive")
        .input(
            "memd> ",
            &[
                "help",
                "ps",
                "memstat",
                "memstat --json 1",
                "run hello",
                "run segv_ro",
                "run nosuch",
                "bench",
                "frobnicate",
                "poweroff",
            ],
        )
        .run();
    o.assert_clean()
        .assert_log("init: demonstration done: 7 steps as expected, 0 not")
        .assert_log("init: interactive; type `help` for the commands")
        .assert_log("memd> help\n")
        .assert_log("  run PROGRAM [ARGS]")
        .assert_log("memd> ps\n")
        .assert_log("memd> run hello\nhello from ring 3")
        .assert_log("hello (pid ")
        .assert_log(") exited with status 0")
        .assert_log("killed (SIGSEGV): write at 0x")
        .assert_log("run: no program nosuch in the boot image")
        .assert_log("bench: no vmbench in this boot image")
        .assert_log("unknown command \"frobnicate\"")
        .assert_log("memd> poweroff\ninit: powering off")
        .assert_no_log("FAIL")
        .assert_no_log("PANIC");
    // `ps` and `memstat` after the prompt list init and memstat itself.
    let after = &o.log[o.log.find("memd> ps").expect("ps")..];
    assert!(after.contains("    1     0 init"), "{after}");
    let map = json(after, "{\"process\"");
    assert_eq!(map["process"]["name"], "init");
    assert!(
        after.contains("frames ") && after.contains("cow copies"),
        "{after}"
    );
}

#[test]
fn memstat_counts_kills_by_reason_and_shows_memd_itself() {
    let o = boot(&[
        "memd",
        "init",
        "memstat",
        "hello",
        "segv_ro",
        "segv_null",
        "jump_top",
        "spinner",
    ])
    .cmdline("init=interactive")
    .keys("memd> ", b"run segv_null\r")
    .keys("memd> ", b"run segv_ro\r")
    .keys("memd> ", b"run jump_top\r")
    .keys("memd> ", b"run spinner\r")
    .keys("spinner: spinning", b"\x03")
    .keys("memd> ", b"memstat --json\r")
    .keys("memd> ", b"memstat\r")
    .keys("memd> ", b"poweroff\r")
    .run();
    o.assert_clean()
        .assert_log("SEGV_MAPERR (nothing mapped)")
        .assert_log("jump_top (pid ")
        .assert_log(") killed: general protection (vector 13) at rip 0x")
        .assert_log(") killed (Ctrl-C)")
        .assert_no_log("FAIL")
        .assert_no_log("PANIC");
    let all = json(after_prompt(&o.log, "memstat --json"), "{\"system\"");
    let sys = &all["system"];
    // Killed: the demonstration's segv step and segv_ro for protection, segv_null for an
    // unmapped address, jump_top for #GP, spinner by its parent; none for memory.
    assert_eq!(n(sys, "faults_accerr"), 2, "{sys}");
    assert_eq!(n(sys, "faults_maperr"), 1, "{sys}");
    assert_eq!(n(sys, "kills_exception"), 1, "{sys}");
    assert_eq!(n(sys, "kills_parent"), 1, "{sys}");
    assert_eq!(n(sys, "oom_kills"), 0, "{sys}");
    // memd's own heap (12 MiB on the metal, and 8 bytes a frame for its frame allocator: 1 MiB
    // more in a 128 MiB guest, not grown yet) and the half of the 12 the bookkeeping may take.
    let (heap, heap_used) = (n(sys, "memd_heap_total"), n(sys, "memd_heap_used"));
    assert_eq!(heap, 13 << 20, "{sys}");
    assert!(heap_used > 0 && heap_used < heap, "{sys}");
    let (budget, used) = (n(sys, "bookkeeping_total"), n(sys, "bookkeeping_used"));
    assert_eq!(budget, 6 << 20, "{sys}");
    // init and memstat at least: their regions and resident pages.
    assert!(used >= 2 * 5 * 128 && used < budget, "{sys}");
    // The table says the same.
    let table = after_prompt(&o.log, "memd> memstat\n");
    assert!(
        table.contains(
            "kills        out of memory 0  protection 2  unmapped 1  other exceptions 1  by parent 1"
        ),
        "{table}"
    );
    assert!(
        table.contains("memd itself  heap ") && table.contains(" of 13312 KiB in use"),
        "{table}"
    );
    assert!(
        table.contains("of 6144 KiB (the part of the heap"),
        "{table}"
    );
}

#[test]
fn memstat_watch_prints_a_line_a_second_until_a_key_is_pressed() {
    let o = boot(DEMO)
        .cmdline("init=interactive")
        .keys("memd> ", b"memstat --watch 1\r")
        .keys("    2s ", b"q")
        .keys("memd> ", b"poweroff\r")
        .run();
    o.assert_clean()
        .assert_log("memstat: every 1 s until a key is pressed")
        .assert_log("memstat: stopped (a key was pressed)")
        .assert_log("memd> poweroff\ninit: powering off")
        .assert_no_log("FAIL");
    let watch = after_prompt(&o.log, "memstat: every 1 s");
    let lines: Vec<&str> = watch
        .lines()
        .skip(2)
        .take_while(|l| !l.starts_with("memstat: stopped"))
        .collect();
    // One line at once, then one a second; the key came after the third.
    let times: Vec<&str> = lines
        .iter()
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(times, ["0s", "1s", "2s"], "{watch}");
    for l in &lines {
        let figures: Vec<u64> = l
            .split_whitespace()
            .skip(1)
            .map(|w| w.trim_end_matches('K').parse().expect("a figure"))
            .collect();
        // free, used, tables, processes (init and memstat at least), ..., memd's heap.
        assert_eq!(figures.len(), 9, "{l}");
        assert!(figures[3] >= 2 && figures[8] > 0, "{l}");
    }
}

/// The log after the first `text`.
fn after_prompt<'a>(log: &'a str, text: &str) -> &'a str {
    let at = log
        .find(text)
        .unwrap_or_else(|| panic!("{text:?} not in\n{log}"));
    &log[at..]
}
