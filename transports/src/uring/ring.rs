//! Ring setup and the availability probe.

use std::sync::OnceLock;

use io_uring::{cqueue, opcode, squeue, IoUring, Probe};

/// The ring type: plain 64-byte SQEs and 16-byte CQEs.
pub(super) type Ring = IoUring<squeue::Entry, cqueue::Entry>;

/// Submission queue depth. The completion queue is larger because a multishot accept and many
/// connections can complete far more than one batch of submissions.
const SQ_ENTRIES: u32 = 1024;
const CQ_ENTRIES: u32 = 8192;

/// A new ring and whether it runs with `DEFER_TASKRUN` (which needs `SINGLE_ISSUER`).
///
/// `DEFER_TASKRUN` runs completion work only when this thread enters the kernel, so it must
/// only be used from the creating thread: the reactor is `!Send`, which guarantees that.
pub(super) fn build() -> std::io::Result<(Ring, bool)> {
    let attempt = Ring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_taskrun_flag()
        .setup_cqsize(CQ_ENTRIES)
        .build(SQ_ENTRIES);
    match attempt {
        Ok(ring) => Ok((ring, true)),
        Err(e) => {
            tracing::debug!(error = %e, "DEFER_TASKRUN unsupported, trying COOP_TASKRUN");
            let ring = Ring::builder()
                .setup_coop_taskrun()
                .setup_taskrun_flag()
                .setup_cqsize(CQ_ENTRIES)
                .build(SQ_ENTRIES)
                .or_else(|_| Ring::builder().setup_cqsize(CQ_ENTRIES).build(SQ_ENTRIES))?;
            Ok((ring, false))
        }
    }
}

/// Whether io_uring can run this backend here: the syscalls are allowed, the ring has the
/// features we rely on, and every opcode we issue is known. Cached for the process.
pub(crate) fn probe() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE.get_or_init(probe_uncached).clone()
}

fn probe_uncached() -> Result<(), String> {
    let ring = Ring::new(8).map_err(|e| format!("io_uring_setup failed: {e}"))?;
    let params = ring.params();
    if !params.is_feature_ext_arg() {
        return Err("kernel lacks IORING_FEAT_EXT_ARG (needs Linux 5.11+)".into());
    }
    if !params.is_feature_nodrop() {
        return Err("kernel lacks IORING_FEAT_NODROP".into());
    }
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("IORING_REGISTER_PROBE failed: {e}"))?;
    let needed = [
        ("ACCEPT", opcode::AcceptMulti::CODE),
        ("CONNECT", opcode::Connect::CODE),
        ("RECV", opcode::Recv::CODE),
        ("SEND", opcode::Send::CODE),
        ("SENDMSG", opcode::SendMsg::CODE),
        ("SHUTDOWN", opcode::Shutdown::CODE),
        ("ASYNC_CANCEL", opcode::AsyncCancel2::CODE),
        ("READ", opcode::Read::CODE),
        // SOCKET arrived in 5.19 together with multishot accept and fd-wide cancel.
        ("SOCKET", opcode::Socket::CODE),
    ];
    for (name, code) in needed {
        if !probe.is_supported(code) {
            return Err(format!(
                "io_uring opcode {name} unsupported (needs Linux 5.19+)"
            ));
        }
    }
    Ok(())
}

/// Optional io_uring features this kernel offers beyond what [`probe`] requires.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Features {
    /// `IORING_OP_SEND_ZC` (Linux 6.0). Multishot receive (`IORING_RECV_MULTISHOT`) arrived
    /// in the same release and has no opcode of its own to probe, so this stands for it too.
    pub(super) send_zc: bool,
    /// `IORING_OP_SENDMSG_ZC` (Linux 6.1).
    pub(super) sendmsg_zc: bool,
    /// `IORING_OP_LINK_TIMEOUT` (Linux 5.5).
    pub(super) link_timeout: bool,
}

/// Probes `ring`'s kernel for the optional opcodes.
pub(super) fn features(ring: &Ring) -> Features {
    let mut probe = Probe::new();
    if let Err(e) = ring.submitter().register_probe(&mut probe) {
        tracing::debug!(error = %e, "IORING_REGISTER_PROBE failed; no optional features");
        return Features::default();
    }
    Features {
        send_zc: probe.is_supported(opcode::SendZc::CODE),
        sendmsg_zc: probe.is_supported(opcode::SendMsgZc::CODE),
        link_timeout: probe.is_supported(opcode::LinkTimeout::CODE),
    }
}
