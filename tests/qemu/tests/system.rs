//! QEMU system tests: each boots kernel-shim (TCG) with a set of ring-3 test programs and
//! checks the serial log and the exit status. Module 0 of every boot is the pager.

use qemu_runner::{Boot, Exit};

#[test]
fn boots_to_long_mode_and_prints_the_memory_map() {
    let o = Boot::new(&[]).run();
    o.assert_clean()
        .assert_log("kernel-shim: long mode, serial up")
        .assert_log("GDT, TSS, IDT, syscall ready")
        .assert_log("memory 0x0000100000..")
        .assert_log(" ram");
}

#[test]
fn a_kernel_fault_is_reported_and_halts() {
    let o = Boot::new(&[]).cmdline("selftest=kernel-fault").run();
    assert_eq!(o.exit, Exit::KernelFatal, "{}", o.log);
    o.assert_log("KERNEL FAULT: vector 14 (#PF page fault)")
        .assert_log("cr2 0xffff900000000000")
        .assert_log("page fault: page not present, read")
        .assert_log("r15 ")
        .assert_log("kernel halted");
}

#[test]
fn the_boot_log_says_smep_smap_and_wx_are_on() {
    // The runner's default CPU model (`-cpu max`) has SMEP and SMAP.
    let o = Boot::new(&[]).run();
    o.assert_clean()
        .assert_log("kernel-shim: kernel mappings W^X with NX: text r-x, rodata r--, data rw-, window rw- (image r--); guard pages under both stacks")
        .assert_log("kernel-shim: SMEP on, SMAP on");
}

/// Boots `selftest=NAME` (with `programs`) and checks that it ends in the fatal report of a
/// ring-0 fault holding every one of `report`.
fn selftest_is_a_reported_kernel_fault(name: &str, programs: &[&str], report: &[&str]) {
    let o = Boot::new(programs)
        .cmdline(&format!("selftest={name}"))
        .run();
    assert_eq!(o.exit, Exit::KernelFatal, "selftest={name}:\n{}", o.log);
    o.assert_log(&format!("kernel-shim: self test {name}: "))
        .assert_log("kernel halted");
    for line in report {
        o.assert_log(line);
    }
}

#[test]
fn the_kernel_cannot_write_its_text_or_rodata_not_even_through_the_window() {
    for name in ["write-text", "write-rodata", "write-window-text"] {
        selftest_is_a_reported_kernel_fault(
            name,
            &[],
            &[
                "KERNEL FAULT: vector 14 (#PF page fault) error 0x3",
                "page fault: protection violation, write",
            ],
        );
    }
}

#[test]
fn the_kernel_cannot_execute_its_data_or_the_physical_window() {
    for name in ["exec-data", "exec-window"] {
        selftest_is_a_reported_kernel_fault(
            name,
            &[],
            &[
                "KERNEL FAULT: vector 14 (#PF page fault) error 0x11",
                "page fault: protection violation, instruction fetch",
            ],
        );
    }
}

#[test]
fn a_kernel_stack_overflow_hits_the_guard_page_and_is_reported_as_a_double_fault() {
    selftest_is_a_reported_kernel_fault(
        "stack-overflow",
        &[],
        &["KERNEL FAULT: vector 8 (#DF double fault)"],
    );
}

#[test]
fn smep_and_smap_keep_the_kernel_out_of_user_pages() {
    selftest_is_a_reported_kernel_fault(
        "smep",
        &["hello"],
        &[
            "KERNEL FAULT: vector 14 (#PF page fault) error 0x11",
            "rip 0x0000000000400",
            "page fault: protection violation, instruction fetch",
        ],
    );
    selftest_is_a_reported_kernel_fault(
        "smap",
        &["hello"],
        &[
            "KERNEL FAULT: vector 14 (#PF page fault) error 0x1",
            "cr2 0x000000007ffffff8",
            "page fault: protection violation, read",
        ],
    );
}

