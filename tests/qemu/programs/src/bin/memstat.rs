//! memstat: the administrators' view of memory, from memd's statistics.
//!
//! | arguments | prints |
//! |---|---|
//! | (none) | the system table (like `free` and `vmstat`), then the process table |
//! | `--ps` | the process table only (like `ps`): PID, PPID, NAME, VSZ, RSS, HWM, SHARED, PRIVATE, HEAP, REGIONS (HWM: the most resident at once, as Linux's `VmHWM`, not counting pages that map memd's zero frame) |
//! | `PID` or `-p PID` | the region map of one process (like `pmap`) and its address-space bar |
//! | `--watch N` | a line of system figures every N seconds (like `vmstat N`) until a key is pressed on the console |
//! | `--json` with any of these | the same figures as one JSON object, on one line (pages, bytes, counts); with `--watch`, one a line |
//!
//! The system table shows memd itself too: its own heap (in use and size) and the bookkeeping
//! budget (what the region maps and page maps of all processes may take of that heap), and the
//! processes killed, by reason.
//!
//! Arguments come from the `SPAWN` that started it (`run memstat -p 3` at init's prompt);
//! started without any (as a boot module of its own), it prints the default view. The output is
//! built first and written with one console write, so other programs' lines never cut it.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Appends to `out`: a `String` only grows, so there is no `fmt::Write` result to drop.
macro_rules! out {
    ($out:expr, $($arg:tt)*) => {
        $out.push_str(&alloc::format!($($arg)*))
    };
}

/// [`out!`], then a line break.
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {{
        out!($out, $($arg)*);
        $out.push('\n');
    }};
}
use libvm::proto::{GlobalStats, ProcessInfo, ProcessStats, RegionInfo};
use user_rt::*;

entry!(main);

const PAGE: u64 = 4096;
/// Columns of the address-space bar.
const BAR: usize = 64;

/// What to print.
enum View {
    All,
    Ps,
    Map(u64),
    /// System figures every this many seconds.
    Watch(u64),
}

fn main(_: Start) -> u64 {
    let mut json = false;
    let mut view = View::All;
    let args = args();
    let mut it = args.iter().map(String::as_str);
    while let Some(a) = it.next() {
        match a {
            "--json" | "-j" => json = true,
            "--ps" => view = View::Ps,
            "--watch" | "-w" => match it.next().and_then(|n| n.parse().ok()) {
                Some(secs) if secs > 0 => view = View::Watch(secs),
                _ => return usage(),
            },
            "-p" => match it.next().and_then(|p| p.parse().ok()) {
                Some(pid) => view = View::Map(pid),
                None => return usage(),
            },
            pid => match pid.parse() {
                Ok(pid) => view = View::Map(pid),
                Err(_) => return usage(),
            },
        }
    }
    let mut out = String::new();
    let ok = match view {
        View::All => all(&mut out, json, true),
        View::Ps => all(&mut out, json, false),
        View::Map(pid) => map(&mut out, json, pid),
        View::Watch(secs) => return watch(json, secs),
    };
    debug_write(out.as_bytes());
    if ok { 0 } else { 1 }
}

fn usage() -> u64 {
    println!("usage: memstat [--json] [--ps | PID | -p PID | --watch SECONDS]");
    2
}

/// One process: what memd lists and its figures.
struct Proc {
    info: ProcessInfo,
    stats: ProcessStats,
}

fn processes() -> Vec<Proc> {
    let list = vm().processes().unwrap_or_default();
    list.into_iter()
        .filter_map(|info| {
            // A process may die between the listing and the question: it is left out.
            let stats = vm().process_stats(info.pid).ok()?;
            Some(Proc { info, stats })
        })
        .collect()
}

fn all(out: &mut String, json: bool, system: bool) -> bool {
    // The processes first, then the system: memstat's own pages are all touched by then, so
    // `frames_used` counts what the process table shows.
    let procs = processes();
    let Ok(g) = vm().global_stats() else {
        out.push_str("memstat: memd gave no statistics\n");
        return false;
    };
    if json {
        out.push('{');
        if system {
            out.push_str("\"system\":");
            system_json(out, &g);
            out.push(',');
        }
        out.push_str("\"processes\":[");
        for (i, p) in procs.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            process_json(out, p);
        }
        out.push_str("]}\n");
        return true;
    }
    if system {
        system_table(out, &g);
    }
    ps_table(out, &procs);
    true
}

fn kib(pages: u64) -> u64 {
    pages * PAGE / 1024
}

