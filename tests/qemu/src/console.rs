//! The guest's serial console as the runner handles it: the log it keeps, the echo it writes
//! (each line after a label), backtraces symbolized, and the keys it types into the guest.
//!
//! Two ways to echo:
//!
//! * by line (the tests): a line is echoed whole once its newline came, after the label and
//!   the time (`[system::boots  0.42s] PASS hello`), so the lines of tests that boot at once
//!   stay apart;
//! * as a stream (booting by hand): bytes are echoed as they come, the label at the start of
//!   each line, so a prompt without a newline shows at once and the characters the guest
//!   echoes (init's line editor) appear as they are typed, like a serial terminal.
//!
//! The log is the same in both: the lines as the guest wrote them (without `\r`), each frame
//! of a backtrace followed by its function and source line ([`crate::symbolize`]).

use crate::symbolize::Annotator;
use std::collections::VecDeque;

/// One echoed console line: the label, the seconds since QEMU started, the text (with its
/// newline).
pub fn echo_line(label: &str, seconds: f64, text: &str) -> String {
    format!("[{label} {seconds:>6.2}s] {text}")
}

/// The label before each echoed line, as [`echo_line`] writes it.
fn label_prefix(label: &str, seconds: f64) -> String {
    echo_line(label, seconds, "")
}

/// Whether a console line opens the kernel's fatal report (ring-0 fault, panic, pager fault).
pub fn opens_fatal_report(text: &str) -> bool {
    ["KERNEL FAULT", "KERNEL PANIC", "PAGER FAULT"]
        .iter()
        .any(|m| text.contains(m))
}

/// The banner before the dump of a kernel fault a test provokes on purpose.
pub fn expected_fault_banner(label: &str) -> String {
    format!(
        "[{label}] ==== (expected: this test provokes a kernel fault) the dump below is what \
         it checks ====\n"
    )
}

/// The console output of one boot, taken in as it comes.
pub struct Console {
    label: String,
    /// Echo bytes as they come (else whole lines).
    stream: bool,
    /// The banner before a dump provoked on purpose, not yet shown.
    banner_due: bool,
    annotator: Annotator,
    /// The line being received.
    line: Vec<u8>,
    /// Bytes of `line` echoed already (stream).
    shown: usize,
    log: String,
}

impl Console {
    /// A console echoed with `label`, as a stream or by line; `banner_due`: a kernel fault is
    /// expected, announce its dump.
    pub fn new(label: &str, stream: bool, banner_due: bool, annotator: Annotator) -> Console {
        Console {
            label: label.to_string(),
            stream,
            banner_due,
            annotator,
            line: Vec::new(),
            shown: 0,
            log: String::new(),
        }
    }

    /// Takes `bytes` of the guest's output, `seconds` after QEMU started; returns what to
    /// echo now.
    pub fn feed(&mut self, bytes: &[u8], seconds: f64) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                self.end_line(seconds, &mut out);
            } else {
                self.line.push(b);
            }
        }
        // A line begun with nothing but `\r` is not shown yet: it may be no line at all.
        let blank = self.line.iter().all(|&b| b == b'\r');
        if self.stream && self.line.len() > self.shown && !(self.shown == 0 && blank) {
            if self.shown == 0 {
                out.extend_from_slice(label_prefix(&self.label, seconds).as_bytes());
            }
            out.extend_from_slice(&self.line[self.shown..]);
            self.shown = self.line.len();
        }
        out
    }

    fn end_line(&mut self, seconds: f64, out: &mut Vec<u8>) {
        let text = String::from_utf8_lossy(&self.line).replace('\r', "");
        let extra = self.annotator.annotate(&text);
        if self.stream {
            if self.shown == 0 {
                out.extend_from_slice(label_prefix(&self.label, seconds).as_bytes());
            }
            out.extend_from_slice(&self.line[self.shown..]);
            out.extend_from_slice(extra.as_bytes());
            out.push(b'\n');
        } else {
            if self.banner_due && opens_fatal_report(&text) {
                self.banner_due = false;
                out.extend_from_slice(expected_fault_banner(&self.label).as_bytes());
            }
            let echoed = echo_line(&self.label, seconds, &format!("{text}{extra}\n"));
            out.extend_from_slice(echoed.as_bytes());
        }
        self.log.push_str(&text);
        self.log.push_str(&extra);
        self.log.push('\n');
        self.line.clear();
        self.shown = 0;
    }

    /// The end of the output: a last line without its newline goes to the log as it is, and
    /// its echo is ended with one (a last line of nothing but `\r`, as QEMU's farewell ends,
    /// is no line). Returns the log and what is left to echo.
    pub fn finish(mut self, seconds: f64) -> (String, Vec<u8>) {
        let mut out = Vec::new();
        let text = String::from_utf8_lossy(&self.line).replace('\r', "");
        if !text.is_empty() || self.shown > 0 {
            if self.stream {
                if self.shown == 0 {
                    out.extend_from_slice(label_prefix(&self.label, seconds).as_bytes());
                }
                out.extend_from_slice(&self.line[self.shown..]);
                out.push(b'\n');
            } else {
                out.extend_from_slice(
                    echo_line(&self.label, seconds, &format!("{text}\n")).as_bytes(),
                );
            }
            self.log.push_str(&text);
        }
        (self.log, out)
    }
}