#[test]
fn a_ring3_program_runs_and_exits() {
    let o = Boot::new(&["pager", "hello"]).run();
    o.assert_clean()
        .assert_log("started pager as space 0x10000 (pager)")
        .assert_log("PASS hello")
        .assert_log("pager: space 0x10001 ended with code 0x0")
        .assert_no_log("FAIL");
}

#[test]
fn system_call_arguments_are_checked() {
    let o = Boot::new(&["pager", "syscheck"]).run();
    o.assert_clean()
        .assert_log("PASS syscheck")
        .assert_no_log("FAIL");
}

#[test]
fn ipc_round_trips_carry_the_kernel_badge_and_lent_buffers() {
    let o = Boot::new(&["pager", "ipcping"]).run();
    o.assert_clean()
        .assert_log("PASS ipcping")
        .assert_no_log("FAIL");
}

#[test]
fn a_page_fault_goes_to_the_pager_and_the_thread_resumes() {
    let o = Boot::new(&["pager", "demand"]).run();
    o.assert_clean()
        .assert_log("pager: mapped 0x10000000 for space 0x10001 (access 0)")
        .assert_log("pager: mapped 0x10001000 for space 0x10001 (access 1)")
        .assert_log("PASS demand")
        .assert_no_log("FAIL");
}

#[test]
fn a_faulting_process_is_killed_while_others_go_on() {
    let o = Boot::new(&["pager", "crasher", "hello", "demand"]).run();
    o.assert_clean()
        .assert_log_line(
            "killed thread 0x10001 of space 0x10001: page fault (vector 14) at rip 0x40",
            " (the pager refused its fault)",
        )
        .assert_log("pager: space 0x10001 ended with code 0x10000000e")
        .assert_log("PASS hello")
        .assert_log("PASS demand")
        .assert_no_log("FAIL");
}

#[test]
fn pager_capabilities_are_refused_to_other_processes() {
    let o = Boot::new(&["pager", "caps"]).run();
    o.assert_clean()
        .assert_log("PASS caps")
        .assert_no_log("FAIL");
}

#[test]
fn the_timer_preempts_a_spinning_process() {
    let o = Boot::new(&["pager", "spinner", "hello"]).run();
    o.assert_clean()
        .assert_log("spinner: done")
        .assert_log("PASS hello")
        .assert_no_log("FAIL");
    let hello = o.log.find("PASS hello").unwrap();
    let spun = o.log.find("spinner: done").unwrap();
    assert!(
        hello < spun,
        "hello finished only after the spinner:\n{}",
        o.log
    );
}

#[test]
fn the_programs_memory_functions_copy_move_fill_and_compare_as_byte_loops_do() {
    let o = Boot::new(&["pager", "memfns"]).run();
    o.assert_clean()
        .assert_log("PASS memfns")
        .assert_log("pager: space 0x10001 ended with code 0x0")
        .assert_no_log("FAIL");
}

#[test]
fn fpu_and_sse_state_is_saved_per_thread() {
    // Two processes (fpu and its fork) hold values of their own in xmm0..xmm15, MXCSR and the
    // x87 control word across preemption; the child also faults and makes system calls while
    // holding them. Each checks every window it ran, and that the other ran inside some.
    let mut boot = Boot::new(&["memd", "fpu"]);
    boot.timeout = std::time::Duration::from_secs(120);
    let o = boot.run();
    o.assert_clean()
        .assert_log_line("PASS fpu parent: ", "intact")
        .assert_log_line("PASS fpu child: ", "intact")
        .assert_log("memd: pid 1 (fpu) ended: exit status 0")
        .assert_no_log("FAIL");
}

#[test]
fn once_the_pager_has_ended_a_fault_kills_the_process() {
    // hello is module 0, so it is the pager; it ends at once, leaving the crasher without one.
    // On one processor the crasher faults once the pager has ended ("no pager"); on several
    // it may fault while hello still runs, and its fault is killed when hello's end closes the
    // pager's endpoint ("the pager is gone"): either way the process is killed, never left.
    let o = Boot::new(&["hello", "crasher"]).run();
    o.assert_clean()
        .assert_log("PASS hello")
        .assert_log("the pager (space 0x10000) ended with code 0x0");
    let line = "killed thread 0x10001 of space 0x10001: page fault (vector 14) at rip 0x40";
    assert!(
        o.log.lines().any(|l| l.contains(line)
            && (l.ends_with(" (no pager)") || l.ends_with(" (the pager is gone)"))),
        "no kill of the crasher for want of a pager:\n{}",
        o.log
    );
}

