//! The kernel's log: the `log` facade over the serial console, its level chosen on the kernel
//! command line.
//!
//! `loglevel=error|warn|info|debug|trace` (default `info`) is the most detailed level printed;
//! an unknown value leaves `info` and says so. A line is printed as it is, without a level tag
//! (the kernel's lines already say `kernel-shim:`), so the console reads the same at every
//! level. What goes at which level:
//!
//! | level | lines |
//! |---|---|
//! | `error` | a boot program or the boot pack that cannot be loaded |
//! | `warn` | a thread killed, one that cannot return to ring 3, the pager ending, a self test about to stop the kernel, an unknown `loglevel` |
//! | `info` | the boot: serial, the kernel's protections, the command line, the memory map, the modules, the programs started; the power-off |
//! | `debug` | the kernel pool and the pager's frames; each fault sent to the pager; each exit notice |
//! | `trace` | each space created and ended, each thread started |
//!
//! Below `info` the boot runner misses what it reads (`started NAME as space`): keep `info` or
//! more for it. The fatal reports (a ring-0 fault, a panic, a fault of the pager, a boot that
//! cannot go on) do not go through the log: they are always printed, with `kprintln!`.

use log::{LevelFilter, Log, Metadata, Record};

/// The command-line word that chooses the level: `loglevel=LEVEL`.
const LOGLEVEL: &str = "loglevel=";

/// The logger: every record at or above the chosen level, one line on the serial console.
struct SerialLog;

impl Log for SerialLog {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            kprintln!("{}", record.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: SerialLog = SerialLog;

/// Installs the logger with the level `cmdline` chooses (see the module doc).
pub fn init(cmdline: &str) {
    if log::set_logger(&LOGGER).is_err() {
        kprintln!("log: a logger is installed already; this call changes only the level");
    }
    let word = cmdline.split(' ').find_map(|w| w.strip_prefix(LOGLEVEL));
    let level = word.map(parse);
    log::set_max_level(match level {
        Some(Some(level)) => level,
        _ => LevelFilter::Info,
    });
    if let (Some(word), Some(None)) = (word, level) {
        log::warn!(
            "kernel-shim: unknown loglevel \"{}\" (error, warn, info, debug, trace); info",
            word
        );
    }
}

/// The level named `word`.
fn parse(word: &str) -> Option<LevelFilter> {
    Some(match word {
        "error" => LevelFilter::Error,
        "warn" => LevelFilter::Warn,
        "info" => LevelFilter::Info,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        _ => return None,
    })
}
