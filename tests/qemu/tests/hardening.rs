//! What a process gets besides isolation: layout randomization (two processes of one boot,
//! and two boots, place their mmap area, heap and stack apart; `aslr=off` gives the fixed
//! layout every time) and W^X as its own policy.

use qemu_runner::Boot;

/// The (mmap, heap, stack) lines `aslrprobe` printed: the parent's, then the child's.
fn layouts(cmdline: &str) -> Vec<(u64, u64, u64)> {
    let o = Boot::new(&["memd", "aslrprobe"]).cmdline(cmdline).run();
    o.assert_clean()
        .assert_log("PASS aslrprobe")
        .assert_no_log("FAIL");
    let field = |line: &str, name: &str| {
        let at = line
            .find(name)
            .unwrap_or_else(|| panic!("{name} in {line}"))
            + name.len();
        let hex = line[at..].split_whitespace().next().unwrap_or("");
        u64::from_str_radix(hex.trim_start_matches("0x"), 16).unwrap()
    };
    let out: Vec<_> = o
        .log
        .lines()
        .filter(|l| l.contains("aslrprobe: "))
        .map(|l| (field(l, "mmap="), field(l, "heap="), field(l, "stack=")))
        .collect();
    assert_eq!(out.len(), 2, "{}", o.log);
    out
}

#[test]
fn processes_and_boots_get_different_layouts_unless_turned_off() {
    let a = layouts("");
    let b = layouts("");
    let all = [a[0], a[1], b[0], b[1]];
    for (i, x) in all.iter().enumerate() {
        // mmap within the randomized 1 TiB at 16 TiB, the stack below 0x7F00_0000_0000.
        assert!(
            (0x1000_0000_0000..0x1100_0000_0000).contains(&x.0),
            "{x:x?}"
        );
        assert!(
            x.2 < 0x7F00_0000_0000 && x.2 > 0x7F00_0000_0000 - (17 << 30),
            "{x:x?}"
        );
        for y in &all[i + 1..] {
            assert_ne!(x.0, y.0, "two mmap bases alike: {all:x?}");
            assert_ne!(x.2 & !0xFFF, y.2 & !0xFFF, "two stacks alike: {all:x?}");
        }
    }
    let heaps: std::collections::BTreeSet<u64> = all.iter().map(|x| x.1).collect();
    assert!(heaps.len() >= 3, "heaps {heaps:x?}");
    let off = layouts("aslr=off");
    assert_eq!(off[0].0, 0x4000_0000);
    assert_eq!(off[0].0, off[1].0);
    assert_eq!(off[0].1, off[1].1);
    assert!(off[0].2 < 0x8000_0000 && off[0].2 > 0x7F80_0000);
}

#[test]
fn deny_write_exec_holds_for_a_process_its_forks_and_spawns() {
    let o = Boot::new(&["memd", "wxtest"]).run();
    o.assert_clean()
        .assert_log("PASS wxtest child")
        .assert_log("PASS wxtest")
        .assert_no_log("FAIL");
}
