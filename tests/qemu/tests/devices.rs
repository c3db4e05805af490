//! Device memory on the metal: the kernel accepts the device ranges of its command line that
//! are page aligned and clear of RAM and of its local APIC, and refuses the others; the first program maps the VGA text buffer, shares
//! it with a fork's child and grants it to a spawned process (the `devmem` program).

use qemu_runner::Boot;

#[test]
fn a_ring3_program_maps_the_vga_text_buffer_and_grants_it() {
    let o = Boot::new(&["memd", "devmem"])
        .cmdline(
            "device=vga:0xb8000:0x8000 device=overram:0x200000:0x1000 \
             device=apic:0xfee00000:0x1000 device=odd:0xb8800:0x100",
        )
        .run();
    o.assert_clean()
        .assert_log("kernel-shim: device 0 (vga) at 0xb8000, 0x8000 bytes")
        .assert_log(
            "kernel-shim: device 1 (overram) at 0x200000, 0x1000 bytes: overlaps RAM, refused",
        )
        .assert_log(
            "kernel-shim: device 2 (apic) at 0xfee00000, 0x1000 bytes: overlaps the local APIC \
             the kernel drives, refused",
        )
        .assert_log("kernel-shim: device 3 (odd) at 0xb8800, 0x100 bytes: not page aligned")
        .assert_log("memd: device 0 (vga) at 0xb8000, 0x8000 bytes")
        .assert_no_log("memd: device 1")
        .assert_log("PASS devmem")
        .assert_no_log("FAIL");
}

#[test]
fn without_a_device_on_the_command_line_there_is_none_to_map() {
    let o = Boot::new(&["memd", "devmem"]).run();
    o.assert_log("FAIL src/bin/devmem.rs")
        .assert_log("device vga: Err(NoSuchDevice)");
}