fn system_table(out: &mut String, g: &GlobalStats) {
    outln!(
        out,
        "{:<12} {:>10} {:>10} {:>10} {:>10}\n{:<12} {:>10} {:>10} {:>10} {:>10}\n{:<12} {:>10} {:>10} {:>10} {:>10}",
        "memory",
        "total",
        "used",
        "free",
        "peak used",
        "frames",
        g.frames_total,
        g.frames_used,
        g.frames_free,
        g.frames_peak,
        "KiB",
        kib(g.frames_total),
        kib(g.frames_used),
        kib(g.frames_free),
        kib(g.frames_peak),
    );
    outln!(
        out,
        "page tables  {} frames ({} KiB), counted in \"used\": frames memd lent the kernel to \
         hold the page tables of processes (each process's own: memstat PID)",
        g.page_table_frames,
        kib(g.page_table_frames)
    );
    outln!(
        out,
        "memd itself  heap {} of {} KiB in use; bookkeeping {} of {} KiB (the part of the heap \
         the regions, pages and page tables of all processes may take)",
        g.memd_heap_used / 1024,
        g.memd_heap_total / 1024,
        g.bookkeeping_used / 1024,
        g.bookkeeping_total / 1024
    );
    outln!(
        out,
        "faults       zero-fill {}  cow {}  shared {}  huge pages {}  refused: maperr {}  \
         accerr {}  to the process's handler {}",
        g.faults_zero_fill,
        g.faults_cow,
        g.faults_shared,
        g.faults_huge,
        g.faults_maperr,
        g.faults_accerr,
        g.faults_handled
    );
    outln!(
        out,
        "kills        out of memory {}  protection {}  unmapped {}  other exceptions {}  by \
         parent {}",
        g.oom_kills,
        g.faults_accerr,
        g.faults_maperr,
        g.kills_exception,
        g.kills_parent
    );
    outln!(out, "cow copies   {}", g.cow_copies);
    outln!(
        out,
        "calls        mmap {}  munmap {}  mprotect {}  brk {}  madvise {}  fork {}  failed {}",
        g.ops_mmap,
        g.ops_munmap,
        g.ops_mprotect,
        g.ops_brk,
        g.ops_madvise,
        g.ops_fork,
        g.ops_failed
    );
    outln!(out, "processes    {}", g.processes);
    let limit = |n: u64| {
        if n == 0 {
            String::from("none")
        } else {
            format!("{}", n)
        }
    };
    outln!(
        out,
        "limits       regions a process {} (max_map_count)  children a process {}  processes \
         {} (memd's records and the kernel's slots)  bookkeeping {} KiB",
        g.limit_regions,
        limit(g.limit_children),
        limit(g.limit_processes),
        g.bookkeeping_total / 1024
    );
    if g.frames_quarantined != 0 {
        outln!(
            out,
            "quarantined  {} frames (the kernel refused to destroy a space that held them)",
            g.frames_quarantined
        );
    }
}

fn ps_table(out: &mut String, procs: &[Proc]) {
    outln!(
        out,
        "{:>5} {:>5} {:<12} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "PID",
        "PPID",
        "NAME",
        "VSZ",
        "RSS",
        "HWM",
        "SHARED",
        "PRIVATE",
        "HEAP",
        "REGIONS"
    );
    for p in procs {
        let s = &p.stats;
        let name = p.info.name();
        outln!(
            out,
            "{:>5} {:>5} {:<12} {:>8}K {:>7}K {:>7}K {:>7}K {:>7}K {:>7}K {:>7}",
            p.info.pid,
            p.info.parent,
            if name.is_empty() { "?" } else { name },
            kib(s.mapped_pages),
            kib(s.resident_pages),
            kib(s.hwm_pages),
            kib(s.shared_pages),
            kib(s.private_pages),
            s.heap_bytes / 1024,
            s.region_count
        );
    }
}