#[test]
fn rflags_set_by_ring3_never_reach_the_kernel_and_return_sanitized() {
    // ntflag sets NT (and AC, ID, DF, IOPL) and yields while the spinner is runnable: the
    // kernel switches to the spinner's interrupted frame with `iretq`, which raises #GP in
    // ring 0 if the kernel runs with the caller's NT. Every return must clear NT.
    let o = Boot::new(&["pager", "ntflag", "spinner"]).run();
    o.assert_clean()
        .assert_log("ntflag: 200 yields with NT set, NT clear after each")
        .assert_log("ntflag: AC, ID and DF kept, NT and IOPL clear")
        .assert_log("ntflag: NT cleared by an interrupt return")
        .assert_log("PASS ntflag")
        .assert_log("spinner: done")
        .assert_no_log("KERNEL FAULT")
        .assert_no_log("FAIL");
}

#[test]
fn jumping_out_of_the_user_half_or_reading_the_kernel_half_kills_only_that_process() {
    let o = Boot::new(&["pager", "jump_top", "kread", "hello"]).run();
    o.assert_clean()
        .assert_log("pager: refusing fault vector 13 at 0x800000000000 of space 0x10001")
        .assert_log("pager: refusing fault vector 14 at 0xffff800000100000 of space 0x10002")
        .assert_log("pager: space 0x10001 ended with code 0x10000000d")
        .assert_log("pager: space 0x10002 ended with code 0x10000000e")
        .assert_log("PASS hello")
        .assert_no_log("KERNEL FAULT")
        .assert_no_log("FAIL");
}

#[test]
fn a_thread_is_never_resumed_outside_the_user_half() {
    // badpager resumes every fault unchanged, here jump_top's #GP at the non-canonical
    // 0x800000000000: the kernel must kill the thread rather than return there.
    let mut boot = Boot::new(&["badpager", "jump_top", "hello"]);
    boot.timeout = std::time::Duration::from_secs(20);
    let o = boot.run();
    o.assert_clean()
        .assert_log("badpager: resuming fault vector 13 at 0x800000000000")
        .assert_log("kernel-shim: thread 0x10001 cannot return to 0x800000000000, outside the user half")
        .assert_log(
            "killed thread 0x10001 of space 0x10001: general protection (vector 13) at rip 0x800000000000 (a return outside the user half)",
        )
        .assert_log("badpager: space 0x10001 ended with code 0x10000000d")
        .assert_log("PASS hello")
        .assert_no_log("KERNEL FAULT");
}

/// The programs that each raise one exception in ring 3 (`tests/qemu/programs/src/bin`): the
/// program, the vector and its name in the kill line. Each first prints `NAME: badge B, rip
/// R`, R the RIP the CPU saves: the faulting instruction, or for a trap (the single step, the
/// breakpoint) the instruction after it. (`#XM` is left out: QEMU's TCG does not raise SIMD
/// exceptions; `#AC` and `#NM` cannot arise, CR0.AM and CR0.TS are never set.)
const EXCEPTIONS: [(&str, u64, &str); 6] = [
    ("divzero", 0, "divide error"),
    ("singlestep", 1, "debug"),
    ("breakpoint", 3, "breakpoint"),
    ("badopcode", 6, "invalid opcode"),
    ("gpfault", 13, "general protection"),
    ("x87fault", 16, "x87 floating point"),
];

/// The badge and the RIP that `program` printed (`NAME: badge B, rip R`).
fn printed_badge_and_rip(log: &str, program: &str) -> (String, String) {
    let prefix = format!("{program}: badge ");
    let line = log
        .lines()
        .find_map(|l| l.split_once(&prefix).map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("{program} never said where it faults:\n{log}"));
    let (badge, rip) = line
        .split_once(", rip ")
        .unwrap_or_else(|| panic!("{program}: {line}"));
    assert!(
        rip.starts_with("0x40"),
        "{program} at {rip}: not in its image"
    );
    (badge.to_string(), rip.trim().to_string())
}

