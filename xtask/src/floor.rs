//! The floor: the smallest PVH kernel QEMU will boot, written by hand.
//!
//! It prints `floor` on COM1 and exits through isa-debug-exit, so its boot time is what QEMU and
//! its firmware cost before any kernel code runs. `bench boot` divides Ringbolt's figures by it.
//!
//! The file is one ELF64 image (System V gABI, "ELF Header" and "Program Header"):
//!
//! ```text
//! offset 0    ELF header                      \
//! offset 64   PT_LOAD: whole file at 1 MiB     | all of it loaded at 1 MiB
//! offset 120  PT_NOTE: the Xen note           |
//! offset 176  note "Xen\0", type 18, entry    |
//! offset 208  32-bit code                     /
//! ```
//!
//! The note is XEN_ELFNOTE_PHYS32_ENTRY (xen/include/public/elfnote.h): QEMU's `-kernel` loader
//! (hw/i386/x86-common.c, `pvh_load_elfboot`) takes the 32-bit entry from it and enters there in
//! flat protected mode with paging off, as the PVH boot ABI (xen/include/public/arch-x86/
//! hvm/start_info.h) specifies. No section headers: loaders read only program headers.

use std::fs;
use std::path::{Path, PathBuf};

/// Physical (= virtual) load address: 1 MiB, where PVH kernels conventionally sit, above the
/// real-mode and BIOS areas that QEMU's firmware still occupies.
const LOAD_ADDR: u64 = 0x10_0000;

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const PHDR_COUNT: usize = 2;
const NOTE_OFFSET: usize = EHDR_SIZE + PHDR_SIZE * PHDR_COUNT;
/// The note's name: "Xen" and its NUL, already a multiple of the 4-byte note alignment.
const NOTE_NAME: &[u8; 4] = b"Xen\0";
/// XEN_ELFNOTE_PHYS32_ENTRY (xen/include/public/elfnote.h).
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// namesz, descsz and type words, the name, then a 4-byte entry address.
const NOTE_SIZE: usize = 12 + NOTE_NAME.len() + 4;
/// Code starts on a 16-byte boundary after the note, only so a disassembly is easy to read.
const CODE_OFFSET: usize = (NOTE_OFFSET + NOTE_SIZE).next_multiple_of(16);
/// Where the code runs, and so the PVH entry point.
const ENTRY: u32 = (LOAD_ADDR as usize + CODE_OFFSET) as u32;

/// What the floor prints, one byte at a time, on COM1.
pub const GREETING: &[u8] = b"floor\n";

const COM1: u16 = 0x3f8;
/// The isa-debug-exit port every Ringbolt run configures (`iobase=0xf4`).
const DEBUG_EXIT: u16 = 0xf4;

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const PF_X: u32 = 1;
const PF_R: u32 = 4;

/// Writes the floor image to `<target_dir>/floor.elf` and returns that path.
pub fn write(target_dir: &Path) -> Result<PathBuf, String> {
    let path = target_dir.join("floor.elf");
    fs::create_dir_all(target_dir)
        .and_then(|()| fs::write(&path, image()))
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}

