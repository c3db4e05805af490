//! The QEMU runner: builds the bare-metal crates, packs the boot modules, boots QEMU (TCG),
//! streams the serial console and maps the guest's exit to pass or fail.
//!
//! The kernel leaves QEMU through the `isa-debug-exit` device: status 33 means "nothing can
//! run any more, no error" ([`Exit::Clean`]), 35 means "the kernel stopped on a fatal error"
//! ([`Exit::KernelFatal`]). Anything else is a crash, and a boot that runs past its time limit
//! is killed ([`Exit::Timeout`]).
//!
//! While a boot runs, each console line is echoed to stderr after a label: the test's name
//! (`[system::a_ring3_program_runs_and_exits  0.42s] ...`, so the lines of tests that boot at
//! once can be told apart) or `guest` when booting by hand, where bytes are echoed as they come
//! (a prompt shows before its newline: [`console`]). A boot that provokes a kernel fault on
//! purpose ([`Boot::expect_kernel_fault`], or the kernel's self test on its command line)
//! shows a banner saying so before the dump. Backtraces the kernel, memd and the programs
//! print get function names and source lines ([`symbolize`]).
//!
//! What the runner needs, and sets up where it can: the Rust targets `x86_64-unknown-none`
//! (the kernel and memd) and `x86_64-unknown-linux-musl` (the ring-3 programs) (`rustup target
//! add`) and `qemu-system-x86_64` (`apt-get install qemu-system-x86` when running as root).
//! Where it cannot, it fails with a message saying what to install.

pub mod console;
pub mod symbolize;
pub mod verdict;

use console::{Console, Keys, Typist};
use std::ffi::OsString;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The Rust target of the kernel and memd (soft-float: no SSE in ring 0, nor in memd).
pub const TARGET: &str = "x86_64-unknown-none";

/// The Rust target of the ring-3 programs (`tests/qemu/programs/.cargo/config.toml`): its ABI
/// has SSE2, on stable Rust; the programs use nothing of Linux or musl (`no_std`, no C
/// library, linked at 4 MiB by their `build.rs`).
pub const PROGRAMS_TARGET: &str = "x86_64-unknown-linux-musl";

/// The ring-3 programs' cargo workspace, under the workspace root.
pub const PROGRAMS_DIR: &str = "tests/qemu/programs";

/// The name of memd's binary: as module 0 it is the pager and starts the other programs (the
/// runner adds [`PAGER_LOADS_FLAG`] to the command line).
pub const MEMD: &str = "memd";

/// The kernel command-line word that makes the pager load the programs.
pub const PAGER_LOADS_FLAG: &str = kernel_shim::abi::PAGER_LOADS_FLAG;

/// The magic that opens a boot pack (see [`pack_modules`]).
pub const BOOTPACK_MAGIC: &[u8; 8] = kernel_shim::abi::bootpack::MAGIC;

/// The most programs a boot pack holds: the kernel and memd read no more.
pub const MAX_PROGRAMS: usize = kernel_shim::abi::bootpack::MAX_PROGRAMS;

/// The kernel command-line word of the self test that faults in ring 0 on purpose.
pub const KERNEL_FAULT_SELFTEST: &str = "selftest=kernel-fault";

/// The TCP port of QEMU's gdb server (`-s`).
pub const GDB_PORT: u16 = 1234;

/// How a boot ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The kernel powered off: nothing could run any more and nothing went wrong (status 33).
    Clean,
    /// The kernel stopped on a fatal error: ring-0 exception or panic (status 35).
    KernelFatal,
    /// QEMU exited with another status (triple fault with `-no-reboot` gives 0).
    Crashed(i32),
    /// The boot ran past its time limit and was killed.
    Timeout,
    /// Whoever sat at the terminal left QEMU with Ctrl-A X (an interactive boot).
    Quit,
}

/// What QEMU prints on the console when Ctrl-A X leaves it.
pub const QUIT_NOTICE: &str = "QEMU: Terminated";

/// The result of one boot.
#[derive(Debug)]
pub struct Outcome {
    /// How it ended.
    pub exit: Exit,
    /// Everything the guest wrote to the serial port.
    pub log: String,
    /// Wall-clock time of the boot.
    pub elapsed: Duration,
}

