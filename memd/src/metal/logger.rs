//! memd's log on the metal: the `log` facade over the debug console. The level comes from
//! `loglevel=` on the kernel command line: `error`, `warn`, `info` (the default), `debug`
//! (every request and fault memd serves) or `trace`; `off` silences it. A line is printed as
//! its message alone, so what the default level prints reads as before.
//!
//! | level | what memd logs |
//! |---|---|
//! | error | it cannot start, or cannot start a program |
//! | warn | a process killed for a fault (and why) |
//! | info | start-up, the programs it starts, how a process nobody waits for ended |
//! | debug | each request (its pid and decoded form) and each fault (address, access, outcome) |

use super::sys;
use log::{LevelFilter, Log, Metadata, Record};

struct Console;

impl Log for Console {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            sys::print_fmt(format_args!("{}\n", record.args()));
        }
    }

    fn flush(&self) {}
}

static CONSOLE: Console = Console;

/// The level `loglevel=` names in the command line `line`, or info.
pub fn level(line: &str) -> LevelFilter {
    line.split(' ')
        .find_map(|w| w.strip_prefix("loglevel="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(LevelFilter::Info)
}

/// Installs the log at the level the kernel command line names.
pub fn init() {
    // Only the first call installs it: memd calls this once, at start.
    if log::set_logger(&CONSOLE).is_ok() {
        log::set_max_level(level(&sys::cmdline()));
    }
    log::debug!("memd: log level {}", log::max_level());
}
