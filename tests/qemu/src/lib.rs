//! The QEMU runner: builds the bare-metal crates, packs the boot modules, boots QEMU (TCG),
//! streams the serial console and maps the guest's exit to pass or fail.
//!
//! The kernel leaves QEMU through the `isa-debug-exit` device: status 33 means "nothing can
//! run any more, no error" ([`Exit::Clean`]), 35 means "the kernel stopped on a fatal error"
//! ([`Exit::KernelFatal`]). Anything else is a crash, and a boot that runs past its time limit
//! is killed ([`Exit::Timeout`]).
//!
//! What the runner needs, and sets up where it can: the `x86_64-unknown-none` Rust target
//! (`rustup target add`) and `qemu-system-x86_64` (`apt-get install qemu-system-x86` when
//! running as root). Where it cannot, it fails with a message saying what to install.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The Rust target of the bare-metal crates.
pub const TARGET: &str = "x86_64-unknown-none";

/// The name of memd's binary: as module 0 it is the pager and starts the other programs (the
/// runner adds [`PAGER_LOADS_FLAG`] to the command line).
pub const MEMD: &str = "memd";

/// The kernel command-line word that makes the pager load the programs (kernel-shim's
/// `abi::PAGER_LOADS_FLAG`).
pub const PAGER_LOADS_FLAG: &str = "modules=pager";

/// The magic that opens a boot pack (see [`pack_modules`]).
pub const BOOTPACK_MAGIC: &[u8; 8] = b"BOOTPACK";

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
}

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
    /// Connect this terminal's input to the guest's serial port (for booting by hand).
    pub interactive: bool,
    /// QEMU's CPU model (`-cpu`): `max` by default; the benchmark uses `qemu64`, as the Linux
    /// peer is measured.
    pub cpu: String,
    /// Run with `-icount shift=0`: one virtual nanosecond per guest instruction, so `rdtsc`
    /// counts guest instructions (the benchmark's unit).
    pub icount: bool,
    /// Lines typed into the guest's serial console (QEMU's stdin, a pipe kept open until QEMU
    /// exits), for an interactive program such as init's prompt. Ignored when `interactive`
    /// is set.
    pub input: Option<Input>,
}

