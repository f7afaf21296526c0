//! `xen/include/public/version.h`: `HYPERVISOR_xen_version` commands.

/// Returns `major << 16 | minor`; argument null.
pub const XENVER_VERSION: u32 = 0;
/// Argument a 16-byte buffer for the extra version string (e.g. ".2-pre").
pub const XENVER_EXTRAVERSION: u32 = 1;
/// Argument a `xen_feature_info` (`submap_idx`, `submap`) for the `XENFEAT_*` bits.
pub const XENVER_GET_FEATURES: u32 = 6;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_match_the_header() {
        assert_eq!(
            (XENVER_VERSION, XENVER_EXTRAVERSION, XENVER_GET_FEATURES),
            (0, 1, 6)
        );
    }
}