/// Keys to type into the guest's console once it has printed some text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    /// Typed once the guest printed this (since the keys before were typed).
    pub after: String,
    /// The bytes typed: a line with its newline, or control keys (`\x03`, Ctrl-C).
    pub bytes: Vec<u8>,
}

/// Types [`Keys`] in turn, each once its text has come.
pub struct Typist {
    steps: VecDeque<Keys>,
    /// Output since the last keys were typed.
    seen: Vec<u8>,
}

impl Typist {
    /// A typist of `steps`, in order.
    pub fn new(steps: Vec<Keys>) -> Typist {
        Typist {
            steps: steps.into(),
            seen: Vec::new(),
        }
    }

    /// Takes `bytes` of the guest's output; the keys to type now, if their text has come.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        let next = self.steps.front()?;
        self.seen.extend_from_slice(bytes);
        let after = next.after.as_bytes();
        if !self.seen.windows(after.len().max(1)).any(|w| w == after) {
            return None;
        }
        self.seen.clear();
        self.steps.pop_front().map(|k| k.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Built;
    use crate::symbolize::Symbolizer;
    use std::path::{Path, PathBuf};

    /// A symbolizer with no ELF file to read.
    fn no_symbols() -> Symbolizer {
        let nowhere = Built {
            kernel: PathBuf::from("/nonexistent/kernel-shim"),
            memd: PathBuf::from("/nonexistent/memd"),
            programs: PathBuf::from("/nonexistent"),
        };
        Symbolizer::new(&nowhere, &[], Path::new("/"))
    }

    fn console(stream: bool) -> Console {
        Console::new("guest", stream, false, Annotator::new(no_symbols()))
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_stream_shows_a_prompt_and_echoed_keys_at_once_with_a_label_per_line() {
        let mut c = console(true);
        assert_eq!(
            text(c.feed(b"init: ready\nmemd> ", 0.5)),
            "[guest   0.50s] init: ready\n[guest   0.50s] memd> "
        );
        // The characters init echoes, one at a time, and its backspace: as they come.
        assert_eq!(text(c.feed(b"h", 0.6)), "h");
        assert_eq!(text(c.feed(b"x\x08 \x08", 0.7)), "x\x08 \x08");
        assert_eq!(text(c.feed(b"elp\r\n", 0.8)), "elp\r\n");
        assert_eq!(text(c.feed(b"\n", 0.9)), "[guest   0.90s] \n");
        assert_eq!(text(c.feed(b"last", 1.0)), "[guest   1.00s] last");
        let (log, rest) = c.finish(1.1);
        assert_eq!(text(rest), "\n");
        assert_eq!(log, "init: ready\nmemd> hx\x08 \x08elp\n\nlast");
        // QEMU's farewell after Ctrl-A X ends with "\n\r": no line of its own.
        let mut c = console(true);
        c.feed(b"memd> QEMU: Terminated\n\r", 2.0);
        let (log, rest) = c.finish(2.1);
        assert_eq!((log.as_str(), rest), ("memd> QEMU: Terminated\n", vec![]));
    }

    #[test]
    fn by_line_a_line_is_echoed_once_whole() {
        let mut c = console(false);
        assert_eq!(text(c.feed(b"memd> ", 0.1)), "");
        assert_eq!(text(c.feed(b"help\n", 0.2)), "[guest   0.20s] memd> help\n");
        assert_eq!(text(c.feed(b"a\r\nb", 0.3)), "[guest   0.30s] a\n");
        let (log, rest) = c.finish(0.4);
        assert_eq!(text(rest), "[guest   0.40s] b\n");
        assert_eq!(log, "memd> help\na\nb");
    }

    #[test]
    fn by_line_a_kernel_fault_expected_is_announced_before_its_dump() {
        let symbols = no_symbols();
        let mut c = Console::new("t", false, true, Annotator::new(symbols));
        let out = text(c.feed(b"ok\nKERNEL FAULT: vector 14\nKERNEL FAULT again\n", 1.0));
        assert_eq!(
            out.matches("(expected: this test provokes").count(),
            1,
            "{out}"
        );
        assert!(out.find("ok\n").unwrap() < out.find("==== (expected").unwrap());
        assert!(out.find("==== (expected").unwrap() < out.find("vector 14").unwrap());
    }

    #[test]
    fn keys_are_typed_in_turn_each_once_its_text_came() {
        let mut t = Typist::new(vec![
            Keys {
                after: "memd> ".into(),
                bytes: b"run spinner\n".to_vec(),
            },
            Keys {
                after: "spinning".into(),
                bytes: b"\x03".to_vec(),
            },
            Keys {
                after: "memd> ".into(),
                bytes: b"poweroff\n".to_vec(),
            },
        ]);
        assert_eq!(t.feed(b"boot...\nmem"), None);
        assert_eq!(t.feed(b"d> "), Some(b"run spinner\n".to_vec()));
        // Output without the next step's text types nothing (the text may come in pieces).
        assert_eq!(t.feed(b"memd> run spinner\r\nspin"), None);
        assert_eq!(t.feed(b"ner: spinning\n"), Some(b"\x03".to_vec()));
        assert_eq!(t.feed(b"^C\nkilled\n"), None);
        assert_eq!(t.feed(b"memd> "), Some(b"poweroff\n".to_vec()));
        assert_eq!(t.feed(b"memd> "), None);
    }
}
