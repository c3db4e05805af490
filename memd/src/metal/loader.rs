//! Programs from boot modules: an ELF64 x86_64 executable of the boot pack becomes a process.
//!
//! memd parses the ELF file with the `elf` crate (no_std, no allocation, every offset and
//! length checked against the file), then: [`Memd::spawn`] (an empty image: a stack of
//! `STACK_MAX` under its stack top with a guard page below it, an empty heap for brk),
//! [`Memd::load_segment`] for each `PT_LOAD` segment (a Code region if executable, else Data:
//! private, backed now with the file's bytes and zeros after them, so a fork shares them
//! copy-on-write), and kernel-shim's `thread_start` at the entry point with rdi = the pid.
//!
//! ```text
//! 0x0000_0000_0000 ─ 0x0000_0001_0000   never mapped (null guard)
//! 0x0000_0040_0000 ─ ...                the segments (test programs link at 4 MiB)
//! 0x0000_1000_0000 ─                    heap (brk), empty at start
//! 0x0000_7F7F_F000 ─ 0x0000_7F80_0000   guard page
//! 0x0000_7F80_0000 ─ 0x0000_8000_0000   stack (8 MiB, backed page by page on touch)
//! ```

use super::kernel::MetalKernel;
use super::sys::call;
use alloc::vec::Vec;
use elf::ElfBytes;
use elf::abi::{EM_X86_64, ET_EXEC, PF_R, PF_W, PF_X, PT_LOAD};
use elf::endian::LittleEndian;
use kernel_shim::abi as nr;
use libvm::{ProtectionFlags, VmError};
use memd::image::Segment;
use memd::{Memd, Pid};

const PAGE: u64 = memd::kernel::PAGE_SIZE;

/// Why a module could not be started.
#[derive(Debug)]
pub enum LoadError {
    /// Not an ELF64 little-endian x86_64 executable, or a malformed one.
    BadElf(&'static str),
    /// memd refused a segment or ran out of memory.
    Vm(VmError),
    /// The kernel refused the thread.
    Thread(i64),
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LoadError::BadElf(why) => write!(f, "bad ELF file: {why}"),
            LoadError::Vm(e) => write!(f, "memd refused the image: {e:?}"),
            LoadError::Thread(e) => write!(f, "the kernel refused the thread: {e}"),
        }
    }
}

/// Starts `bytes` as a new process (under W^X from the start if `deny_write_exec`); its pid.
pub fn start(
    memd: &Memd<MetalKernel>,
    bytes: &[u8],
    deny_write_exec: bool,
) -> Result<Pid, LoadError> {
    let file = ElfBytes::<LittleEndian>::minimal_parse(bytes)
        .map_err(|_| LoadError::BadElf("not an ELF64 little-endian file"))?;
    if file.ehdr.e_machine != EM_X86_64 || file.ehdr.e_type != ET_EXEC {
        return Err(LoadError::BadElf("not an x86_64 executable"));
    }
    let segments = file
        .segments()
        .ok_or(LoadError::BadElf("no program headers"))?;
    // PT_LOAD segments in address order; segments that share a page (.data and .bss, say)
    // become one segment with the union of their protections.
    let mut pieces: Vec<(u64, u64, &[u8], ProtectionFlags)> = Vec::new();
    for ph in segments
        .iter()
        .filter(|ph| ph.p_type == PT_LOAD && ph.p_memsz > 0)
    {
        let data = file
            .segment_data(&ph)
            .map_err(|_| LoadError::BadElf("segment beyond the file"))?;
        let mut prot = ProtectionFlags::NONE;
        if ph.p_flags & PF_R != 0 {
            prot |= ProtectionFlags::READ;
        }
        if ph.p_flags & PF_W != 0 {
            prot |= ProtectionFlags::READ_WRITE;
        }
        if ph.p_flags & PF_X != 0 {
            prot |= ProtectionFlags::READ_EXEC;
        }
        let data = data.get(..ph.p_filesz as usize).unwrap_or(data);
        if ph.p_vaddr.checked_add(ph.p_memsz).is_none() || (ph.p_filesz > ph.p_memsz) {
            return Err(LoadError::BadElf("bad segment size"));
        }
        pieces.push((ph.p_vaddr, ph.p_memsz, data, prot));
    }
    pieces.sort_by_key(|p| p.0);
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for i in 0..pieces.len() {
        match groups.last_mut() {
            Some((_, last))
                if {
                    let (v, m, _, _) = pieces[*last];
                    (v + m).next_multiple_of(PAGE) > (pieces[i].0 & !(PAGE - 1))
                } =>
            {
                *last = i
            }
            _ => groups.push((i, i)),
        }
    }
    let pid = memd.spawn().map_err(LoadError::Vm)?;
    let result = (|| {
        if deny_write_exec {
            // Before the image: a writable and executable segment is refused.
            memd.deny_write_exec(pid).map_err(LoadError::Vm)?;
        }
        let mut loaded = 0;
        for &(first, last) in &groups {
            let group = &pieces[first..=last];
            let start = group[0].0;
            let end = group.iter().map(|p| p.0 + p.1).max().unwrap_or(start);
            let prot = group.iter().fold(ProtectionFlags::NONE, |a, p| a | p.3);
            let merged: Vec<u8>;
            let data: &[u8] = if group.len() == 1 {
                group[0].2
            } else {
                let file_end = group
                    .iter()
                    .map(|p| p.0 + p.2.len() as u64)
                    .max()
                    .unwrap_or(start);
                let mut buf = alloc::vec![0u8; (file_end - start) as usize];
                for p in group {
                    let at = (p.0 - start) as usize;
                    buf[at..at + p.2.len()].copy_from_slice(p.2);
                }
                merged = buf;
                &merged
            };
            let segment = Segment {
                vaddr: start,
                mem_size: end - start,
                data,
                prot,
            };
            memd.load_segment(pid, &segment).map_err(LoadError::Vm)?;
            loaded += 1;
        }
        if loaded == 0 {
            return Err(LoadError::BadElf("no loadable segment"));
        }
        let space = memd.space_of(pid).map_err(LoadError::Vm)?;
        let stack_top = memd.placement(pid).map_err(LoadError::Vm)?.stack_top;
        let t = call(
            nr::THREAD_START,
            space,
            file.ehdr.e_entry,
            stack_top - 8,
            pid,
        );
        if t < 0 {
            return Err(LoadError::Thread(t));
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(pid),
        Err(e) => {
            // The process was made above and nothing else knows it: it exists to be ended,
            // and its death record is dropped with it.
            if let Err(undo) = memd.exit(pid, -1) {
                super::sys::println!("memd: undoing the load of pid {}: {:?}", pid, undo);
            }
            memd.reap(pid);
            Err(e)
        }
    }
}