/// The whole ELF file.
pub fn image() -> Vec<u8> {
    let code = code();
    let file_size = (CODE_OFFSET + code.len()) as u64;
    let mut out = Vec::with_capacity(file_size as usize);

    // ELF header.
    out.extend_from_slice(b"\x7fELF");
    out.extend_from_slice(&[
        2, // EI_CLASS: ELFCLASS64
        1, // EI_DATA: ELFDATA2LSB
        1, // EI_VERSION: EV_CURRENT
        0, // EI_OSABI: System V
    ]);
    out.resize(16, 0); // EI_ABIVERSION and padding
    put16(&mut out, 2); // e_type: ET_EXEC
    put16(&mut out, 62); // e_machine: EM_X86_64
    put32(&mut out, 1); // e_version
    put64(&mut out, u64::from(ENTRY)); // e_entry (PVH loaders use the note instead)
    put64(&mut out, EHDR_SIZE as u64); // e_phoff
    put64(&mut out, 0); // e_shoff: no section headers
    put32(&mut out, 0); // e_flags
    put16(&mut out, EHDR_SIZE as u16); // e_ehsize
    put16(&mut out, PHDR_SIZE as u16); // e_phentsize
    put16(&mut out, PHDR_COUNT as u16); // e_phnum
    put16(&mut out, 0); // e_shentsize
    put16(&mut out, 0); // e_shnum
    put16(&mut out, 0); // e_shstrndx

    // The whole file, headers included, loaded at 1 MiB: offset 0 and LOAD_ADDR agree modulo
    // the page alignment, as the gABI requires of PT_LOAD.
    program_header(&mut out, PT_LOAD, PF_R | PF_X, 0, file_size, 0x1000);
    program_header(&mut out, PT_NOTE, PF_R, NOTE_OFFSET, NOTE_SIZE as u64, 4);

    // The Xen note.
    put32(&mut out, NOTE_NAME.len() as u32); // namesz
    put32(&mut out, 4); // descsz
    put32(&mut out, XEN_ELFNOTE_PHYS32_ENTRY); // type
    out.extend_from_slice(NOTE_NAME);
    put32(&mut out, ENTRY); // desc: the 32-bit entry address

    out.resize(CODE_OFFSET, 0);
    out.extend_from_slice(&code);
    out
}

/// The 32-bit protected-mode code, hand-assembled.
fn code() -> Vec<u8> {
    let mut code = Vec::new();
    let [com1_lo, com1_hi] = COM1.to_le_bytes();
    code.extend_from_slice(&[0x66, 0xba, com1_lo, com1_hi]); // mov dx, 0x3f8
    for &byte in GREETING {
        // QEMU's 16550 sends whatever lands in THR, so no baud-rate or FIFO setup is needed.
        code.extend_from_slice(&[0xb0, byte]); // mov al, byte
        code.push(0xee); // out dx, al
    }
    let [exit_lo, exit_hi] = DEBUG_EXIT.to_le_bytes();
    code.extend_from_slice(&[0x66, 0xba, exit_lo, exit_hi]); // mov dx, 0xf4
    code.extend_from_slice(&[0x31, 0xc0]); // xor eax, eax
    code.push(0xee); // out dx, al: exit code 0, QEMU exits with status 1
    code.push(0xfa); // cli
    code.push(0xf4); // hlt: only reached if isa-debug-exit is missing
    code.extend_from_slice(&[0xeb, 0xfe]); // jmp . (an NMI could end the hlt)
    code
}

fn program_header(out: &mut Vec<u8>, kind: u32, flags: u32, offset: usize, size: u64, align: u64) {
    let addr = LOAD_ADDR + offset as u64;
    put32(out, kind); // p_type
    put32(out, flags); // p_flags
    put64(out, offset as u64); // p_offset
    put64(out, addr); // p_vaddr
    put64(out, addr); // p_paddr: QEMU loads by physical address
    put64(out, size); // p_filesz
    put64(out, size); // p_memsz
    put64(out, align); // p_align
}

