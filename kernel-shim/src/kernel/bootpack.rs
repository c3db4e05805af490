//! The boot pack: the runner packs the boot programs into QEMU's one `-initrd` module. Its
//! format is part of the ABI (the pager may parse it too): see [`kernel_shim::abi::bootpack`].

pub use kernel_shim::abi::bootpack::parse;