impl Outcome {
    /// Panics with the serial log unless the kernel powered off cleanly.
    pub fn assert_clean(&self) -> &Self {
        assert!(
            self.exit == Exit::Clean,
            "expected a clean power-off, got {:?}\n{}",
            self.exit,
            self.banner()
        );
        self
    }

    /// Panics with the serial log unless the serial log contains `needle`.
    pub fn assert_log(&self, needle: &str) -> &Self {
        assert!(
            self.log.contains(needle),
            "serial log lacks {needle:?}\n{}",
            self.banner()
        );
        self
    }

    /// Panics with the serial log unless a line of it holds `first` and, after it, `then`
    /// (for lines with an address that layout randomization changes from boot to boot).
    pub fn assert_log_line(&self, first: &str, then: &str) -> &Self {
        assert!(
            self.log.lines().any(|l| l
                .find(first)
                .is_some_and(|at| l[at + first.len()..].contains(then))),
            "serial log lacks a line with {first:?} then {then:?}\n{}",
            self.banner()
        );
        self
    }

    /// Panics with the serial log if the serial log contains `needle`.
    pub fn assert_no_log(&self, needle: &str) -> &Self {
        assert!(
            !self.log.contains(needle),
            "serial log has {needle:?}\n{}",
            self.banner()
        );
        self
    }

    fn banner(&self) -> String {
        format!(
            "---- serial log ({:.2?}) ----\n{}---- end ----",
            self.elapsed, self.log
        )
    }
}

/// What to boot.
#[derive(Clone, Debug)]
pub struct Boot {
    /// Names of the programs to load, in module order (module 0 is the pager). With [`MEMD`]
    /// first, the kernel loads only memd, which starts module 1 and spawns the others by name.
    pub programs: Vec<String>,
    /// The kernel command line.
    pub cmdline: String,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Time limit.
    pub timeout: Duration,
    /// Echo the serial log to stderr while it runs.
    pub echo: bool,
    /// Connect this terminal's input to the guest's serial port (for booting by hand): the
    /// console is echoed as a stream, and QEMU's monitor shares it (`-serial mon:stdio`:
    /// Ctrl-A X leaves QEMU, Ctrl-A C is its monitor, Ctrl-C goes to the guest).
    pub interactive: bool,
    /// QEMU's CPU model (`-cpu`): `max` by default; the benchmark uses `qemu64`, as the Linux
    /// peer is measured.
    pub cpu: String,
    /// Run with `-icount shift=0`: one virtual nanosecond per guest instruction, so `rdtsc`
    /// counts guest instructions (the benchmark's unit).
    pub icount: bool,
    /// Keys typed into the guest's serial console (QEMU's stdin, a pipe kept open until QEMU
    /// exits), for an interactive program such as init's prompt, each once the guest printed
    /// their text (typing ahead could lose bytes: the UART holds a few, and they are dropped
    /// when it is reset at boot). Ignored when `interactive` is set.
    pub input: Vec<Keys>,
    /// What the echoed console lines are labelled with; `None`: the name of the thread that
    /// runs the boot as `TESTBINARY::TEST` (a test's name), or `guest` on a main thread.
    pub label: Option<String>,
    /// The boot provokes a kernel fault on purpose: its dump is announced as expected. Also
    /// assumed when the command line holds [`KERNEL_FAULT_SELFTEST`].
    pub expect_kernel_fault: bool,
    /// Start QEMU's gdb server (`-s`, port [`GDB_PORT`]) with the CPU stopped (`-S`) until gdb
    /// continues it, and print the gdb command that loads the symbols ([`gdb_command`]).
    pub gdb: bool,
    /// Processors (`-smp`): [`default_cpus`] unless a test sets it.
    pub cpus: u32,
    /// More QEMU arguments, passed as they are after the runner's own.
    pub qemu_args: Vec<String>,
}

/// The processors a boot gets unless it says: `QEMU_SMP` from the environment (1 to 8), else 1.
/// `QEMU_SMP=4 cargo test` runs every QEMU test on four processors.
pub fn default_cpus() -> u32 {
    std::env::var("QEMU_SMP")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| (1..=8).contains(n))
        .unwrap_or(1)
}