fn put16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(image: &[u8], at: usize) -> u16 {
        u16::from_le_bytes(image[at..at + 2].try_into().unwrap())
    }

    fn u32_at(image: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(image[at..at + 4].try_into().unwrap())
    }

    fn u64_at(image: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(image[at..at + 8].try_into().unwrap())
    }

    /// (p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align)
    fn phdr(image: &[u8], index: usize) -> (u32, u32, u64, u64, u64, u64, u64, u64) {
        let at = u64_at(image, 32) as usize + index * u16_at(image, 54) as usize;
        (
            u32_at(image, at),
            u32_at(image, at + 4),
            u64_at(image, at + 8),
            u64_at(image, at + 16),
            u64_at(image, at + 24),
            u64_at(image, at + 32),
            u64_at(image, at + 40),
            u64_at(image, at + 48),
        )
    }

    #[test]
    fn header_describes_x86_64_executable_with_two_program_headers() {
        let image = image();
        assert_eq!(&image[..4], b"\x7fELF");
        assert_eq!(image[4], 2, "ELFCLASS64");
        assert_eq!(image[5], 1, "little-endian");
        assert_eq!(image[6], 1, "EV_CURRENT");
        assert_eq!(u16_at(&image, 16), 2, "ET_EXEC");
        assert_eq!(u16_at(&image, 18), 62, "EM_X86_64");
        assert_eq!(u32_at(&image, 20), 1, "e_version");
        assert_eq!(
            u64_at(&image, 32),
            64,
            "program headers follow the ELF header"
        );
        assert_eq!(u64_at(&image, 40), 0, "no section headers");
        assert_eq!(u16_at(&image, 52), 64, "e_ehsize");
        assert_eq!(u16_at(&image, 54), 56, "e_phentsize");
        assert_eq!(u16_at(&image, 56), 2, "e_phnum");
        assert_eq!(u16_at(&image, 60), 0, "e_shnum");
    }

    #[test]
    fn load_segment_maps_whole_file_at_one_mib() {
        let image = image();
        let (kind, flags, offset, vaddr, paddr, filesz, memsz, align) = phdr(&image, 0);
        assert_eq!(kind, PT_LOAD);
        assert_eq!(flags, PF_R | PF_X);
        assert_eq!((offset, vaddr, paddr), (0, 0x10_0000, 0x10_0000));
        assert_eq!(filesz, image.len() as u64);
        assert_eq!(memsz, filesz);
        assert_eq!(offset % align, vaddr % align, "gABI congruence rule");
    }

    #[test]
    fn note_is_aligned_xen_phys32_entry() {
        let image = image();
        let (kind, _, offset, vaddr, _, filesz, _, align) = phdr(&image, 1);
        assert_eq!(kind, PT_NOTE);
        assert_eq!(align, 4);
        assert_eq!(offset % align, 0, "note must start on its alignment");
        assert_eq!(
            vaddr,
            0x10_0000 + offset,
            "note lies inside the loaded image"
        );
        let note = offset as usize;
        let (namesz, descsz) = (u32_at(&image, note), u32_at(&image, note + 4));
        assert_eq!((namesz, descsz), (4, 4));
        assert_eq!(u32_at(&image, note + 8), 18, "XEN_ELFNOTE_PHYS32_ENTRY");
        assert_eq!(&image[note + 12..note + 16], b"Xen\0");
        assert_eq!(filesz, 12 + 4 + 4, "one note, no trailing bytes");
        assert_eq!(
            u64::from(u32_at(&image, note + 16)),
            u64_at(&image, 24),
            "note entry equals e_entry"
        );
    }

    #[test]
    fn entry_points_at_code_inside_load_segment() {
        let image = image();
        let entry = u64_at(&image, 24);
        assert!(entry < u64::from(u32::MAX), "PVH entry is a 32-bit address");
        let offset = (entry - 0x10_0000) as usize;
        assert!(offset < image.len());
        assert_eq!(
            &image[offset..offset + 4],
            &[0x66, 0xba, 0xf8, 0x03],
            "mov dx, 0x3f8"
        );
    }

    #[test]
    fn code_prints_greeting_then_writes_zero_to_debug_exit() {
        let code = code();
        let printed: Vec<u8> = code[4..4 + 3 * GREETING.len()]
            .chunks(3)
            .map(|insn| {
                assert_eq!((insn[0], insn[2]), (0xb0, 0xee), "mov al, imm8; out dx, al");
                insn[1]
            })
            .collect();
        assert_eq!(printed, GREETING);
        let tail = &code[4 + 3 * GREETING.len()..];
        assert_eq!(
            tail,
            &[
                0x66, 0xba, 0xf4, 0x00, 0x31, 0xc0, 0xee, 0xfa, 0xf4, 0xeb, 0xfe
            ]
        );
    }

    #[test]
    fn write_creates_floor_elf_in_target_dir() {
        let dir = std::env::temp_dir().join(format!("xtask-floor-{}", std::process::id()));
        let path = write(&dir.join("nested")).unwrap();
        assert_eq!(path, dir.join("nested/floor.elf"));
        assert_eq!(fs::read(&path).unwrap(), image());
        fs::remove_dir_all(&dir).unwrap();
    }
}
