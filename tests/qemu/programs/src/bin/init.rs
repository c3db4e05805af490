//! init: the first program memd starts (module 1 after memd). It shows the memory system at
//! work, one line per step with the figures memd reports, then runs `memstat`; with
//! `init=interactive` on the kernel command line it then offers a prompt on the serial console.
//!
//! The demonstration, each step a process of its own or a fork of init:
//!
//! | step | what happens |
//! |---|---|
//! | mmap | map 16 pages, touch 8: RSS grows by 8, one zero-fill fault each |
//! | mprotect | 4 of them read-only: reads still work |
//! | fork | a child writes 4 private pages: 4 copy-on-write copies, the parent keeps its bytes |
//! | shared | a child writes shared pages: the parent reads the child's words, nothing copied |
//! | heap | the break grows by 64 KiB, the pages are touched, then it shrinks back |
//! | segv | a child writes read-only memory: memd kills it; `WAIT` tells the address and reason |
//! | spawn | the boot module `hello` runs as a child and exits |
//!
//! The prompt (`memd> `): `memstat [--json] [--watch N] [--ps | PID]`, `ps`, `run PROGRAM
//! [ARGS]`, `bench`, `help`, `poweroff`. Input comes from `debug_read`, which never blocks: init
//! polls it and yields. The terminal (QEMU's, in raw mode) echoes nothing: init echoes what is
//! typed and edits the line as a serial terminal's line discipline does (backspace, Ctrl-U,
//! Ctrl-C, arrow up for the last command). While a program of `run` or `bench` runs, init
//! watches the console for Ctrl-C and kills it (`KILL`; other keys are dropped); `memstat`
//! and `ps` leave the console to memstat (a key ends `memstat --watch`). `poweroff` ends init
//! (with status 1 if the demonstration failed); with nothing left to run, the kernel powers
//! the machine off.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use libvm::proto::wait_status as ws;
use libvm::{MmapFlags as F, ProtectionFlags as P};
use user_rt::*;

entry!(main);

const PAGE: usize = 4096;

/// "hello" as a word, for reading it back.
const HELLO: u64 = u64::from_le_bytes(*b"hello\0\0\0");

fn rss() -> u64 {
    vm().process_stats(0).map(|s| s.resident_pages).unwrap_or(0)
}

/// What a `WAIT` status says, in words.
fn describe(status: u64, addr: u64) -> String {
    if let Some(code) = ws::code(status) {
        return format!("exited with status {}", code);
    }
    let access = match ws::access(status) {
        ws::READ => "read",
        ws::WRITE => "write",
        ws::EXEC => "execute",
        _ => "",
    };
    match ws::reason(status) {
        ws::MAPERR => format!(
            "killed (SIGSEGV): {} at {:#x}, SEGV_MAPERR (nothing mapped)",
            access, addr
        ),
        ws::ACCERR => format!(
            "killed (SIGSEGV): {} at {:#x}, SEGV_ACCERR (protection)",
            access, addr
        ),
        ws::OOM => format!("killed: out of memory ({} at {:#x})", access, addr),
        ws::PARENT => String::from("killed (Ctrl-C)"),
        _ => match ws::vector(status) {
            Some(v) => format!(
                "killed: {} (vector {}) at rip {:#x}",
                ws::vector_name(v),
                v,
                addr
            ),
            None => format!("killed (status {:#x})", status),
        },
    }
}

/// Counts the steps that went as expected.
struct Demo {
    ok: u32,
    failed: u32,
}

impl Demo {
    fn step(&mut self, ok: bool, line: core::fmt::Arguments) {
        if ok {
            self.ok += 1;
            println!("{}", line);
        } else {
            self.failed += 1;
            println!("{}  <-- NOT AS EXPECTED", line);
        }
    }
}