/// The text after `marker` on the one console line holding it (panics unless exactly one).
fn the_line_after<'a>(log: &'a str, marker: &str) -> &'a str {
    let found: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once(marker).map(|(_, rest)| rest.trim_end()))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{marker:?} on {} lines:\n{log}",
        found.len()
    );
    found[0]
}

#[test]
fn a_process_killed_by_an_exception_is_reported_with_its_vector_and_rip() {
    // killpager refuses every fault with a reply word of its own (0xBAD) and prints the fault
    // messages and exit notices: the kill line names the vector and the RIP the program
    // printed; the exit notice carries `KILLED | vector` and that RIP, whatever the pager said.
    let mut programs = vec!["killpager"];
    programs.extend(EXCEPTIONS.iter().map(|e| e.0));
    programs.extend(["exit7", "fakekill"]);
    let o = Boot::new(&programs).run();
    o.assert_clean().assert_no_log("KERNEL FAULT");
    for (program, vector, name) in EXCEPTIONS {
        let (space, rip) = printed_badge_and_rip(&o.log, program);
        assert_eq!(
            the_line_after(&o.log, &format!(" of space {space}: ")),
            format!("{name} (vector {vector}) at rip {rip} (the pager refused its fault)"),
            "{program}"
        );
        assert_eq!(
            the_line_after(
                &o.log,
                &format!("killpager: space {space} ended with code ")
            ),
            format!("{:#x}, rip {rip}", (1u64 << 32) | vector),
            "{program}"
        );
        o.assert_log(&format!(
            "killpager: fault vector {vector} at {rip} (rip {rip}) of space {space}"
        ));
    }
    // An exit says code and no RIP; a process cannot pass its exit off as a kill.
    o.assert_log("killpager: space 0x10007 ended with code 0x7, rip 0x0")
        .assert_log("fakekill: exiting with 0x100000003")
        .assert_log("killpager: space 0x10008 ended with code 0x3, rip 0x0");
}

#[test]
fn memd_gets_the_vector_of_a_process_the_kernel_killed() {
    // exwait spawns each exception program under memd and prints the WAIT status.
    let mut programs = vec!["memd", "exwait"];
    programs.extend(EXCEPTIONS.iter().map(|e| e.0));
    let o = Boot::new(&programs).run();
    o.assert_clean()
        .assert_log("PASS exwait")
        .assert_no_log("FAIL");
    for (program, vector, name) in EXCEPTIONS {
        let (_, rip) = printed_badge_and_rip(&o.log, program);
        o.assert_log(&format!(
            ": {name} (vector {vector}) at rip {rip} (the pager refused its fault)\n"
        ))
        .assert_log(&format!(
            "exwait: {program} ended with status {:#x}\n",
            (1u64 << 32) | vector
        ));
    }
}

/// The function symbols of the kernel's ELF file: (start, size, mangled name).
fn kernel_functions() -> Vec<(u64, u64, String)> {
    let path = qemu_runner::build().expect("build").kernel;
    let elf = std::fs::read(&path).expect("the kernel's ELF file");
    let word =
        |at: usize, n: usize| -> u64 { (0..n).fold(0, |v, i| v | (elf[at + i] as u64) << (8 * i)) };
    let (shoff, shentsize, shnum) = (
        word(0x28, 8) as usize,
        word(0x3A, 2) as usize,
        word(0x3C, 2),
    );
    let section = |i: usize| shoff + i * shentsize;
    let symtab = (0..shnum as usize)
        .map(section)
        .find(|&s| word(s + 4, 4) == 2)
        .expect("a symbol table");
    let strtab = section(word(symtab + 40, 4) as usize);
    let (strings, symbols) = (word(strtab + 24, 8) as usize, word(symtab + 24, 8) as usize);
    let mut functions = Vec::new();
    for sym in (symbols..symbols + word(symtab + 32, 8) as usize).step_by(24) {
        if elf[sym + 4] & 0xF == 2 {
            let name = &elf[strings + word(sym, 4) as usize..];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap()];
            let name = String::from_utf8_lossy(name).into_owned();
            functions.push((word(sym + 8, 8), word(sym + 16, 8), name));
        }
    }
    functions
}