impl Boot {
    /// A boot of `programs` (module 0 is the pager) with the default settings: 128 MiB,
    /// 30 s limit, serial echoed to stderr.
    pub fn new(programs: &[&str]) -> Boot {
        Boot {
            programs: programs.iter().map(|s| s.to_string()).collect(),
            cmdline: String::new(),
            memory_mib: 128,
            timeout: Duration::from_secs(30),
            echo: true,
            interactive: false,
            cpu: "max".to_string(),
            icount: false,
            input: Vec::new(),
            label: None,
            expect_kernel_fault: false,
            gdb: false,
            cpus: default_cpus(),
            qemu_args: Vec::new(),
        }
    }

    /// Labels the echoed console lines with `label` rather than the test's name.
    pub fn label(mut self, label: &str) -> Boot {
        self.label = Some(label.to_string());
        self
    }

    /// Marks the boot as provoking a kernel fault on purpose: the dump is announced as
    /// expected.
    pub fn expect_kernel_fault(mut self) -> Boot {
        self.expect_kernel_fault = true;
        self
    }

    /// Whether the boot provokes a kernel fault on purpose: marked so, or the kernel's self
    /// test is on its command line.
    pub fn expects_kernel_fault(&self) -> bool {
        self.expect_kernel_fault
            || self
                .cmdline
                .split_ascii_whitespace()
                .any(|w| w == KERNEL_FAULT_SELFTEST)
    }

    /// Types `lines` into the guest's serial console, each with its newline once the guest
    /// printed `prompt` (again since the line before): see [`Boot::input`](Boot#structfield.input).
    pub fn input(mut self, prompt: &str, lines: &[&str]) -> Boot {
        self.input.extend(lines.iter().map(|l| Keys {
            after: prompt.to_string(),
            bytes: format!("{l}\n").into_bytes(),
        }));
        self
    }

    /// Types `bytes` (a line, or keys such as Ctrl-C, `\x03`) into the guest's serial console
    /// once it printed `after`, after the keys before.
    pub fn keys(mut self, after: &str, bytes: &[u8]) -> Boot {
        self.input.push(Keys {
            after: after.to_string(),
            bytes: bytes.to_vec(),
        });
        self
    }

    /// Sets the kernel command line.
    pub fn cmdline(mut self, cmdline: &str) -> Boot {
        self.cmdline = cmdline.to_string();
        self
    }

    /// Builds what is needed (once per process), boots QEMU and waits for the end.
    pub fn run(&self) -> Outcome {
        match self.try_run() {
            Ok(o) => o,
            Err(e) => panic!("qemu runner: {e}"),
        }
    }

    /// As [`Boot::run`], with setup errors returned.
    pub fn try_run(&self) -> Result<Outcome, String> {
        check_program_count(&self.programs)?;
        let built = build()?;
        let qemu = ensure_qemu()?;
        let mut modules = Vec::new();
        for name in &self.programs {
            let path = built.elf(name);
            let bytes = std::fs::read(&path).map_err(|e| {
                format!(
                    "program {name} ({}): {e} (the programs are the bins of \
                     tests/qemu/programs/src/bin, and memd)",
                    path.display()
                )
            })?;
            modules.push((name.clone(), bytes));
        }
        let pack = built.kernel.parent().unwrap().join(format!(
            "bootpack-{}-{}.bin",
            std::process::id(),
            PACK_COUNTER
                .lock()
                .map(|mut c| {
                    *c += 1;
                    *c
                })
                .unwrap_or(0)
        ));
        std::fs::write(&pack, pack_modules(&modules)?)
            .map_err(|e| format!("write {}: {e}", pack.display()))?;
        let mut boot = self.clone();
        boot.label = Some(self.label.clone().unwrap_or_else(default_label));
        if self.programs.first().map(String::as_str) == Some(MEMD) {
            boot.cmdline = format!("{} {PAGER_LOADS_FLAG}", boot.cmdline)
                .trim()
                .to_string();
        }
        if self.gdb {
            eprintln!(
                "[runner] QEMU waits for gdb on port {GDB_PORT}; in another terminal:\n{}",
                gdb_command(&built, &self.programs)
            );
        }
        let stdin = if self.interactive {
            Stdio::inherit()
        } else if !self.input.is_empty() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        let out = boot_qemu(&qemu, &built, Some(&pack), &boot, stdin);
        let _ = std::fs::remove_file(&pack);
        out
    }
}

