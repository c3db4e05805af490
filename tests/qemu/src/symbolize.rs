//! Backtraces made readable: the guest prints return addresses, the runner adds the function
//! and the source line from the ELF's debug information (the `addr2line` crate).
//!
//! The kernel (on a ring-0 fault), memd and the ring-3 programs (in their panic handlers)
//! print a backtrace as
//!
//! ```text
//! backtrace (NAME):
//!   #0 0xffffffff80101234
//!   #1 0xffffffff80104321
//! ```
//!
//! where NAME is `kernel-shim`, `memd` or a program of the boot (an ELF of
//! `target/metal/x86_64-unknown-none/release/` for the first two,
//! `target/metal/x86_64-unknown-linux-musl/release/` for the programs: [`crate::Built::elf`]). The runner turns each frame line into
//! `  #0 0xffffffff80101234 function (file:line)`; where the compiler inlined calls at that
//! address, the callers they were inlined into follow (`, inlined into caller (file:line)`).
//! An address with no line information gets the nearest symbol alone, one with nothing at
//! all `??`. Frame #0 is the address itself; the others are return addresses, looked up one
//! byte back, inside the call.

use crate::Built;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The ELF name of the kernel in a backtrace header.
pub const KERNEL: &str = "kernel-shim";

/// What a console line is to a backtrace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// `backtrace (NAME):`: frames of the ELF `NAME` follow.
    Header(&'a str),
    /// `#N 0xADDRESS`: frame `N`.
    Frame(u32, u64),
    /// Anything else (it ends a backtrace).
    Other,
}

/// Parses one console line (without its newline; a `\r` is ignored).
pub fn parse(line: &str) -> Line<'_> {
    let t = line.trim();
    if let Some(name) = t
        .strip_prefix("backtrace (")
        .and_then(|r| r.strip_suffix("):"))
        .filter(|n| !n.is_empty())
    {
        return Line::Header(name);
    }
    let frame = t.strip_prefix('#').and_then(|r| {
        let (n, addr) = r.split_once(' ')?;
        let addr = addr.strip_prefix("0x")?;
        let n = n.parse().ok()?;
        let addr = u64::from_str_radix(addr, 16).ok()?;
        Some(Line::Frame(n, addr))
    });
    frame.unwrap_or(Line::Other)
}

/// The ELF files a boot's backtraces may name, loaded when first named.
pub struct Symbolizer {
    /// Where the bare-metal ELF files are.
    built: Built,
    /// The names that may be looked up: the kernel and the boot's programs (never a path
    /// the guest made up).
    known: Vec<String>,
    /// What was loaded, by name; `None`: no usable ELF.
    loaded: HashMap<String, Option<addr2line::Loader>>,
    /// Stripped from the front of source paths: the workspace root.
    root: PathBuf,
}

impl Symbolizer {
    /// A symbolizer for the ELF files of `built` of the kernel and of `programs`; source
    /// paths are shown relative to `root` when they lie under it.
    pub fn new(built: &Built, programs: &[String], root: &Path) -> Symbolizer {
        let mut known = vec![KERNEL.to_string()];
        known.extend(programs.iter().cloned());
        Symbolizer {
            built: built.clone(),
            known,
            loaded: HashMap::new(),
            root: root.to_path_buf(),
        }
    }

    /// What frame `n` at `addr` of the ELF `name` is: `function (file:line)` (and the callers
    /// it is inlined into), the symbol alone, or `??`; `None` when `name` is not an ELF of
    /// this boot.
    pub fn describe(&mut self, name: &str, n: u32, addr: u64) -> Option<String> {
        if !self.known.iter().any(|k| k == name) {
            return None;
        }
        let path = self.built.elf(name);
        let root = &self.root;
        let loader = self
            .loaded
            .entry(name.to_string())
            .or_insert_with(|| addr2line::Loader::new(&path).ok())
            .as_ref()?;
        // A return address follows its call: the call itself is one byte back.
        let probe = if n == 0 { addr } else { addr.saturating_sub(1) };
        let mut parts = Vec::new();
        if let Ok(mut frames) = loader.find_frames(probe) {
            while let Ok(Some(frame)) = frames.next() {
                let function = frame
                    .function
                    .as_ref()
                    .and_then(|f| f.raw_name().ok())
                    .map(|raw| demangle(&raw));
                let Some(function) = function else { continue };
                let location = frame.location.as_ref().and_then(|l| {
                    let file = relative(root, l.file?);
                    Some(match l.line {
                        Some(line) => format!("{file}:{line}"),
                        None => file,
                    })
                });
                parts.push(match location {
                    Some(at) => format!("{function} ({at})"),
                    None => function,
                });
            }
        }
        if parts.is_empty() {
            return Some(
                loader
                    .find_symbol(probe)
                    .map_or_else(|| "??".to_string(), demangle),
            );
        }
        Some(parts.join(", inlined into "))
    }
}