fn demonstration(me: u64) -> bool {
    let mut d = Demo { ok: 0, failed: 0 };
    println!("init: the memory system at work (pid {})", me);

    // mmap and touch.
    let (rss0, g0) = (rss(), global_stats());
    let a = vm()
        .mmap(0, 16 * PAGE, P::READ_WRITE, F::anonymous_private())
        .unwrap_or(0);
    let rss1 = rss();
    for i in 0..8 {
        write(a + i * PAGE, HELLO);
    }
    let (rss2, g1) = (rss(), global_stats());
    d.step(
        a != 0 && rss1 == rss0 && rss2 == rss0 + 8,
        format_args!(
            "mmap: 16 pages at {:#x}, nothing resident until touched; touched 8: RSS {} -> {} pages, {} zero-fill faults",
            a,
            rss1,
            rss2,
            g1.faults_zero_fill - g0.faults_zero_fill
        ),
    );

    // mprotect.
    let r = vm().mprotect(a, 4 * PAGE, P::READ);
    d.step(
        r.is_ok() && read(a) == HELLO,
        format_args!(
            "mprotect: pages 0..4 now read-only ({:?}), a read still sees 'hello'",
            r.map(|_| "ok")
        ),
    );

    // fork with copy-on-write: the child counts its own copies, as the pages its writes made
    // private to it (on several processors the parent runs meanwhile, and its own copies,
    // of its stack, would show in the system's count).
    let pid = vm().fork().unwrap_or(u64::MAX);
    if pid == 0 {
        let p0 = process_stats(0).private_pages;
        for i in 4..8 {
            write(a + i * PAGE, 0xC41D);
        }
        let p1 = process_stats(0).private_pages;
        exit(p1 - p0);
    }
    let copies = vm().wait(pid).map(|w| w.0).unwrap_or(u64::MAX);
    d.step(
        copies == 4 && read(a + 4 * PAGE) == HELLO && read(a) == HELLO,
        format_args!(
            "fork: child {} wrote 4 pages, {} COW copies, parent still reads 'hello'",
            pid, copies
        ),
    );

    // Shared memory across fork: the child writes, the parent reads while it lives.
    let s = vm()
        .mmap(0, 2 * PAGE, P::READ_WRITE, F::anonymous_shared())
        .unwrap_or(0);
    write(s, 1);
    let pid = vm().fork().unwrap_or(u64::MAX);
    if pid == 0 {
        write(s + 8, 0x5EA5);
        write(s + PAGE, 0x5EA5);
        while read(s + 16) == 0 {
            yield_now();
        }
        exit(0);
    }
    while read(s + 8) != 0x5EA5 {
        yield_now();
    }
    let copies0 = vm().global_stats().map(|g| g.cow_copies).unwrap_or(0);
    let child = process_stats(pid);
    let seen = read(s + PAGE);
    write(s + 16, 1);
    let code = vm().wait(pid).map(|w| w.0).unwrap_or(u64::MAX);
    let copies1 = vm().global_stats().map(|g| g.cow_copies).unwrap_or(0);
    d.step(
        seen == 0x5EA5 && code == 0,
        format_args!(
            "shared: child {} wrote 2 MAP_SHARED pages, the parent reads its word {:#x}; child RSS {} pages, {} shared; {} copies",
            pid,
            seen,
            child.resident_pages,
            child.shared_pages,
            copies1 - copies0
        ),
    );
    check!(vm().munmap(s, 2 * PAGE).is_ok(), "munmap");

    // The heap: grow the break, touch, shrink.
    let heap0 = vm().process_stats(0).map(|s| s.heap_bytes).unwrap_or(0);
    let rss0 = rss();
    let old = vm().sbrk(64 * 1024).unwrap_or(0);
    for i in 0..16 {
        write(old + i * PAGE, 1);
    }
    let (heap1, rss1) = (
        vm().process_stats(0).map(|s| s.heap_bytes).unwrap_or(0),
        rss(),
    );
    let back = vm().sbrk(-64 * 1024).is_ok();
    let (heap2, rss2) = (
        vm().process_stats(0).map(|s| s.heap_bytes).unwrap_or(0),
        rss(),
    );
    d.step(
        old != 0 && back && heap1 == heap0 + 65536 && rss1 == rss0 + 16 && rss2 == rss0,
        format_args!(
            "heap: sbrk(+64 KiB) at {:#x}, touched: heap {} -> {} KiB, RSS +{} pages; sbrk(-64 KiB): heap {} KiB, RSS back to {}",
            old,
            heap0 / 1024,
            heap1 / 1024,
            rss1 - rss0,
            heap2 / 1024,
            rss2
        ),
    );

    // A write to read-only memory: memd kills the writer.
    let pid = vm().fork().unwrap_or(u64::MAX);
    if pid == 0 {
        write(a, 0xBAD);
        exit(0);
    }
    let (status, addr) = vm().wait(pid).unwrap_or((0, 0));
    d.step(
        ws::reason(status) == ws::ACCERR && ws::access(status) == ws::WRITE && addr == a as u64,
        format_args!(
            "segv: child {} wrote to read-only memory: {}",
            pid,
            describe(status, addr)
        ),
    );
    check!(vm().munmap(a, 16 * PAGE).is_ok(), "munmap");

    // A boot module started by name.
    let r = vm()
        .spawn("hello")
        .and_then(|pid| vm().wait(pid).map(|w| (pid, w)));
    d.step(
        matches!(r, Ok((_, (0, _)))),
        format_args!(
            "spawn: the boot module hello (pid {}) {}",
            r.map(|r| r.0).unwrap_or(0),
            r.map(|(_, w)| describe(w.0, w.1))
                .unwrap_or_else(|e| format!("could not start: {:?}", e))
        ),
    );

    println!("init: memstat");
    run("memstat", "");
    println!("init: memstat -p {} (init's own address space)", me);
    run("memstat", &format!("-p {}", me));
    println!(
        "init: demonstration done: {} steps as expected, {} not",
        d.ok, d.failed
    );
    d.failed == 0
}