/// The addresses of the backtrace in `log`, each line checked against the documented format
/// (`backtrace (kernel-shim):`, then `  #N 0x` and 16 hex digits, N from 0 on, at most 32;
/// the runner adds what the address is after a space).
fn backtrace_of(log: &str) -> Vec<u64> {
    let mut lines = log.lines().skip_while(|l| *l != "backtrace (kernel-shim):");
    assert!(lines.next().is_some(), "no backtrace in\n{log}");
    let mut frames = Vec::new();
    for line in lines.take_while(|l| l.starts_with("  #")) {
        let expected = format!("  #{} 0x", frames.len());
        let hex = line
            .strip_prefix(&expected)
            .unwrap_or_else(|| panic!("{line:?} is not {expected:?}..."));
        let hex = hex.split(' ').next().unwrap_or("");
        assert_eq!(hex.len(), 16, "{line:?}");
        frames.push(u64::from_str_radix(hex, 16).unwrap());
    }
    assert!(!frames.is_empty() && frames.len() <= 32, "{frames:x?}");
    frames
}

/// The name of the kernel function holding `address`.
fn function_at(functions: &[(u64, u64, String)], address: u64) -> &str {
    functions
        .iter()
        .find(|(start, size, _)| (*start..start + size).contains(&address))
        .map_or("?", |f| f.2.as_str())
}

#[test]
fn a_kernel_fault_prints_a_backtrace_through_its_callers() {
    let o = Boot::new(&[]).cmdline("selftest=kernel-fault").run();
    assert_eq!(o.exit, Exit::KernelFatal, "{}", o.log);
    let frames = backtrace_of(&o.log);
    let rip = o
        .log
        .lines()
        .find_map(|l| l.strip_prefix("  rip 0x"))
        .and_then(|l| l.split_whitespace().next())
        .map(|hex| u64::from_str_radix(hex, 16).unwrap())
        .expect("the report's rip");
    assert_eq!(frames[0], rip, "#0 is the faulting instruction");
    // The self test runs in `selftest::before_programs`, called by `kmain_entry`, called by the
    // boot trampoline (whose rbp of 0 ends the chain). A return address is symbolized at the
    // byte before it, inside its call.
    let functions = kernel_functions();
    let names: Vec<&str> = std::iter::once(frames[0])
        .chain(frames[1..].iter().map(|a| a - 1))
        .map(|a| function_at(&functions, a))
        .collect();
    assert!(names[0].contains("selftest15before_programs"), "{names:?}");
    assert!(names[1].contains("11kmain_entry"), "{names:?}");
    assert!(o.log.contains("\nkernel halted"));
}

#[test]
fn a_kernel_panic_prints_a_backtrace() {
    let o = Boot::new(&[])
        .cmdline("selftest=panic")
        .expect_kernel_fault()
        .run();
    assert_eq!(o.exit, Exit::KernelFatal, "{}", o.log);
    o.assert_log("KERNEL PANIC: ")
        .assert_log("self test")
        .assert_log("kernel halted");
    let functions = kernel_functions();
    let names: Vec<&str> = backtrace_of(&o.log)
        .iter()
        .map(|&a| function_at(&functions, a - 1))
        .collect();
    assert!(
        names.iter().any(|n| n.contains("11kmain_entry")),
        "{names:?}"
    );
}

/// Boots the test pager, `crasher` (killed) and `demand` (served) with `cmdline`.
fn boot_logging(cmdline: &str) -> qemu_runner::Outcome {
    let o = Boot::new(&["pager", "crasher", "demand"])
        .cmdline(cmdline)
        .run();
    o.assert_clean()
        .assert_log("PASS demand")
        .assert_log("pager: space 0x10001 ended with code 0x10000000e");
    o
}

