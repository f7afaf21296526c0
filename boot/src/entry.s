// Boot entries: PVH (32-bit protected mode -> long mode -> Rust) and Xen PV (64-bit -> Rust).
//
// Contract (xen/include/public/arch-x86/hvm/start_info.h, "PVH boot"): entered at the
// XEN_ELFNOTE_PHYS32_ENTRY address in 32-bit flat protected mode, paging off, interrupts off,
// %ebx = physical address of hvm_start_info. Nothing else is set up: no stack, no GDT we may
// keep, and .bss may not be zero (a loader is not obliged to clear it).
//
// What this does, and why:
//   1. Zero .bss: Rust statics assume it.
//   2. Build boot page tables identity-mapping the low 4 GiB with 2 MiB pages. That covers the
//      image, the boot structures and the local APIC; the kernel replaces them with its own
//      tables (ringbolt-mm) as soon as it knows the memory map.
//   3. PAE + EFER.LME/NXE + CR0.PG -> long mode (compatibility), a 64 KiB stack, a far
//      return into a 64-bit code segment, then call
//      ringbolt_pvh_start(start_info_paddr: u32) -> ! with the System V ABI.
// The stack and tables live in .bss: the image stays small.

.section .note.Xen, "a", @note
.p2align 2
    .long 4                         // namesz: "Xen\0"
    .long 4                         // descsz
    .long 18                        // XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .p2align 2
    .long pvh_start32
    .p2align 2

// Xen PV notes (xen/include/public/elfnote.h), read by libxenguest's and Xen's dom0 PV
// builders. VIRT_BASE = PADDR_OFFSET = 0: the PV bootstrap mapping puts pseudo-physical frame
// N at virtual N * 4 KiB, so the image runs at its link address under PV too, and every
// bootstrap structure is "identity-mapped" in pseudo-physical terms.
.macro XEN_NOTE_HEADER type
    .p2align 2
    .long 4                         // namesz: "Xen\0"
    .long 2f - 1f                   // descsz
    .long \type
    .asciz "Xen"
    .p2align 2
.endm
.macro XEN_NOTE_STRING type, text
    XEN_NOTE_HEADER \type
1:  .asciz "\text"
2:
.endm
.macro XEN_NOTE_QUAD type, value
    XEN_NOTE_HEADER \type
1:  .quad \value
2:
.endm

XEN_NOTE_STRING 6, Ringbolt                     // GUEST_OS
XEN_NOTE_STRING 5, xen-3.0                      // XEN_VERSION
XEN_NOTE_STRING 8, generic                      // LOADER
XEN_NOTE_QUAD 3, 0                              // VIRT_BASE
XEN_NOTE_QUAD 4, 0                              // PADDR_OFFSET
XEN_NOTE_QUAD 1, xen_pv_start                   // ENTRY
XEN_NOTE_QUAD 2, hypercall_page                 // HYPERCALL_PAGE
// As Linux and Mini-OS on x86_64: page tables are updated by hypercall, never written.
XEN_NOTE_STRING 10, !writable_page_tables       // FEATURES
.p2align 2

.section .text.boot, "ax"
.code32
.global pvh_start32
pvh_start32:
    cld
    mov esi, ebx                    // keep hvm_start_info's address across the setup

    // 1. Zero .bss (it holds the tables and stack too).
    lea edi, [__bss_start]
    lea ecx, [__bss_end]
    sub ecx, edi
    shr ecx, 2
    xor eax, eax
    rep stosd

    // 2. PML4[0] -> PDPT; PDPT[0..4] -> four page directories; 2048 x 2 MiB pages.
    lea eax, [boot_pdpt + 0x3]      // present | writable
    mov [boot_pml4], eax
    lea edi, [boot_pdpt]
    lea eax, [boot_pd + 0x3]
    mov ecx, 4
1:  mov [edi], eax
    add edi, 8
    add eax, 0x1000
    loop 1b
    lea edi, [boot_pd]
    mov eax, 0x83                   // present | writable | 2 MiB
    mov ecx, 2048
2:  mov [edi], eax
    add edi, 8
    add eax, 0x200000
    loop 2b

    // 3. Long mode.
    mov eax, cr4
    or eax, 1 << 5                  // PAE
    mov cr4, eax
    lea eax, [boot_pml4]
    mov cr3, eax
    mov ecx, 0xc0000080             // IA32_EFER
    rdmsr
    or eax, (1 << 8) | (1 << 11)    // LME | NXE
    wrmsr
    mov eax, cr0
    or eax, (1 << 31) | (1 << 16) | 1   // PG | WP | PE
    mov cr0, eax

    lgdt [boot_gdt_pointer]
    lea esp, [boot_stack_top]       // PVH leaves %esp undefined (Xen: 0) and retf needs a stack
    push 0x08                       // 64-bit code selector
    lea eax, [long_mode_start]
    push eax
    retf

.code64
long_mode_start:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    lea rsp, [boot_stack_top]
    xor ebp, ebp                    // terminates frame-pointer backtraces
    mov edi, esi                    // arg 0: hvm_start_info physical address
    call ringbolt_pvh_start
3:  cli
    hlt
    jmp 3b

// Xen PV entry (64-bit, ring 3, paging on): %rsi = virtual address of start_info, %rsp = a
// stack page in the bootstrap area, events masked. Xen's builder zeroes .bss; clearing it
// again costs nothing and does not rely on that. Then our own boot stack, and
// ringbolt_xen_pv_start(start_info_vaddr: u64) -> !.
.global xen_pv_start
xen_pv_start:
    cld
    mov r12, rsi
    lea rdi, [rip + __bss_start]
    lea rcx, [rip + __bss_end]
    sub rcx, rdi
    shr rcx, 3
    xor eax, eax
    rep stosq
    lea rsp, [rip + boot_stack_top]
    xor ebp, ebp
    mov rdi, r12
    call ringbolt_xen_pv_start
4:  jmp 4b                          // ring 3: no hlt

// Xen's hypercall page: Xen writes one 32-byte stub per hypercall into it (PVH/HVM: when the
// kernel writes its address to the MSR CPUID names; PV: at domain build, via
// XEN_ELFNOTE_HYPERCALL_PAGE). Filled with int3 so a call before that traps loudly.
.section .text.hypercall_page, "ax"
.p2align 12
.global hypercall_page
hypercall_page:
    .fill 4096, 1, 0xcc

.section .rodata
.p2align 4
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff        // 0x08: 64-bit code, DPL 0
    .quad 0x00cf92000000ffff        // 0x10: data, DPL 0
boot_gdt_end:
boot_gdt_pointer:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

.section .bss
.p2align 12
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096 * 4
// Unmapped by the kernel once it has its own page tables, so a stack overflow faults (and,
// with no stack left for the page-fault frame, lands in the double-fault handler's IST stack).
.global boot_stack_guard
boot_stack_guard:
    .skip 4096
.global boot_stack_bottom
boot_stack_bottom:
    .skip 65536
.global boot_stack_top
boot_stack_top:
// Xen PV: the virtual page where the kernel maps shared_info (a machine frame Xen owns).
.p2align 12
.global xen_pv_shared_info
xen_pv_shared_info:
    .skip 4096
// Xen: the virtual pages of the kernel's grant table (kernel/src/xen/grant.rs; keep the sizes
// in step). PV maps Xen's machine frames over them; PVH has Xen put the frames at their guest
// frames in place of the RAM.
.p2align 12
.global xen_grant_table
xen_grant_table:
    .skip 4096 * 4

.section .text