/// Spawns the boot module `name` with `args`, waits, and says how it ended; `false` if it
/// could not start or did not exit with status 0.
fn run(name: &str, args: &str) -> bool {
    match vm().spawn_with_args(name, args) {
        Ok(pid) => match vm().wait(pid) {
            Ok((status, addr)) => {
                if status != 0 {
                    println!("{} (pid {}) {}", name, pid, describe(status, addr));
                }
                status == 0
            }
            Err(e) => {
                println!("{}: wait failed: {:?}", name, e);
                false
            }
        },
        Err(libvm::VmError::NoSuchProcess) => {
            println!("{}: no such program in the boot image", name);
            false
        }
        Err(e) => {
            println!("{}: cannot start: {:?}", name, e);
            false
        }
    }
}

const HELP: &str = "commands:
  memstat [--json] [--ps | PID]   memory statistics: system and processes, or one process's map
  memstat --watch N               a line of figures every N seconds, until a key is pressed
  ps                              the process table (memstat --ps)
  run PROGRAM [ARGS]              start a boot module, wait, print how it ended (Ctrl-C kills it)
  bench                           run the benchmark (the boot module vmbench; Ctrl-C kills it)
  help                            this list
  poweroff                        end init; with nothing left to run the machine powers off
keys: backspace, Ctrl-U (erase the line), Ctrl-C (drop the line, or kill what `run` started),
arrow up (the last command); Ctrl-A X leaves QEMU";

/// Ctrl-C.
const CTRL_C: u8 = 0x03;
/// Ctrl-U: erase the line.
const CTRL_U: u8 = 0x15;
/// Escape: the start of a terminal's key sequence (arrow up is `ESC [ A`).
const ESC: u8 = 0x1b;
/// The longest command line init keeps; a longer one is refused whole.
const MAX_LINE: usize = 160;

