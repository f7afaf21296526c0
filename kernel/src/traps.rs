//! GDT/TSS, the IDT, and the trap entry path.
//!
//! Every vector the kernel installs enters through a small assembly stub that pushes the vector
//! number (and a zero error code where the CPU pushes none), saves the general registers and
//! calls [`ringbolt_trap`] with a pointer to the [`TrapFrame`]. Exceptions are fatal in a
//! unikernel: the handler prints vector, error code, RIP and CR2 (and the registers) and panics,
//! which shuts the VM down with a panic status. The double fault runs on its own IST stack so
//! a kernel stack overflow is still reported.

use core::fmt;

use hermit_sync::OnceCell;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::idt::InterruptDescriptorTable;
use x86_64::structures::tss::TaskStateSegment;

use ringbolt_xen_abi::arch_x86::{FLAT_KERNEL_CS, TrapInfo};
use ringbolt_xen_abi::xen::{HYPERCALL_ENTRY_SIZE, HYPERVISOR_IRET};

use crate::platform::try_platform;
use crate::{apic, vmbus, xen};

const DOUBLE_FAULT_IST_INDEX: u16 = 0;
const IST_STACK_SIZE: usize = 16 * 1024;

/// Registers saved by the entry stub, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct TrapFrame {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rdi: u64,
    rsi: u64,
    rbp: u64,
    rbx: u64,
    rdx: u64,
    rcx: u64,
    rax: u64,
    vector: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

impl fmt::Display for TrapFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  rax={:016x} rbx={:016x} rcx={:016x} rdx={:016x}",
            self.rax, self.rbx, self.rcx, self.rdx
        )?;
        writeln!(
            f,
            "  rsi={:016x} rdi={:016x} rbp={:016x} rsp={:016x}",
            self.rsi, self.rdi, self.rbp, self.rsp
        )?;
        writeln!(
            f,
            "  r8 ={:016x} r9 ={:016x} r10={:016x} r11={:016x}",
            self.r8, self.r9, self.r10, self.r11
        )?;
        writeln!(
            f,
            "  r12={:016x} r13={:016x} r14={:016x} r15={:016x}",
            self.r12, self.r13, self.r14, self.r15
        )?;
        write!(
            f,
            "  cs={:#x} ss={:#x} rflags={:#x}",
            // Xen PV keeps its saved event mask in the slot's upper bits.
            self.cs & 0xffff,
            self.ss & 0xffff,
            self.rflags
        )
    }
}

/// Architectural exception names, by vector.
fn exception_name(vector: u64) -> &'static str {
    match vector {
        0 => "divide error",
        1 => "debug",
        2 => "non-maskable interrupt",
        3 => "breakpoint",
        4 => "overflow",
        5 => "bound range exceeded",
        6 => "invalid opcode",
        7 => "device not available",
        8 => "double fault",
        9 => "coprocessor segment overrun",
        10 => "invalid TSS",
        11 => "segment not present",
        12 => "stack-segment fault",
        13 => "general protection fault",
        14 => "page fault",
        16 => "x87 floating-point error",
        17 => "alignment check",
        18 => "machine check",
        19 => "SIMD floating-point error",
        20 => "virtualization exception",
        21 => "control protection exception",
        28 => "hypervisor injection exception",
        29 => "VMM communication exception",
        30 => "security exception",
        XEN_PV_FAILSAFE => "Xen failsafe callback (bad segment on return)",
        _ => "reserved exception",
    }
}

/// Interrupts that only end the idle `hlt`: the idle loop itself then reads the clock, the
/// pending Xen event bits or the SynIC message slot.
const WAKE_UP_VECTORS: [u8; 3] = [
    apic::TIMER_VECTOR,
    apic::EVENT_UPCALL_VECTOR,
    vmbus::VMBUS_VECTOR,
];

/// Called by the entry stubs with interrupts disabled.
#[unsafe(no_mangle)]
extern "C" fn ringbolt_trap(frame: &mut TrapFrame) {
    match frame.vector {
        v if u8::try_from(v).is_ok_and(|v| WAKE_UP_VECTORS.contains(&v)) => {
            apic::end_of_interrupt()
        }
        v if v == u64::from(apic::SPURIOUS_VECTOR) => {} // no EOI for spurious interrupts
        vector => {
            let cr2 = match (vector, try_platform()) {
                (14, Some(platform)) => platform.fault_address(),
                _ => 0,
            };
            panic!(
                "exception: {} (vector {}) error={:#x} rip={:#x} cr2={:#x}\n{}",
                exception_name(vector),
                vector,
                frame.error_code,
                frame.rip,
                cr2,
                frame
            );
        }
    }
}