fn system_json(out: &mut String, g: &GlobalStats) {
    let fields: [(&str, u64); 33] = [
        ("frames_total", g.frames_total),
        ("frames_free", g.frames_free),
        ("frames_used", g.frames_used),
        ("page_table_frames", g.page_table_frames),
        ("faults_zero_fill", g.faults_zero_fill),
        ("faults_cow", g.faults_cow),
        ("faults_shared", g.faults_shared),
        ("faults_maperr", g.faults_maperr),
        ("faults_accerr", g.faults_accerr),
        ("cow_copies", g.cow_copies),
        ("ops_mmap", g.ops_mmap),
        ("ops_munmap", g.ops_munmap),
        ("ops_mprotect", g.ops_mprotect),
        ("ops_brk", g.ops_brk),
        ("ops_madvise", g.ops_madvise),
        ("ops_fork", g.ops_fork),
        ("ops_failed", g.ops_failed),
        ("processes", g.processes),
        ("oom_kills", g.oom_kills),
        ("frames_quarantined", g.frames_quarantined),
        ("memd_heap_used", g.memd_heap_used),
        ("memd_heap_total", g.memd_heap_total),
        ("bookkeeping_used", g.bookkeeping_used),
        ("bookkeeping_total", g.bookkeeping_total),
        ("kills_exception", g.kills_exception),
        ("kills_parent", g.kills_parent),
        ("faults_handled", g.faults_handled),
        ("faults_huge", g.faults_huge),
        ("frames_peak", g.frames_peak),
        ("limit_regions", g.limit_regions),
        ("limit_children", g.limit_children),
        ("limit_processes", g.limit_processes),
        ("page_size", PAGE),
    ];
    out.push('{');
    for (i, (k, v)) in fields.iter().enumerate() {
        out!(out, "{}\"{}\":{}", if i > 0 { "," } else { "" }, k, v);
    }
    out.push('}');
}

/// Kills of every reason.
fn kills(g: &GlobalStats) -> u64 {
    g.oom_kills + g.faults_accerr + g.faults_maperr + g.kills_exception + g.kills_parent
}

/// `--watch SECS`: a line of system figures at once and then every `secs` seconds, faults and
/// kills counted since the line before (as `vmstat`), until a key comes on the console.
fn watch(json: bool, secs: u64) -> u64 {
    if !json {
        println!(
            "memstat: every {} s until a key is pressed; faults and kills since the line before \
             (the first: since boot)",
            secs
        );
        println!(
            "{:>6} {:>8} {:>8} {:>7} {:>5} {:>9} {:>6} {:>6} {:>5} {:>9}",
            "time",
            "free",
            "used",
            "tables",
            "procs",
            "zero-fill",
            "cow",
            "shared",
            "kills",
            "memd-heap"
        );
    }
    let start = clock();
    let mut last = GlobalStats::default();
    let mut key = [0u8; 16];
    for tick in 0u64.. {
        let Ok(g) = vm().global_stats() else {
            println!("memstat: memd gave no statistics");
            return 1;
        };
        let mut out = String::new();
        if json {
            out.push_str("{\"system\":");
            system_json(&mut out, &g);
            out.push_str("}\n");
        } else {
            outln!(
                out,
                "{:>5}s {:>8} {:>8} {:>7} {:>5} {:>9} {:>6} {:>6} {:>5} {:>8}K",
                tick * secs,
                g.frames_free,
                g.frames_used,
                g.page_table_frames,
                g.processes,
                g.faults_zero_fill - last.faults_zero_fill,
                g.faults_cow - last.faults_cow,
                g.faults_shared - last.faults_shared,
                kills(&g) - kills(&last),
                g.memd_heap_used / 1024
            );
        }
        debug_write(out.as_bytes());
        last = g;
        let due = start + (tick + 1) * secs * 1_000_000_000;
        while clock() < due {
            if debug_read(&mut key) > 0 {
                println!("memstat: stopped (a key was pressed)");
                return 0;
            }
            yield_now();
        }
    }
    0
}

fn process_json(out: &mut String, p: &Proc) {
    let s = &p.stats;
    out!(
        out,
        "{{\"pid\":{},\"ppid\":{},\"name\":\"{}\",\"vsz_pages\":{},\"rss_pages\":{},\
         \"hwm_pages\":{},\"shared_pages\":{},\"private_pages\":{},\"heap_bytes\":{},\
         \"regions\":{},\"page_table_frames\":{},\"huge_pages\":{}}}",
        p.info.pid,
        p.info.parent,
        escaped(p.info.name()),
        s.mapped_pages,
        s.resident_pages,
        s.hwm_pages,
        s.shared_pages,
        s.private_pages,
        s.heap_bytes,
        s.region_count,
        s.page_table_frames,
        s.huge_pages
    );
}

/// A string made safe inside JSON quotes (names are boot-module names: plain ASCII, but a
/// quote or control character must not break the object).
fn escaped(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == '"' || c == '\\' || c.is_control() {
                '?'
            } else {
                c
            }
        })
        .collect()
}

fn kind_name(r: &RegionInfo) -> &'static str {
    match r.kind {
        0 if r.shared != 0 => "shared",
        0 => "anon",
        1 => "file",
        2 => "shared",
        3 => "stack",
        4 => "heap",
        5 => "code",
        6 => "data",
        7 => "device",
        8 => "guard",
        _ => "?",
    }
}