/// `file` relative to `root` when it lies under it.
fn relative(root: &Path, file: &str) -> String {
    Path::new(file)
        .strip_prefix(root)
        .map_or_else(|_| file.to_string(), |p| p.display().to_string())
}

/// A Rust symbol demangled, without its hash (`panics::main`); other names as they are.
fn demangle(raw: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(raw))
}

/// The backtraces of a console, line by line: what to add to each line.
pub struct Annotator {
    symbols: Symbolizer,
    /// The ELF named by the backtrace being read, if a backtrace is being read.
    current: Option<String>,
}

impl Annotator {
    /// An annotator looking addresses up with `symbols`.
    pub fn new(symbols: Symbolizer) -> Annotator {
        Annotator {
            symbols,
            current: None,
        }
    }

    /// The text to add at the end of `line` (before its newline): ` function (file:line)`
    /// for a frame of a backtrace, else nothing.
    pub fn annotate(&mut self, line: &str) -> String {
        match parse(line) {
            Line::Header(name) => {
                self.current = Some(name.to_string());
                String::new()
            }
            Line::Frame(n, addr) => match &self.current {
                Some(name) => self
                    .symbols
                    .describe(name, n, addr)
                    .map_or_else(String::new, |d| format!(" {d}")),
                None => String::new(),
            },
            Line::Other => {
                self.current = None;
                String::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::{Object, ObjectSymbol};

    #[test]
    fn backtrace_lines_are_recognised_and_nothing_else() {
        assert_eq!(
            parse("backtrace (kernel-shim):"),
            Line::Header("kernel-shim")
        );
        assert_eq!(parse("backtrace (memd):\r"), Line::Header("memd"));
        assert_eq!(
            parse("  #0 0xffffffff80101234"),
            Line::Frame(0, 0xffff_ffff_8010_1234)
        );
        assert_eq!(parse("  #12 0x401000"), Line::Frame(12, 0x40_1000));
        for other in [
            "backtrace ():",
            "backtrace (memd)",
            "  #x 0x10",
            "  #1 401000",
            "  #1 0xzz",
            "#1",
            "memd: ready",
            "",
        ] {
            assert_eq!(parse(other), Line::Other, "{other:?}");
        }
    }

    /// The release ELF of the program `hello`, built as a boot builds it.
    fn hello() -> (crate::Built, Vec<u8>) {
        let built = crate::build().expect("build the bare-metal binaries");
        let bytes = std::fs::read(built.programs.join("hello")).expect("hello's ELF");
        (built, bytes)
    }

    #[test]
    fn an_address_of_hello_becomes_its_function_and_source_line() {
        let (built, bytes) = hello();
        let elf = object::File::parse(&*bytes).expect("an ELF");
        let main = elf
            .symbols()
            .find(|s| {
                s.name()
                    .is_ok_and(|n| format!("{:#}", rustc_demangle::demangle(n)) == "hello::main")
            })
            .expect("hello::main in hello's symbol table");
        let root = crate::workspace_root();
        let mut symbols = Symbolizer::new(&built, &["hello".to_string()], &root);
        // Frame #0 is the address itself; a return address (frame 1 on) is looked up one
        // byte back, so one past the entry names the function too.
        for (n, addr) in [(0, main.address()), (1, main.address() + 1)] {
            let d = symbols.describe("hello", n, addr).expect("hello is known");
            assert!(
                d.starts_with("hello::main (tests/qemu/programs/src/bin/hello.rs:"),
                "#{n} {addr:#x}: {d}"
            );
        }
        // Outside the code: nothing to name.
        assert_eq!(
            symbols.describe("hello", 0, 0x7fff_0000_0000).as_deref(),
            Some("??")
        );
        // Names outside the boot are never looked up (no path comes from the guest).
        assert_eq!(
            symbols.describe("../../etc/passwd", 0, main.address()),
            None
        );
        assert_eq!(symbols.describe("memd", 0, main.address()), None);
    }

    #[test]
    fn only_the_frames_of_a_backtrace_are_annotated() {
        let (built, bytes) = hello();
        let elf = object::File::parse(&*bytes).expect("an ELF");
        let main = elf
            .symbols()
            .find(|s| s.name().is_ok_and(|n| n.contains("hello4main")))
            .expect("hello::main")
            .address();
        let symbols = Symbolizer::new(
            &built,
            &["memd".to_string(), "hello".to_string()],
            &crate::workspace_root(),
        );
        let mut a = Annotator::new(symbols);
        let frame = format!("  #0 {main:#x}");
        assert_eq!(a.annotate(&frame), "", "no backtrace yet");
        assert_eq!(a.annotate("backtrace (hello):"), "");
        assert!(a.annotate(&frame).starts_with(" hello::main ("));
        assert_eq!(a.annotate("hello: goodbye"), "");
        assert_eq!(a.annotate(&frame), "", "the backtrace has ended");
        assert_eq!(a.annotate("backtrace (nosuch):"), "");
        assert_eq!(a.annotate(&frame), "");
    }
}