/// Lines to type into the guest's console, one each time it shows its prompt (typing ahead
/// could lose bytes: the UART holds a few, and they are dropped when it is reset at boot).
#[derive(Clone, Debug)]
pub struct Input {
    /// What the guest prints when it waits for a line (e.g. `memd> `).
    pub prompt: String,
    /// The lines, without their newline.
    pub lines: Vec<String>,
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
            input: None,
        }
    }

    /// Types `lines` into the guest's serial console, each when the guest's output ends with
    /// `prompt` (see [`Input`]).
    pub fn input(mut self, prompt: &str, lines: &[&str]) -> Boot {
        self.input = Some(Input {
            prompt: prompt.to_string(),
            lines: lines.iter().map(|l| l.to_string()).collect(),
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
        let built = build()?;
        let qemu = ensure_qemu()?;
        let mut modules = Vec::new();
        for name in &self.programs {
            let path = built.programs.join(name);
            let bytes = std::fs::read(&path)
                .map_err(|e| format!("test program {name} ({}): {e}", path.display()))?;
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
        std::fs::write(&pack, pack_modules(&modules))
            .map_err(|e| format!("write {}: {e}", pack.display()))?;
        let mut boot = self.clone();
        if self.programs.first().map(String::as_str) == Some(MEMD) {
            boot.cmdline = format!("{} {PAGER_LOADS_FLAG}", boot.cmdline)
                .trim()
                .to_string();
        }
        let stdin = if self.interactive {
            Stdio::inherit()
        } else if self.input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        let out = boot_qemu(&qemu, &built.kernel, Some(&pack), &boot, stdin);
        let _ = std::fs::remove_file(&pack);
        out
    }
}

static PACK_COUNTER: Mutex<u64> = Mutex::new(0);

/// Packs named modules into one boot pack, QEMU's single `-initrd`:
///
/// ```text
/// 0      "BOOTPACK"
/// 8      count: u64 (little endian)
/// 16     count entries of 64 bytes: offset u64, length u64, name [u8; 48] (NUL padded)
/// ...    module bytes, each at a 4096-aligned offset from the start of the pack
/// ```
pub fn pack_modules(modules: &[(String, Vec<u8>)]) -> Vec<u8> {
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
    out
}

/// Paths of the built bare-metal binaries.
#[derive(Clone, Debug)]
pub struct Built {
    /// The kernel ELF.
    pub kernel: PathBuf,
    /// The directory holding the test programs' ELF files.
    pub programs: PathBuf,
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// Builds the kernel, memd and the test programs for [`TARGET`] (release) into `target/metal`, once
/// per process.
pub fn build() -> Result<Built, String> {
    static BUILT: OnceLock<Result<Built, String>> = OnceLock::new();
    BUILT.get_or_init(build_now).clone()
}

fn build_now() -> Result<Built, String> {
    ensure_target()?;
    let root = workspace_root();
    let target_dir = root.join("target/metal");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for manifest in ["Cargo.toml", "tests/qemu/programs/Cargo.toml"] {
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(&root)
            .args([
                "build",
                "--release",
                "--target",
                TARGET,
                "--manifest-path",
                manifest,
            ])
            .arg("--target-dir")
            .arg(&target_dir);
        if manifest == "Cargo.toml" {
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
        eprintln!("[runner] building {manifest} for {TARGET}");
        let status = cmd
            .status()
            .map_err(|e| format!("cannot run {cargo}: {e}"))?;
        if !status.success() {
            return Err(format!(
                "building {manifest} for {TARGET} failed ({status})"
            ));
        }
    }
    let out = target_dir.join(TARGET).join("release");
    Ok(Built {
        kernel: out.join("kernel-shim"),
        programs: out,
    })
}

/// Installs the Rust target with rustup if it is missing.
pub fn ensure_target() -> Result<(), String> {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    if Path::new(&sysroot)
        .join("lib/rustlib")
        .join(TARGET)
        .exists()
    {
        return Ok(());
    }
    eprintln!("[runner] installing the Rust target {TARGET}");
    let ok = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return Err(format!(
            "the Rust target {TARGET} is missing and `rustup target add {TARGET}` failed; install it by hand"
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

/// Boots `kernel` with the boot pack `initrd` under QEMU (TCG), streaming the serial port.
pub fn boot_qemu(
    qemu: &Path,
    kernel: &Path,
    initrd: Option<&Path>,
    boot: &Boot,
    stdin: Stdio,
) -> Result<Outcome, String> {
    let mut cmd = Command::new(qemu);
    cmd.args(["-accel", "tcg", "-machine", "q35", "-smp", "1"])
        .args(["-cpu", &boot.cpu]);
    if boot.icount {
        cmd.args(["-icount", "shift=0"]);
    }
    cmd.args(["-m", &format!("{}M", boot.memory_mib)])
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", &boot.cmdline])
        .args([
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    if let Some(initrd) = initrd {
        cmd.arg("-initrd").arg(initrd);
    }
    cmd.stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", qemu.display()))?;
    let stdout = child.stdout.take().expect("piped stdout");
    // Typed input: a line each time the unfinished output line ends with the prompt; the pipe
    // stays open until QEMU exits (an end of input must not look like a closed console).
    let mut typer = child
        .stdin
        .take()
        .zip(boot.input.clone())
        .map(|(pipe, input)| {
            let lines: std::collections::VecDeque<String> = input.lines.into();
            (pipe, input.prompt, lines)
        });
    let echo = boot.echo;
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        let mut r = BufReader::new(stdout);
        let mut line = Vec::new();
        let mut chunk = [0u8; 4096];
        // Whether a line may be typed at the current prompt (not yet typed there).
        let mut armed = true;
        let emit = |line: &[u8], log: &mut String| {
            let text = String::from_utf8_lossy(line).replace('\r', "");
            if echo {
                let _ = write!(
                    std::io::stderr(),
                    "[guest {:>6.2}s] {}",
                    start.elapsed().as_secs_f64(),
                    text
                );
            }
            log.push_str(&text);
        };
        while let Ok(n) = std::io::Read::read(&mut r, &mut chunk) {
            if n == 0 {
                break;
            }
            for &b in &chunk[..n] {
                line.push(b);
                if b == b'\n' {
                    emit(&line, &mut log);
                    line.clear();
                    armed = true;
                }
            }
            if let Some((pipe, prompt, lines)) = typer.as_mut()
                && armed
                && line.ends_with(prompt.as_bytes())
                && let Some(next) = lines.pop_front()
            {
                armed = false;
                let _ = pipe
                    .write_all(format!("{next}\n").as_bytes())
                    .and_then(|()| pipe.flush());
            }
        }
        if !line.is_empty() {
            emit(&line, &mut log);
        }
        drop(typer);
        log
    });
    let exit = loop {
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
    if let Some(mut err) = child.stderr.take() {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        if !s.trim().is_empty() {
            log.push_str("[qemu stderr] ");
            log.push_str(&s);
        }
    }
    if echo {
        eprintln!("[runner] {:?} after {:.2?}", exit, start.elapsed());
    }
    Ok(Outcome {
        exit,
        log,
        elapsed: start.elapsed(),
    })
}