#[test]
fn the_log_level_is_chosen_on_the_command_line() {
    const KILL: &str = "kernel-shim: killed thread 0x10001 of space 0x10001: page fault";
    const FAULT: &str = "kernel-shim: fault vector 14 at 0x20000000 (rip 0x40";
    const NOTICE: &str =
        "kernel-shim: space 0x10001 ended with code 0x10000000e, exit notice to the pager";
    const CREATED: &str = "kernel-shim: space 0x10001 created";
    // The default, info: the boot and the kills, none of the debug or trace lines.
    let o = boot_logging("");
    o.assert_log("kernel-shim: long mode, serial up")
        .assert_log("  memory 0x0000100000..")
        .assert_log("kernel-shim: started crasher as space 0x10001")
        .assert_log(KILL)
        .assert_no_log("kernel-shim: kernel pool")
        .assert_no_log(FAULT)
        .assert_no_log(NOTICE)
        .assert_no_log(CREATED);
    // warn: no boot lines, the kill still; the programs' own lines are not the kernel's log.
    let o = boot_logging("loglevel=warn");
    o.assert_log(KILL)
        .assert_log("crasher: touching 0x20000000")
        .assert_no_log("kernel-shim: long mode")
        .assert_no_log("  memory 0x")
        .assert_no_log("kernel-shim: started");
    // error: not even the kill.
    boot_logging("loglevel=error").assert_no_log("kernel-shim:");
    // debug: the pool, each fault sent to the pager, each exit notice; not the trace lines.
    let o = boot_logging("loglevel=debug");
    o.assert_log("kernel-shim: kernel pool 0x")
        .assert_log_line(FAULT, ") of thread 0x10001 in space 0x10001, to the pager")
        .assert_log(NOTICE)
        .assert_log(KILL)
        .assert_no_log(CREATED);
    // trace (one word among others): every space and thread too.
    boot_logging("aslr=off loglevel=trace")
        .assert_log(CREATED)
        .assert_log("kernel-shim: thread 0x10001 started in space 0x10001 at rip 0x40")
        .assert_log("kernel-shim: space 0x10001 ended\n")
        .assert_log(NOTICE);
    // An unknown level is said, and info is kept.
    boot_logging("loglevel=loud")
        .assert_log(
            "kernel-shim: unknown loglevel \"loud\" (error, warn, info, debug, trace); info",
        )
        .assert_log("kernel-shim: started crasher as space 0x10001")
        .assert_no_log(FAULT);
}

#[test]
fn boot_programs_that_are_not_x86_64_executables_are_refused_and_the_rest_run() {
    // Damaged copies of `hello`, written beside the built programs for the runner to pack.
    let dir = qemu_runner::build().expect("build").programs;
    let hello = std::fs::read(dir.join("hello")).expect("hello");
    let word = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let first_load = {
        let (phoff, phnum) = (word(&hello, 32) as usize, hello[56] as usize);
        (0..phnum)
            .map(|i| phoff + 56 * i)
            .find(|&ph| hello[ph] == 1)
            .expect("a PT_LOAD header")
    };
    let patched = |at: usize, bytes: &[u8]| {
        let mut b = hello.clone();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        b
    };
    let cases: [(&str, Vec<u8>, &str); 6] = [
        (
            "refused-text",
            b"#!/bin/sh\necho not an ELF file\n".to_vec(),
            "not an ELF file",
        ),
        (
            // The 64-bit headers read as 32-bit ones.
            "refused-elf32",
            patched(4, &[1]),
            "malformed ELF headers",
        ),
        (
            "refused-bigendian",
            patched(5, &[2]),
            "not a little-endian ELF64 file",
        ),
        (
            "refused-cut",
            hello[..100].to_vec(),
            "malformed ELF headers",
        ),
        (
            "refused-i386",
            patched(18, &3u16.to_le_bytes()),
            "not an x86_64 executable",
        ),
        (
            "refused-null-segment",
            patched(first_load + 16, &0u64.to_le_bytes()),
            "segment outside the image area",
        ),
    ];
    let mut programs = vec!["pager"];
    for (name, bytes, _) in &cases {
        std::fs::write(dir.join(name), bytes).expect("write a damaged program");
        programs.push(name);
    }
    programs.push("hello");
    let o = Boot::new(&programs).run();
    for (name, _, _) in &cases {
        let _ = std::fs::remove_file(dir.join(name));
    }
    o.assert_clean()
        .assert_log("PASS hello")
        .assert_no_log("KERNEL");
    for (name, _, why) in &cases {
        o.assert_log(&format!("kernel-shim: cannot load {name}: {why}\n"));
    }
}