// Entry stubs. `trap_stubs` is a table of their addresses indexed by position in VECTORS below.
core::arch::global_asm!(
    r#"
.macro TRAP_STUB vector, has_error_code
    .p2align 4
trap_stub_\vector:
    .if \has_error_code == 0
    push 0
    .endif
    push \vector
    jmp trap_common
// Xen PV: Xen's bounce frame has the interrupted %rcx and %r11 on top of the hardware frame.
xen_pv_trap_stub_\vector:
    pop rcx
    pop r11
    jmp trap_stub_\vector
.endm

.section .text
TRAP_STUB 0, 0
TRAP_STUB 1, 0
TRAP_STUB 2, 0
TRAP_STUB 3, 0
TRAP_STUB 4, 0
TRAP_STUB 5, 0
TRAP_STUB 6, 0
TRAP_STUB 7, 0
TRAP_STUB 8, 1
TRAP_STUB 9, 0
TRAP_STUB 10, 1
TRAP_STUB 11, 1
TRAP_STUB 12, 1
TRAP_STUB 13, 1
TRAP_STUB 14, 1
TRAP_STUB 16, 0
TRAP_STUB 17, 1
TRAP_STUB 18, 0
TRAP_STUB 19, 0
TRAP_STUB 20, 0
TRAP_STUB 21, 1
TRAP_STUB 28, 0
TRAP_STUB 29, 1
TRAP_STUB 30, 1
TRAP_STUB 48, 0
TRAP_STUB 50, 0
TRAP_STUB 243, 0
TRAP_STUB 255, 0

// Xen PV event upcall (HYPERVISOR_set_callbacks), delivered only while SCHEDOP_block has
// events unmasked. It records nothing (the idle loop scans the pending bits itself) and
// returns through HYPERVISOR_iret with RFLAGS.IF clear in the frame, which leaves events
// masked: the kernel's rule that events interrupt nothing but the idle wait holds on PV too.
.global xen_pv_event_callback
xen_pv_event_callback:
    pop rcx
    pop r11
    and qword ptr [rsp + 16], -0x201   // rip, cs, rflags: clear IF (bit 9)
    push 0                          // iret flags: not returning from a syscall
    jmp hypercall_page + {iret_entry}

// Xen PV failsafe callback: Xen could not reload a segment register on return to us. Fatal;
// reported like an exception, with {failsafe} as the vector.
.global xen_pv_failsafe_callback
xen_pv_failsafe_callback:
    pop rcx
    pop r11
    add rsp, 32                     // ds, es, fs, gs
    push 0
    push {failsafe}
    jmp trap_common

trap_common:
    push rax
    push rcx
    push rdx
    push rbx
    push rbp
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rdi, rsp
    cld
    call ringbolt_trap
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rbp
    pop rbx
    pop rdx
    pop rcx
    pop rax
    add rsp, 16
    iretq

.section .rodata
.p2align 3
.global trap_stubs
trap_stubs:
    .quad trap_stub_0, trap_stub_1, trap_stub_2, trap_stub_3, trap_stub_4, trap_stub_5
    .quad trap_stub_6, trap_stub_7, trap_stub_8, trap_stub_9, trap_stub_10, trap_stub_11
    .quad trap_stub_12, trap_stub_13, trap_stub_14, trap_stub_16, trap_stub_17, trap_stub_18
    .quad trap_stub_19, trap_stub_20, trap_stub_21, trap_stub_28, trap_stub_29, trap_stub_30
    .quad trap_stub_48, trap_stub_50, trap_stub_243, trap_stub_255
.global xen_pv_trap_stubs
xen_pv_trap_stubs:
    .quad xen_pv_trap_stub_0, xen_pv_trap_stub_1, xen_pv_trap_stub_2, xen_pv_trap_stub_3
    .quad xen_pv_trap_stub_4, xen_pv_trap_stub_5, xen_pv_trap_stub_6, xen_pv_trap_stub_7
    .quad xen_pv_trap_stub_8, xen_pv_trap_stub_9, xen_pv_trap_stub_10, xen_pv_trap_stub_11
    .quad xen_pv_trap_stub_12, xen_pv_trap_stub_13, xen_pv_trap_stub_14, xen_pv_trap_stub_16
    .quad xen_pv_trap_stub_17, xen_pv_trap_stub_18, xen_pv_trap_stub_19, xen_pv_trap_stub_20
    .quad xen_pv_trap_stub_21, xen_pv_trap_stub_28, xen_pv_trap_stub_29, xen_pv_trap_stub_30
    .quad xen_pv_trap_stub_48, xen_pv_trap_stub_50, xen_pv_trap_stub_243
    .quad xen_pv_trap_stub_255
.section .text
"#,
    iret_entry = const HYPERVISOR_IRET as usize * HYPERCALL_ENTRY_SIZE,
    failsafe = const XEN_PV_FAILSAFE,
);

/// The vectors `trap_stubs` covers, in table order. Must match the assembly above.
const VECTORS: [u8; 28] = [
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    12,
    13,
    14,
    16,
    17,
    18,
    19,
    20,
    21,
    28,
    29,
    30,
    apic::TIMER_VECTOR,
    vmbus::VMBUS_VECTOR,
    apic::EVENT_UPCALL_VECTOR,
    apic::SPURIOUS_VECTOR,
];

unsafe extern "C" {
    static trap_stubs: [u64; VECTORS.len()];
    static xen_pv_trap_stubs: [u64; VECTORS.len()];
    /// Entry points, not data: only their addresses are taken.
    static xen_pv_event_callback: u8;
    static xen_pv_failsafe_callback: u8;
}