fn kind_letter(r: &RegionInfo) -> char {
    match kind_name(r) {
        "anon" => 'm',
        "shared" => 'S',
        "stack" => 's',
        "heap" => 'h',
        "code" => 'c',
        "data" => 'd',
        "file" => 'f',
        "device" => 'D',
        "guard" => 'g',
        _ => '?',
    }
}

fn prot(r: &RegionInfo) -> String {
    let p = libvm::ProtectionFlags::from_bits_truncate(r.prot as u8);
    let mut s = String::new();
    s.push(if p.contains(libvm::ProtectionFlags::READ) {
        'r'
    } else {
        '-'
    });
    s.push(if p.contains(libvm::ProtectionFlags::WRITE) {
        'w'
    } else {
        '-'
    });
    s.push(if p.contains(libvm::ProtectionFlags::EXECUTE) {
        'x'
    } else {
        '-'
    });
    s
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{}G", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}M", b >> 20),
        b => format!("{}K", b / 1024),
    }
}

fn map(out: &mut String, json: bool, pid: u64) -> bool {
    let (Ok(stats), Ok(regions)) = (vm().process_stats(pid), vm().regions(pid)) else {
        outln!(out, "memstat: no process {}", pid);
        return false;
    };
    let info = vm()
        .processes()
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.pid == pid)
        .unwrap_or(ProcessInfo {
            pid,
            ..ProcessInfo::default()
        });
    let p = Proc { info, stats };
    if json {
        out.push_str("{\"process\":");
        process_json(out, &p);
        out.push_str(",\"regions\":[");
        for (i, r) in regions.iter().enumerate() {
            out!(
                out,
                "{}{{\"start\":{},\"end\":{},\"size\":{},\"prot\":\"{}\",\"kind\":\"{}\",\
                 \"shared\":{},\"resident_pages\":{}}}",
                if i > 0 { "," } else { "" },
                r.start,
                r.end,
                r.end - r.start,
                prot(r),
                kind_name(r),
                r.shared != 0,
                r.resident_pages
            );
        }
        outln!(out, "],\"bar\":\"{}\"}}", bar(&regions));
        return true;
    }
    let name = p.info.name();
    outln!(
        out,
        "pid {} ({}): {} regions, {} mapped, {} resident ({} shared, {} private; peak {}; {} \
         huge pages), heap {}, page tables {}",
        pid,
        if name.is_empty() { "?" } else { name },
        stats.region_count,
        size(stats.mapped_pages * PAGE),
        size(stats.resident_pages * PAGE),
        size(stats.shared_pages * PAGE),
        size(stats.private_pages * PAGE),
        size(stats.hwm_pages * PAGE),
        stats.huge_pages,
        size(stats.heap_bytes),
        size(stats.page_table_frames * PAGE)
    );
    outln!(
        out,
        "{:<16} {:<16} {:>8} {:<4} {:<6} {:>8}",
        "START",
        "END",
        "SIZE",
        "PROT",
        "KIND",
        "RESIDENT"
    );
    for r in &regions {
        outln!(
            out,
            "{:016x} {:016x} {:>8} {:<4} {:<6} {:>7}K",
            r.start,
            r.end,
            size(r.end - r.start),
            prot(r),
            kind_name(r),
            kib(r.resident_pages)
        );
    }
    outln!(out, "[{}]", bar(&regions));
    outln!(
        out,
        "bar: low to high address; each region and each hole gets columns by log2 of its size (at \
         least one); c code, d data, h heap, m anon, S shared, s stack, g guard, . hole"
    );
    true
}

/// The address-space bar: the used span from the lowest region to the highest, as segments
/// (regions and the holes between them), each `1 + log2(pages)` wide in proportion, at least
/// one column, scaled to about [`BAR`] columns.
fn bar(regions: &[RegionInfo]) -> String {
    let mut segments: Vec<(char, u64)> = Vec::new();
    let mut last_end: Option<u64> = None;
    for r in regions {
        if let Some(end) = last_end
            && r.start > end
        {
            segments.push(('.', r.start - end));
        }
        segments.push((kind_letter(r), r.end - r.start));
        last_end = Some(r.end);
    }
    let weight = |bytes: u64| 1 + u64::from(63 - (bytes / PAGE).max(1).leading_zeros());
    let total: u64 = segments.iter().map(|&(_, b)| weight(b)).sum();
    let mut s = String::new();
    if total == 0 {
        return s;
    }
    for &(c, bytes) in &segments {
        let cols = (weight(bytes) * BAR as u64 / total).max(1);
        for _ in 0..cols {
            s.push(c);
        }
    }
    s
}
