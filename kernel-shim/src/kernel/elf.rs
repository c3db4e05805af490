//! Loading a boot program: an ELF64 x86_64 executable (parsed with the `elf` crate, as memd
//! parses the programs it starts) becomes a new address space whose image and stack are
//! kernel-pool frames, mapped eagerly, and a thread at its entry point.
//!
//! ```text
//! 0x0000_0000_0000 ─ 0x0000_0000_1000   never mapped (null guard)
//! 0x0000_0000_1000 ─ 0x0000_1000_0000   PT_LOAD segments, with their permissions
//! 0x0000_7FFF_0000 ─ 0x0000_8000_0000   stack (STACK_PAGES pages), read/write
//! ```
//!
//! The thread starts with rdi = the space's badge, rsi = its thread id, rdx = 1 for the pager.

use super::frames::PAGE;
use super::pt::{self, prot};
use super::state::Kernel;
use super::thread::Fpu;
use super::trap::TrapFrame;
use elf::ElfBytes;
use elf::abi::{EM_X86_64, ET_EXEC, PF_R, PF_W, PF_X, PT_LOAD};
use elf::endian::LittleEndian;
use elf::file::Class;
use elf::parse::ParseError;
use x86_64::PhysAddr;

/// Top of the initial stack.
pub const STACK_TOP: u64 = 0x8000_0000;
/// Pages of the initial stack.
pub const STACK_PAGES: usize = 16;
/// Where a program's segments must lie.
const IMAGE_LIMIT: u64 = 0x1000_0000;
/// The largest image, in pages.
const MAX_IMAGE_PAGES: usize = 1024;
const MAX_SEGMENTS: usize = 8;

#[derive(Clone, Copy, Default)]
struct Segment {
    vaddr: u64,
    memsz: u64,
    offset: u64,
    filesz: u64,
    prot: u8,
}

/// The entry point and the PT_LOAD segments, each checked. The `elf` crate parses the headers
/// (every offset and count checked against the file); the kernel checks what it needs beyond
/// that: a 64-bit x86_64 executable, each segment inside the image area and its bytes inside
/// the file.
fn parse(b: &[u8]) -> Result<(u64, [Segment; MAX_SEGMENTS], usize), &'static str> {
    let file = ElfBytes::<LittleEndian>::minimal_parse(b).map_err(|e| match e {
        ParseError::BadMagic(_) => "not an ELF file",
        ParseError::UnsupportedElfClass(_) | ParseError::UnsupportedElfEndianness(_) => {
            "not a little-endian ELF64 file"
        }
        _ => "malformed ELF headers",
    })?;
    if file.ehdr.class != Class::ELF64 {
        return Err("not a little-endian ELF64 file");
    }
    if file.ehdr.e_type != ET_EXEC || file.ehdr.e_machine != EM_X86_64 {
        return Err("not an x86_64 executable");
    }
    let headers = file.segments().ok_or("no program headers")?;
    let mut segs = [Segment::default(); MAX_SEGMENTS];
    let mut n = 0;
    for ph in headers.iter().filter(|ph| ph.p_type == PT_LOAD) {
        let flag = |bit: u32, p: u8| if ph.p_flags & bit != 0 { p } else { 0 };
        let s = Segment {
            offset: ph.p_offset,
            vaddr: ph.p_vaddr,
            filesz: ph.p_filesz,
            memsz: ph.p_memsz,
            prot: flag(PF_R, prot::READ) | flag(PF_W, prot::WRITE) | flag(PF_X, prot::EXEC),
        };
        let end = s.vaddr.checked_add(s.memsz).ok_or("segment wraps")?;
        if s.vaddr < PAGE || end > IMAGE_LIMIT || s.filesz > s.memsz {
            return Err("segment outside the image area");
        }
        let file_end = s.offset.checked_add(s.filesz).ok_or("segment wraps")?;
        if file_end > b.len() as u64 {
            return Err("segment beyond the file");
        }
        if n == MAX_SEGMENTS {
            return Err("too many segments");
        }
        segs[n] = s;
        n += 1;
    }
    if n == 0 {
        return Err("no loadable segment");
    }
    Ok((file.ehdr.e_entry, segs, n))
}

/// Loads `bytes` into a new space and starts its thread; the space's slot.
pub fn load(k: &mut Kernel, bytes: &[u8], pager: bool) -> Result<usize, &'static str> {
    let (entry, segs, n) = parse(bytes)?;
    let segs = &segs[..n];
    let lo = segs.iter().map(|s| s.vaddr).min().unwrap_or(0) & !(PAGE - 1);
    let hi = segs
        .iter()
        .map(|s| s.vaddr + s.memsz)
        .max()
        .unwrap_or(0)
        .next_multiple_of(PAGE);
    let pages = ((hi - lo) / PAGE) as usize;
    if pages > MAX_IMAGE_PAGES {
        return Err("image too large");
    }
    let mut page_prot = [0u8; MAX_IMAGE_PAGES];
    for s in segs {
        let first = ((s.vaddr & !(PAGE - 1)) - lo) / PAGE;
        let last = ((s.vaddr + s.memsz).next_multiple_of(PAGE) - lo) / PAGE;
        for p in first..last {
            page_prot[p as usize] |= s.prot | prot::READ;
        }
    }
    let total = pages + STACK_PAGES;
    let frames = k
        .frames
        .get_mut()
        .alloc_contiguous(total)
        .ok_or("out of kernel frames")?;
    let Some(s) = k.create_space() else {
        k.frames.get_mut().free_contiguous(frames, total);
        return Err("out of address spaces");
    };
    k.spaces[s].image = Some((frames, total));
    for seg in segs {
        let dst = super::boot::phys_to_virt(frames + (seg.vaddr - lo));
        let src = &bytes[seg.offset as usize..(seg.offset + seg.filesz) as usize];
        // SAFETY: the destination lies inside the `total` frames just allocated (the segment is
        // within [lo, hi)), reached through the window; the source is the checked file slice.
        unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), dst as *mut u8, src.len()) };
    }
    let root = k.spaces[s].root;
    let stack_base = STACK_TOP - (STACK_PAGES as u64) * PAGE;
    let mut m = pt::mapper(k.frames.get_mut(), root);
    let mut mapped = true;
    for (p, &access) in page_prot[..pages].iter().enumerate() {
        if access != 0 {
            let pa = PhysAddr::new(frames + p as u64 * PAGE);
            mapped &= m.map(lo + p as u64 * PAGE, pa, pt::flags(access)).is_ok();
        }
    }
    for p in 0..STACK_PAGES {
        let pa = PhysAddr::new(frames + (pages + p) as u64 * PAGE);
        let va = stack_base + p as u64 * PAGE;
        mapped &= m.map(va, pa, pt::flags(prot::READ | prot::WRITE)).is_ok();
    }
    pt::finish(m, root);
    if !mapped {
        k.end_space(s);
        return Err("out of kernel frames for page tables");
    }
    if pager {
        k.pager = Some(s);
    }
    let mut frame = TrapFrame::user(entry, STACK_TOP - 8);
    frame.rdi = k.badge(s);
    frame.rdx = pager as u64;
    let Ok(t) = k.create_thread(s, frame, Fpu::initial(), 0) else {
        k.end_space(s);
        return Err("out of threads");
    };
    k.threads[t].frame.rsi = k.thread_id(t);
    Ok(s)
}