/// What [`Editor::read_line`] read.
enum Input {
    /// A line (without its end).
    Line(String),
    /// A line longer than [`MAX_LINE`]: this many characters, none kept.
    TooLong(usize),
    /// Ctrl-C: the line was dropped.
    Interrupted,
}

/// Where an escape sequence has got to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Escape {
    /// None under way.
    None,
    /// `ESC` came.
    Esc,
    /// `ESC [` or `ESC O` came: the final byte names the key.
    Csi,
}

/// init's line discipline: it reads the console a byte at a time (nothing typed ahead is
/// lost), echoes, and edits the line.
struct Editor {
    line: String,
    /// Characters typed past [`MAX_LINE`] (echoed, not kept).
    over: usize,
    /// The last command run, for arrow up.
    last: String,
    escape: Escape,
    /// The last byte was a CR: the LF of a CR LF pair is skipped.
    last_cr: bool,
}

impl Editor {
    fn new() -> Editor {
        Editor {
            line: String::new(),
            over: 0,
            last: String::new(),
            escape: Escape::None,
            last_cr: false,
        }
    }

    /// Characters shown of the line being typed.
    fn shown(&self) -> usize {
        self.line.len() + self.over
    }

    /// Erases the shown line from the terminal (back to just after the prompt), and forgets it.
    fn erase(&mut self) {
        let mut out = String::new();
        for _ in 0..self.shown() {
            out.push_str("\x08 \x08");
        }
        debug_write(out.as_bytes());
        self.line.clear();
        self.over = 0;
    }

    /// Reads one line, echoing it (a terminal's Enter is CR; LF ends a line too).
    fn read_line(&mut self) -> Input {
        self.line.clear();
        self.over = 0;
        self.escape = Escape::None;
        let mut buf = [0u8; 1];
        loop {
            if debug_read(&mut buf) <= 0 {
                yield_now();
                continue;
            }
            let c = buf[0];
            let after_cr = core::mem::replace(&mut self.last_cr, c == b'\r');
            match (self.escape, c) {
                (Escape::Esc, b'[' | b'O') => {
                    self.escape = Escape::Csi;
                    continue;
                }
                (Escape::Csi, b'A') => {
                    // Arrow up: the last command replaces the line.
                    self.escape = Escape::None;
                    self.erase();
                    self.line = self.last.clone();
                    debug_write(self.line.as_bytes());
                    continue;
                }
                // Parameters of a longer sequence: wait for its final byte.
                (Escape::Csi, b'0'..=b'9' | b';') => continue,
                // Any other key sequence (arrows down, left, right, ...) does nothing.
                (Escape::Csi, _) => {
                    self.escape = Escape::None;
                    continue;
                }
                (Escape::Esc, _) => self.escape = Escape::None,
                (Escape::None, _) => {}
            }
            match c {
                b'\n' if after_cr => {}
                b'\r' | b'\n' => {
                    debug_write(b"\n");
                    if self.over > 0 {
                        return Input::TooLong(self.shown());
                    }
                    return Input::Line(core::mem::take(&mut self.line));
                }
                ESC => self.escape = Escape::Esc,
                CTRL_C => {
                    debug_write(b"^C\n");
                    self.line.clear();
                    self.over = 0;
                    return Input::Interrupted;
                }
                CTRL_U => self.erase(),
                0x08 | 0x7f if self.shown() > 0 => {
                    if self.over > 0 {
                        self.over -= 1;
                    } else {
                        self.line.pop();
                    }
                    debug_write(b"\x08 \x08");
                }
                c if c.is_ascii_graphic() || c == b' ' => {
                    if self.line.len() < MAX_LINE {
                        self.line.push(c as char);
                    } else {
                        self.over += 1;
                    }
                    debug_write(&[c]);
                }
                _ => {}
            }
        }
    }
}

