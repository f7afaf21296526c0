//! `xen/include/public/hvm/`: what HVM and PVH guests ask of the hypervisor.

pub mod hvm_op;
pub mod params;
