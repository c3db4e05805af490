//! The caller's mappings in the form of Linux's `/proc/self/maps`, made from memd's region
//! listing (`REGIONS`): one line a region, `start-end perms offset dev inode name`.
//!
//! ```text
//! 00400000-00408000 r-xp 00000000 00:00 0                                  [code]
//! 10000000-10020000 rw-p 00000000 00:00 0                                  [heap]
//! 40000000-40003000 rw-s 00000000 00:00 0                                  /dev/zero (deleted)
//! 7f800000-80000000 rw-p 00000000 00:00 0                                  [stack]
//! ```
//!
//! Anonymous memory has no name, as on Linux; shared anonymous memory is named as Linux names
//! it; the program image, which has no file here, is `[code]` and `[data]`.

use crate::proto::RegionInfo;
use alloc::format;
use alloc::string::String;

/// The column a mapping's name starts at in Linux's format.
const NAME_COLUMN: usize = 73;

/// The name Linux's format gives a region of memd's kind `kind`.
fn name(kind: u64, shared: bool) -> &'static str {
    match kind {
        2 if shared => "/dev/zero (deleted)",
        3 => "[stack]",
        4 => "[heap]",
        5 => "[code]",
        6 => "[data]",
        7 => "[device]",
        _ => "",
    }
}

/// The line of `region`, without its newline.
pub fn maps_line(region: &RegionInfo) -> String {
    let bit = |b: u64, c: char| if region.prot & b != 0 { c } else { '-' };
    let mut line = format!(
        "{:08x}-{:08x} {}{}{}{} 00000000 00:00 0",
        region.start,
        region.end,
        bit(1, 'r'),
        bit(2, 'w'),
        bit(4, 'x'),
        if region.shared != 0 { 's' } else { 'p' },
    );
    let name = name(region.kind, region.shared != 0);
    if !name.is_empty() {
        while line.len() < NAME_COLUMN {
            line.push(' ');
        }
        line.push_str(name);
    }
    line
}

/// Every line of `regions`, each ended by a newline.
pub fn maps(regions: &[RegionInfo]) -> String {
    let mut out = String::new();
    for r in regions {
        out.push_str(&maps_line(r));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(start: u64, end: u64, prot: u64, kind: u64, shared: u64) -> RegionInfo {
        RegionInfo {
            start,
            end,
            prot,
            kind,
            shared,
            resident_pages: 0,
        }
    }

    #[test]
    fn lines_are_linux_s() {
        assert_eq!(
            maps_line(&region(0x40_0000, 0x40_8000, 5, 5, 0)),
            "00400000-00408000 r-xp 00000000 00:00 0                                  [code]"
        );
        assert_eq!(
            maps_line(&region(0x4000_0000, 0x4000_3000, 3, 2, 1)),
            "40000000-40003000 rw-s 00000000 00:00 0                                  \
             /dev/zero (deleted)"
        );
        assert_eq!(
            maps_line(&region(0x1000_0000_0000, 0x1000_0000_1000, 0, 0, 0)),
            "100000000000-100000001000 ---p 00000000 00:00 0"
        );
        let all = maps(&[
            region(0x40_0000, 0x40_8000, 5, 5, 0),
            region(0x7F80_0000, 0x8000_0000, 3, 3, 0),
        ]);
        assert_eq!(all.lines().count(), 2);
        assert!(all.ends_with("[stack]\n"));
        assert_eq!(all.lines().next().map(str::len), Some(79));
    }
}