/// Waits for child `pid` while watching the console: Ctrl-C kills the child (other keys are
/// dropped: the console is init's meanwhile). Its [`ws`] status word and fault address.
fn wait_interruptible(pid: u64) -> Result<(u64, u64), libvm::VmError> {
    let mut buf = [0u8; 16];
    loop {
        if let Some(w) = vm().try_wait(pid)? {
            return Ok(w);
        }
        let n = debug_read(&mut buf);
        if n > 0 && buf[..n as usize].contains(&CTRL_C) {
            println!("^C");
            vm().kill(pid)?;
            return vm().wait(pid);
        }
        yield_now();
    }
}

/// Waits for child `pid` running `name` (Ctrl-C kills it), then says how it ended.
fn report(name: &str, pid: u64) {
    match wait_interruptible(pid) {
        Ok((status, addr)) => println!("{} (pid {}) {}", name, pid, describe(status, addr)),
        Err(e) => println!("{}: wait failed: {:?}", name, e),
    }
}

/// Spawns `name` with `args` and waits for it (Ctrl-C kills it), then says how it ended.
fn run_interruptible(name: &str, args: &str) {
    match vm().spawn_with_args(name, args) {
        Ok(pid) => report(name, pid),
        Err(libvm::VmError::NoSuchProcess) => {
            println!("run: no program {} in the boot image", name)
        }
        Err(e) => println!("run: cannot start {}: {:?}", name, e),
    }
}

/// The prompt, until `poweroff`.
fn prompt() {
    println!("init: interactive; type `help` for the commands");
    let mut editor = Editor::new();
    loop {
        print!("memd> ");
        let line = match editor.read_line() {
            Input::Line(line) => line,
            Input::TooLong(n) => {
                println!(
                    "init: a line of {} characters is longer than the {} init keeps: refused, \
                     nothing run",
                    n, MAX_LINE
                );
                continue;
            }
            Input::Interrupted => continue,
        };
        let text = line.trim();
        if !text.is_empty() {
            editor.last = String::from(text);
        }
        let (cmd, rest) = text.split_once(' ').unwrap_or((text, ""));
        let rest = rest.trim();
        match cmd {
            "" => {}
            "help" => println!("{}", HELP),
            "memstat" => {
                run("memstat", rest);
            }
            "ps" => {
                run("memstat", "--ps");
            }
            "run" if rest.is_empty() => println!(
                "usage: run PROGRAM [ARGS]: start the boot module PROGRAM with the argument \
                 string ARGS, wait, print how it ended (Ctrl-C kills it)"
            ),
            "run" => {
                let (name, args) = rest.split_once(' ').unwrap_or((rest, ""));
                run_interruptible(name, args.trim());
            }
            "bench" => match vm().spawn("vmbench") {
                Ok(pid) => {
                    println!(
                        "bench: vmbench's figures here are wall-clock TSC cycles of this QEMU \
                         (no -icount: they vary with the host and its load), not the \
                         guest-instruction counts scripts/bench.sh measures with -icount and \
                         sets beside Linux's"
                    );
                    report("vmbench", pid);
                }
                Err(_) => println!(
                    "bench: no vmbench in this boot image (boot with scripts/demo.sh, which packs \
                     it when it exists)"
                ),
            },
            "poweroff" => {
                println!("init: powering off");
                return;
            }
            other => println!("unknown command {:?}; try `help`", other),
        }
    }
}

fn main(start: Start) -> u64 {
    let mut buf = [0u8; 256];
    let interactive = cmdline(&mut buf)
        .split(' ')
        .any(|w| w == "init=interactive");
    let ok = demonstration(start.badge);
    let code = if ok { 0 } else { 1 };
    let verdict = if ok {
        "demonstration passed"
    } else {
        "demonstration FAILED"
    };
    if interactive {
        println!("init: {}; the prompt follows", verdict);
        prompt();
        return code;
    }
    println!("init: {}; exit status {}, powering off", verdict, code);
    code
}