static PACK_COUNTER: Mutex<u64> = Mutex::new(0);

/// The label of console lines echoed on this thread: `TESTBINARY::TEST` on a test's thread
/// (libtest names it after the test), `guest` on a main thread.
pub fn default_label() -> String {
    match std::thread::current().name() {
        Some(test) if test != "main" => {
            let exe = std::env::current_exe().unwrap_or_default();
            let stem = exe.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            format!("{}::{test}", test_binary_name(stem))
        }
        _ => "guest".to_string(),
    }
}

/// A test binary's name without the hash cargo appends (`system-0123456789abcdef`).
fn test_binary_name(stem: &str) -> &str {
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name
        }
        _ => stem,
    }
}

/// Refuses more programs than a boot pack holds: the kernel and memd would never see the
/// ones past [`MAX_PROGRAMS`].
pub fn check_program_count(programs: &[String]) -> Result<(), String> {
    if programs.len() <= MAX_PROGRAMS {
        return Ok(());
    }
    Err(format!(
        "{} programs, but a boot pack holds at most {MAX_PROGRAMS} (module 0, the pager, \
         included): {} would never be seen; boot fewer",
        programs.len(),
        programs[MAX_PROGRAMS..].join(", ")
    ))
}

/// Packs named modules into one boot pack, QEMU's single `-initrd`:
///
/// ```text
/// 0      "BOOTPACK"
/// 8      count: u64 (little endian)
/// 16     count entries of 64 bytes: offset u64, length u64, name [u8; 48] (NUL padded)
/// ...    module bytes, each at a 4096-aligned offset from the start of the pack
/// ```
///
/// More than [`MAX_PROGRAMS`] modules are refused.
pub fn pack_modules(modules: &[(String, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let names: Vec<String> = modules.iter().map(|(n, _)| n.clone()).collect();
    check_program_count(&names)?;
    let header = 16 + 64 * modules.len();
    let mut out = vec![0u8; header.next_multiple_of(4096)];
    out[..8].copy_from_slice(BOOTPACK_MAGIC);
    out[8..16].copy_from_slice(&(modules.len() as u64).to_le_bytes());
    for (i, (name, bytes)) in modules.iter().enumerate() {
        let offset = out.len();
        let e = 16 + 64 * i;
        out[e..e + 8].copy_from_slice(&(offset as u64).to_le_bytes());
        out[e + 8..e + 16].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
        let n = name.len().min(47);
        out[e + 16..e + 16 + n].copy_from_slice(&name.as_bytes()[..n]);
        out.extend_from_slice(bytes);
        out.resize(out.len().next_multiple_of(4096), 0);
    }
    Ok(out)
}

/// The gdb command line that attaches to QEMU's gdb server and loads the symbols of the
/// kernel (the file: its own addresses), of module 0 (the pager, memd) and of the first
/// program (module 1): ring-3 ELF files at their link addresses, so `add-symbol-file` needs
/// no address. memd and the programs are all linked at 4 MiB, each in its own address space:
/// gdb shows the symbols of whichever file names an address, and a breakpoint there stops in
/// whichever process runs that address.
pub fn gdb_command(built: &Built, programs: &[String]) -> String {
    let mut words = vec!["gdb".to_string(), "-q".to_string()];
    let mut ex = |command: String| {
        words.push("-ex".to_string());
        words.push(shell_quote(&command));
    };
    ex("set confirm off".to_string());
    ex(format!("file {}", built.kernel.display()));
    let mut symbol_files: Vec<&String> = programs.iter().take(2).collect();
    symbol_files.dedup();
    for name in symbol_files {
        ex(format!("add-symbol-file {}", built.elf(name).display()));
    }
    ex(format!("target remote localhost:{GDB_PORT}"));
    words.join(" ")
}

/// `s` as one word of a POSIX shell.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,+@%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Paths of the built bare-metal binaries.
#[derive(Clone, Debug)]
pub struct Built {
    /// The kernel ELF.
    pub kernel: PathBuf,
    /// memd's ELF.
    pub memd: PathBuf,
    /// The directory holding the test programs' ELF files.
    pub programs: PathBuf,
}

impl Built {
    /// The ELF file of the kernel ([`symbolize::KERNEL`]), of memd ([`MEMD`]) or of the test
    /// program `name`.
    pub fn elf(&self, name: &str) -> PathBuf {
        match name {
            symbolize::KERNEL => self.kernel.clone(),
            MEMD => self.memd.clone(),
            program => self.programs.join(program),
        }
    }
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// Builds the kernel and memd for [`TARGET`] and the test programs for [`PROGRAMS_TARGET`]
/// (release) into `target/metal`, once per process.
pub fn build() -> Result<Built, String> {
    static BUILT: OnceLock<Result<Built, String>> = OnceLock::new();
    BUILT.get_or_init(build_now).clone()
}

fn build_now() -> Result<Built, String> {
    let root = workspace_root();
    let target_dir = root.join("target/metal");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The programs from their own directory, so that their `.cargo/config.toml` (target and
    // flags) applies.
    for (dir, target) in [(&root, TARGET), (&root.join(PROGRAMS_DIR), PROGRAMS_TARGET)] {
        ensure_target(target)?;
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(dir)
            .args(["build", "--release", "--target", target])
            .arg("--target-dir")
            .arg(&target_dir);
        if target == TARGET {
            cmd.args([
                "-p",
                "kernel-shim",
                "--bin",
                "kernel-shim",
                "-p",
                "memd",
                "--bin",
                "memd",
            ]);
        }
        for var in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_BUILD_TARGET",
            "CARGO_TARGET_DIR",
        ] {
            cmd.env_remove(var);
        }
        eprintln!("[runner] building {} for {target}", dir.display());
        let status = cmd
            .status()
            .map_err(|e| format!("cannot run {cargo}: {e}"))?;
        if !status.success() {
            return Err(format!(
                "building {} for {target} failed ({status})",
                dir.display()
            ));
        }
    }
    let metal = target_dir.join(TARGET).join("release");
    Ok(Built {
        kernel: metal.join("kernel-shim"),
        memd: metal.join(MEMD),
        programs: target_dir.join(PROGRAMS_TARGET).join("release"),
    })
}

/// Installs the Rust target `target` with rustup if it is missing.
pub fn ensure_target(target: &str) -> Result<(), String> {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    if Path::new(&sysroot)
        .join("lib/rustlib")
        .join(target)
        .exists()
    {
        return Ok(());
    }
    eprintln!("[runner] installing the Rust target {target}");
    let ok = Command::new("rustup")
        .args(["target", "add", target])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return Err(format!(
            "the Rust target {target} is missing and `rustup target add {target}` failed; install it by hand"
        ));
    }
    Ok(())
}

/// Finds `qemu-system-x86_64`, installing it with apt-get when running as root.
pub fn ensure_qemu() -> Result<PathBuf, String> {
    static QEMU: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    QEMU.get_or_init(|| {
        if let Some(p) = which("qemu-system-x86_64") {
            return Ok(p);
        }
        let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        if root && which("apt-get").is_some() {
            eprintln!("[runner] installing QEMU with apt-get (qemu-system-x86)");
            let ok = Command::new("sh")
                .args(["-c", "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y qemu-system-x86"])
                .status()
                .is_ok_and(|s| s.success());
            if ok
                && let Some(p) = which("qemu-system-x86_64")
            {
                return Ok(p);
            }
        }
        Err("qemu-system-x86_64 not found and could not be installed: install QEMU \
             (Debian/Ubuntu: `sudo apt-get install qemu-system-x86`, Fedora: `sudo dnf install \
             qemu-system-x86`, macOS: `brew install qemu`) and run the tests again"
            .to_string())
    })
    .clone()
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// QEMU's accelerator: TCG; with several processors, all of them on one host thread taking
/// turns (`thread=single`, as `-icount` does anyway), unless `QEMU_MTTCG=1` asks for one host
/// thread each: the tests run several QEMUs at once on a host of few cores, where a vCPU
/// holding the kernel lock would otherwise be descheduled by the host while the others spin.
fn accel(boot: &Boot) -> String {
    let multi = std::env::var("QEMU_MTTCG").is_ok_and(|v| v == "1");
    if boot.cpus > 1 && !boot.icount && !multi {
        "tcg,thread=single".to_string()
    } else {
        "tcg".to_string()
    }
}

/// QEMU's arguments for booting `kernel` with the boot pack `initrd` as `boot` says: TCG,
/// [`Boot::cpus`] processors, the serial port on stdio (shared with QEMU's monitor for an interactive boot:
/// `mon:stdio`, so Ctrl-A X leaves QEMU and Ctrl-C reaches the guest), `isa-debug-exit` for
/// the verdict; `-s -S` for [`Boot::gdb`]; then [`Boot::qemu_args`].
pub fn qemu_args(boot: &Boot, kernel: &Path, initrd: Option<&Path>) -> Vec<OsString> {
    let memory = format!("{}M", boot.memory_mib);
    let cpus = boot.cpus.to_string();
    let mut args: Vec<OsString> = ["-accel", &accel(boot), "-machine", "q35", "-smp", &cpus]
        .map(OsString::from)
        .into();
    args.extend(["-cpu", &boot.cpu].map(OsString::from));
    if boot.icount {
        args.extend(["-icount", "shift=0"].map(OsString::from));
    }
    args.extend(["-m", &memory, "-kernel"].map(OsString::from));
    args.push(kernel.into());
    args.extend(
        [
            "-append",
            &boot.cmdline,
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            if boot.interactive {
                "mon:stdio"
            } else {
                "stdio"
            },
            "-no-reboot",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ]
        .map(OsString::from),
    );
    if boot.gdb {
        args.extend(["-s", "-S"].map(OsString::from));
    }
    if let Some(initrd) = initrd {
        args.push("-initrd".into());
        args.push(initrd.into());
    }
    args.extend(boot.qemu_args.iter().map(OsString::from));
    args
}

/// Boots the kernel of `built` with the boot pack `initrd` under QEMU (TCG), streaming the
/// serial port (backtraces symbolized with the ELF files of `built`).
pub fn boot_qemu(
    qemu: &Path,
    built: &Built,
    initrd: Option<&Path>,
    boot: &Boot,
    stdin: Stdio,
) -> Result<Outcome, String> {
    let mut cmd = Command::new(qemu);
    cmd.args(qemu_args(boot, &built.kernel, initrd));
    cmd.stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", qemu.display()))?;
    let stdout = child.stdout.take().expect("piped stdout");
    // Typed keys, each once its text has come; the pipe stays open until QEMU exits (an end
    // of input must not look like a closed console).
    let mut typer = child
        .stdin
        .take()
        .map(|pipe| (pipe, Typist::new(boot.input.clone())));
    let echo = boot.echo;
    let label = boot.label.clone().unwrap_or_else(default_label);
    let expect_fault = boot.expects_kernel_fault();
    // By hand, bytes as they come; the banner of an expected fault needs whole lines.
    let stream = boot.interactive && !expect_fault;
    let symbols = symbolize::Symbolizer::new(built, &boot.programs, &workspace_root());
    let mut console = Console::new(
        &label,
        stream,
        expect_fault,
        symbolize::Annotator::new(symbols),
    );
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut chunk = [0u8; 4096];
        let show = |bytes: &[u8]| {
            if echo && !bytes.is_empty() {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(bytes).and_then(|()| err.flush());
            }
        };
        while let Ok(n) = std::io::Read::read(&mut r, &mut chunk) {
            if n == 0 {
                break;
            }
            show(&console.feed(&chunk[..n], start.elapsed().as_secs_f64()));
            if let Some((pipe, typist)) = typer.as_mut()
                && let Some(keys) = typist.feed(&chunk[..n])
            {
                let _ = pipe.write_all(&keys).and_then(|()| pipe.flush());
            }
        }
        let (log, rest) = console.finish(start.elapsed().as_secs_f64());
        show(&rest);
        drop(typer);
        log
    });
    let mut exit = loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                break match status.code() {
                    Some(33) => Exit::Clean,
                    Some(35) => Exit::KernelFatal,
                    Some(c) => Exit::Crashed(c),
                    None => Exit::Crashed(-1),
                };
            }
            Ok(None) if start.elapsed() > boot.timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break Exit::Timeout;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for QEMU: {e}")),
        }
    };
    let mut log = reader.join().unwrap_or_default();
    // Ctrl-A X: QEMU says so on the console and exits with 0 (as after a triple fault, which
    // says nothing).
    if exit == Exit::Crashed(0) && boot.interactive && log.contains(QUIT_NOTICE) {
        exit = Exit::Quit;
    }
    if let Some(mut err) = child.stderr.take() {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        if !s.trim().is_empty() {
            if echo {
                let _ = write!(std::io::stderr(), "[{label}] QEMU's stderr: {s}");
            }
            log.push_str("[qemu stderr] ");
            log.push_str(&s);
        }
    }
    if echo {
        let expected = if expect_fault && exit == Exit::KernelFatal {
            " (expected: this test provokes a kernel fault)"
        } else {
            ""
        };
        // Straight to stderr as the echoed lines (past the test harness's capture): it closes
        // them.
        let _ = writeln!(
            std::io::stderr(),
            "[{label}] QEMU ended: {:?} after {:.2?}{expected}",
            exit,
            start.elapsed()
        );
    }
    Ok(Outcome {
        exit,
        log,
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use console::{echo_line, expected_fault_banner, opens_fatal_report};

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("p{i}")).collect()
    }

    #[test]
    fn a_pack_holds_up_to_max_programs_and_more_are_refused() {
        let modules: Vec<(String, Vec<u8>)> = names(MAX_PROGRAMS + 1)
            .into_iter()
            .map(|n| (n, b"\x7fELF".to_vec()))
            .collect();
        let full = pack_modules(&modules[..MAX_PROGRAMS]).unwrap();
        let parsed: Vec<_> = kernel_shim::abi::bootpack::parse(&full).unwrap().collect();
        assert_eq!(parsed.len(), MAX_PROGRAMS);
        assert_eq!(
            parsed[MAX_PROGRAMS - 1].name,
            format!("p{}", MAX_PROGRAMS - 1)
        );
        let e = pack_modules(&modules).unwrap_err();
        assert!(
            e.contains(&format!("at most {MAX_PROGRAMS}"))
                && e.contains(&format!("p{MAX_PROGRAMS}")),
            "{e}"
        );
        assert!(check_program_count(&names(MAX_PROGRAMS)).is_ok());
        let e = check_program_count(&names(MAX_PROGRAMS + 2)).unwrap_err();
        assert!(
            e.starts_with(&format!("{} programs", MAX_PROGRAMS + 2))
                && e.contains(&format!("p{}, p{}", MAX_PROGRAMS, MAX_PROGRAMS + 1)),
            "{e}"
        );
    }

    #[test]
    fn the_gdb_command_loads_the_kernel_the_pager_and_the_first_program() {
        let built = Built {
            kernel: PathBuf::from("/w/target/metal/x86_64-unknown-none/release/kernel-shim"),
            memd: PathBuf::from("/w/target/metal/x86_64-unknown-none/release/memd"),
            programs: PathBuf::from("/w/target/metal/x86_64-unknown-linux-musl/release"),
        };
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            gdb_command(&built, &names(&["memd", "hello", "exit7"])),
            "gdb -q -ex 'set confirm off' \
             -ex 'file /w/target/metal/x86_64-unknown-none/release/kernel-shim' \
             -ex 'add-symbol-file /w/target/metal/x86_64-unknown-none/release/memd' \
             -ex 'add-symbol-file /w/target/metal/x86_64-unknown-linux-musl/release/hello' \
             -ex 'target remote localhost:1234'"
        );
        // One module, or the same one twice: its symbols once.
        for programs in [&["fpu"][..], &["fpu", "fpu"]] {
            let c = gdb_command(&built, &names(programs));
            assert_eq!(c.matches("add-symbol-file").count(), 1, "{c}");
        }
        let c = gdb_command(&built, &[]);
        assert!(
            !c.contains("add-symbol-file") && c.contains("kernel-shim"),
            "{c}"
        );
        // A path that needs quoting in a shell.
        let odd = Built {
            kernel: PathBuf::from("/it's here/kernel-shim"),
            memd: PathBuf::from("/it's here/memd"),
            programs: PathBuf::from("/it's here"),
        };
        assert!(
            gdb_command(&odd, &[]).contains(r"-ex 'file /it'\''s here/kernel-shim'"),
            "{}",
            gdb_command(&odd, &[])
        );
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_quote("gdb"), "gdb");
        assert_eq!(shell_quote("/a/b-c_d.e"), "/a/b-c_d.e");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn qemu_gets_the_runners_arguments_then_the_extra_ones() {
        let mut boot = Boot::new(&["memd"]).cmdline("aslr=off");
        boot.qemu_args = vec!["-d".into(), "int".into()];
        let args: Vec<String> = qemu_args(&boot, Path::new("/k"), Some(Path::new("/p")))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let pair = |flag: &str| {
            let at = args.iter().position(|a| a == flag).unwrap();
            args[at + 1].clone()
        };
        assert_eq!(pair("-kernel"), "/k");
        assert_eq!(pair("-initrd"), "/p");
        assert_eq!(pair("-append"), "aslr=off");
        assert_eq!(pair("-m"), "128M");
        assert_eq!(pair("-cpu"), "max");
        assert!(
            !args
                .iter()
                .any(|a| a == "-s" || a == "-S" || a == "-icount")
        );
        assert_eq!(args[args.len() - 2..], ["-d", "int"]);
        boot.gdb = true;
        boot.icount = true;
        let args: Vec<OsString> = qemu_args(&boot, Path::new("/k"), None);
        let s = |w: &str| OsString::from(w);
        assert!(args.windows(2).any(|w| w == [s("-s"), s("-S")]));
        assert!(args.windows(2).any(|w| w == [s("-icount"), s("shift=0")]));
        assert!(!args.contains(&s("-initrd")));
    }

    #[test]
    fn an_interactive_boot_shares_the_console_with_qemus_monitor() {
        let serial = |boot: &Boot| {
            let args: Vec<String> = qemu_args(boot, Path::new("/k"), None)
                .into_iter()
                .map(|a| a.into_string().unwrap())
                .collect();
            let at = args.iter().position(|a| a == "-serial").unwrap();
            assert_eq!(args.iter().filter(|a| *a == "-serial").count(), 1);
            args[at + 1].clone()
        };
        let mut boot = Boot::new(&["memd", "init"]);
        // Tests and scripts: the plain console (a Ctrl-A typed is the guest's).
        assert_eq!(serial(&boot), "stdio");
        // By hand: Ctrl-A X leaves QEMU, Ctrl-C reaches the guest (QEMU's mon: prefix).
        boot.interactive = true;
        assert_eq!(serial(&boot), "mon:stdio");
    }

    #[test]
    fn echoed_lines_carry_the_test_name() {
        let label = default_label();
        assert!(
            label.starts_with("qemu_runner::")
                && label.ends_with("tests::echoed_lines_carry_the_test_name"),
            "{label}"
        );
        assert_eq!(
            echo_line(&label, 0.123, "PASS hello\n"),
            format!("[{label}   0.12s] PASS hello\n")
        );
        let on_main = std::thread::Builder::new()
            .name("main".into())
            .spawn(default_label)
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(on_main, "guest");
        let unnamed = std::thread::spawn(default_label).join().unwrap();
        assert_eq!(unnamed, "guest");
        assert_eq!(test_binary_name("system-0123456789abcdef"), "system");
        assert_eq!(test_binary_name("boot"), "boot");
        assert_eq!(test_binary_name("qemu-tests"), "qemu-tests");
    }

    #[test]
    fn a_kernel_fault_provoked_on_purpose_is_announced() {
        assert!(!Boot::new(&[]).expects_kernel_fault());
        assert!(Boot::new(&[]).expect_kernel_fault().expects_kernel_fault());
        assert!(
            Boot::new(&[])
                .cmdline("aslr=off selftest=kernel-fault")
                .expects_kernel_fault()
        );
        assert!(
            !Boot::new(&[])
                .cmdline("selftest=kernel-faults")
                .expects_kernel_fault()
        );
        assert!(opens_fatal_report(
            "KERNEL FAULT: vector 14 (#PF page fault)\n"
        ));
        assert!(opens_fatal_report("KERNEL PANIC: at kernel/mod.rs\n"));
        assert!(opens_fatal_report("PAGER FAULT: vector 13\n"));
        assert!(!opens_fatal_report("kernel-shim: long mode, serial up\n"));
        let banner = expected_fault_banner("system::a_kernel_fault_is_reported_and_halts");
        assert!(banner.starts_with("[system::a_kernel_fault_is_reported_and_halts] "));
        assert!(banner.contains("(expected: this test provokes a kernel fault)"));
    }
}
