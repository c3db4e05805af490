//! A program's exit code is 32 bits: one with bit 32 set (the bit the kernel's kill notice
//! carries) is an exit with the low 32 bits as its status, never a kill, with memd and with
//! the kernel tests' pager alike.

use qemu_runner::Boot;
use qemu_runner::verdict::{self, ProgramEnd};

fn end_of(programs: &[&str]) -> ProgramEnd {
    let o = Boot::new(programs).run();
    o.assert_clean().assert_log("exitwide: exit(1 << 32 | 6)");
    let names: Vec<String> = programs.iter().map(|s| s.to_string()).collect();
    assert_eq!(verdict::verdict(&names, &o, &[]).code, 6, "{}", o.log);
    verdict::first_program(&names, &o.log)
        .expect("a first program")
        .end
}

#[test]
fn an_exit_code_with_bit_32_set_is_an_exit_not_a_kill() {
    assert_eq!(end_of(&["memd", "exitwide"]), ProgramEnd::Exited(6));
    assert_eq!(end_of(&["pager", "exitwide"]), ProgramEnd::Exited(6));
}