/// The pseudo-vector `ringbolt_trap` sees for Xen PV's failsafe callback.
const XEN_PV_FAILSAFE: u64 = 0x100;

struct Tables {
    gdt: GlobalDescriptorTable,
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
}

static TSS: OnceCell<TaskStateSegment> = OnceCell::new();
static GDT: OnceCell<Tables> = OnceCell::new();
static IDT: OnceCell<InterruptDescriptorTable> = OnceCell::new();
static mut DOUBLE_FAULT_STACK: [u8; IST_STACK_SIZE] = [0; IST_STACK_SIZE];

/// Loads the kernel's GDT (with TSS) and IDT. Interrupts stay disabled.
pub(crate) fn init() {
    let tss = TSS.get_or_init(|| {
        let mut tss = TaskStateSegment::new();
        let stack = &raw const DOUBLE_FAULT_STACK;
        tss.interrupt_stack_table[usize::from(DOUBLE_FAULT_IST_INDEX)] =
            VirtAddr::from_ptr(stack) + IST_STACK_SIZE as u64;
        tss
    });
    let tables = GDT.get_or_init(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss = gdt.append(Descriptor::tss_segment(tss));
        Tables {
            gdt,
            code,
            data,
            tss,
        }
    });
    tables.gdt.load();
    // SAFETY: the selectors index descriptors of the GDT just loaded (static, so it outlives
    // every use): a 64-bit code segment, a flat data segment and an available TSS.
    unsafe {
        CS::set_reg(tables.code);
        SS::set_reg(tables.data);
        DS::set_reg(tables.data);
        ES::set_reg(tables.data);
        load_tss(tables.tss);
    }

    let idt = IDT.get_or_init(|| {
        let mut idt = InterruptDescriptorTable::new();
        for (index, &vector) in VECTORS.iter().enumerate() {
            // SAFETY: reading the linker-provided table of stub addresses, fully initialised
            // in .rodata.
            let stub = VirtAddr::new(unsafe { trap_stubs[index] });
            // SAFETY: every stub is a valid entry point for its vector: it saves all registers,
            // pushes the error code where the CPU does not, and returns with iretq.
            unsafe {
                match vector {
                    8 => {
                        idt.double_fault
                            .set_handler_addr(stub)
                            .set_stack_index(DOUBLE_FAULT_IST_INDEX);
                    }
                    10 => _ = idt.invalid_tss.set_handler_addr(stub),
                    11 => _ = idt.segment_not_present.set_handler_addr(stub),
                    12 => _ = idt.stack_segment_fault.set_handler_addr(stub),
                    13 => _ = idt.general_protection_fault.set_handler_addr(stub),
                    14 => _ = idt.page_fault.set_handler_addr(stub),
                    17 => _ = idt.alignment_check.set_handler_addr(stub),
                    18 => _ = idt.machine_check.set_handler_addr(stub),
                    21 => _ = idt.cp_protection_exception.set_handler_addr(stub),
                    29 => _ = idt.vmm_communication_exception.set_handler_addr(stub),
                    30 => _ = idt.security_exception.set_handler_addr(stub),
                    v => _ = idt[v].set_handler_addr(stub),
                }
            }
        }
        idt
    });
    idt.load();
}

/// Xen PV: registers the exception entry points with Xen (a ring-3 kernel has no IDT, GDT or
/// TSS of its own) and the event and failsafe callbacks. NMI and machine check come from Xen
/// by other means, a double fault kills the domain, and the APIC vectors do not exist here.
pub(crate) fn init_xen_pv() {
    let mut table = [TrapInfo::default(); VECTORS.len() + 1];
    let handled = VECTORS
        .iter()
        .enumerate()
        .filter(|&(_, &vector)| vector < 32 && !matches!(vector, 2 | 8 | 18));
    for (slot, (index, &vector)) in table.iter_mut().zip(handled) {
        // SAFETY: reading the linker-provided table of stub addresses, fully initialised in
        // .rodata.
        let address = unsafe { xen_pv_trap_stubs[index] };
        // Flags 0: not reachable by `int n`, and delivered with events masked.
        *slot = TrapInfo {
            vector,
            flags: 0,
            cs: FLAT_KERNEL_CS,
            address,
        };
    }
    // SAFETY: every entry names the PV stub for its vector, which pops Xen's %rcx/%r11 and
    // continues as the native stub; the table ends with zero entries.
    if let Err(e) = unsafe { xen::set_trap_table(&table) } {
        panic!("xen-pv: set_trap_table refused: {e:?}");
    }
    // SAFETY: the callbacks above expect exactly Xen's event and failsafe bounce frames.
    let registered = unsafe {
        xen::set_callbacks(
            &raw const xen_pv_event_callback as u64,
            &raw const xen_pv_failsafe_callback as u64,
        )
    };
    if let Err(e) = registered {
        panic!("xen-pv: set_callbacks refused: {e:?}");
    }
}