#[test]
fn two_hundred_and_fifty_six_processes_at_once() {
    // Pins: the kernel's tables hold 256 live children of one process (and its parent and
    // memd); memd lists them, serves calls and faults meanwhile, refuses a 257th child with
    // EAGAIN, and gets every frame back once they are ended. Then a tree of 1,028 processes
    // at once, past the 512 of the kernel's old fixed tables (now sized from RAM).
    let mut boot = Boot::new(&["memd", "manyprocs"]);
    boot.memory_mib = 512;
    let o = boot.run();
    o.assert_clean()
        .assert_log("PASS 256 processes at once")
        .assert_log("PASS every child ended, memory back")
        .assert_log("PASS a tree of 1028 processes alive at once")
        .assert_log("PASS a tree of 1028 processes ended, memory back")
        .assert_no_log("FAIL");
}

#[test]
fn a_million_regions_in_one_process() {
    // Pins: with the region limit raised (`max_map_count`), one process holds 1,000,000
    // regions; faults, mprotect, munmap and placement still work among them, memd's heap grows
    // to hold their records, and one munmap gives every frame back.
    let mut boot = Boot::new(&["memd", "manyregions"]).cmdline("max_map_count=1100000");
    boot.memory_mib = 2048;
    boot.timeout = std::time::Duration::from_secs(600);
    let o = boot.run();
    o.assert_clean()
        .assert_log("memd: heap grown to")
        .assert_log("PASS a million regions")
        .assert_log("PASS every region gone, memory back")
        .assert_no_log("FAIL");
}

#[test]
fn more_than_three_and_a_half_gib_touched_with_ram_above_four_gib() {
    // Pins: RAM above 4 GiB is used (QEMU puts 1.5 of the 4.5 GiB there): one process writes
    // and reads back every page of 3.625 GiB, and everything comes back at munmap.
    let mut boot = Boot::new(&["memd", "bigmem"]);
    boot.memory_mib = 4608;
    boot.timeout = std::time::Duration::from_secs(600);
    let o = boot.run();
    o.assert_clean()
        .assert_log("PASS 3712 MiB touched")
        .assert_log("PASS memory back")
        .assert_no_log("FAIL");
}

#[test]
fn the_kernel_finds_every_processor_and_starts_the_others() {
    // Pins: the kernel reads the ACPI tables QEMU gives (the RSDP the PVH start info names, the
    // MADT) and counts the processors, with their local APIC ids; it starts every other one
    // (INIT, SIPI, SIPI: the real-mode trampoline into long mode), which comes online on a
    // stack of its own and joins the scheduler; the system runs as with one.
    for (smp, ids) in [("1", "[0]"), ("4", "[0, 1, 2, 3]")] {
        let mut boot = Boot::new(&["memd", "hello"]);
        boot.cpus = smp.parse().unwrap();
        let o = boot.run();
        let n = if smp == "1" {
            "1 processor "
        } else {
            "4 processors "
        };
        // The tick is the local APIC's timer, measured against the PIT.
        o.assert_clean()
            .assert_log(&format!(
                "kernel-shim: {n}(ACPI MADT, local APIC ids {ids})"
            ))
            .assert_log("kernel-shim: timer: the local APIC's")
            .assert_log("PASS hello");
        if smp == "4" {
            o.assert_log("kernel-shim: 3 application processors online, scheduling");
        } else {
            o.assert_no_log("application processor");
        }
    }
}
