//! The unit sets `MemoryDenyWriteExecute=yes`. systemd 252 enforces it with a
//! seccomp filter: `mmap` with PROT_WRITE|PROT_EXEC and any `mprotect` /
//! `pkey_mprotect` adding PROT_EXEC fail with EPERM. A JIT (some XNNPACK
//! builds had one) would then break inference. Here the real binary runs
//! the real runtime and model under the same filter, installed by the real
//! kernel before `exec`.

use crate::common;

use std::os::unix::process::CommandExt;
use std::process::Command;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64

/// systemd's MemoryDenyWriteExecute rules as a classic BPF program.
fn wx_filter() -> Vec<libc::sock_filter> {
    const LD_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const AND: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
    const RET: u16 = 0x06; // BPF_RET | BPF_K
    const ALLOW: u32 = 0x7fff_0000; // SECCOMP_RET_ALLOW
    const DENY: u32 = 0x0005_0000 | libc::EPERM as u32; // SECCOMP_RET_ERRNO
    const NR: u32 = 0; // offsets into struct seccomp_data
    const ARCH: u32 = 4;
    const ARG2_LOW: u32 = 16 + 2 * 8;
    let wx = (libc::PROT_WRITE | libc::PROT_EXEC) as u32;
    let x = libc::PROT_EXEC as u32;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    vec![
        /* 0 */ op(LD_ABS, 0, 0, ARCH),
        /* 1 */ op(JEQ, 0, 10, AUDIT_ARCH),
        /* 2 */ op(LD_ABS, 0, 0, NR),
        /* 3 */ op(JEQ, 2, 0, libc::SYS_mmap as u32),
        /* 4 */ op(JEQ, 4, 0, libc::SYS_mprotect as u32),
        /* 5 */ op(JEQ, 3, 6, libc::SYS_pkey_mprotect as u32),
        /* 6: mmap */ op(LD_ABS, 0, 0, ARG2_LOW),
        /* 7 */ op(AND, 0, 0, wx),
        /* 8 */ op(JEQ, 4, 3, wx),
        /* 9: mprotect */ op(LD_ABS, 0, 0, ARG2_LOW),
        /* 10 */ op(AND, 0, 0, x),
        /* 11 */ op(JEQ, 1, 0, x),
        /* 12 */ op(RET, 0, 0, ALLOW),
        /* 13 */ op(RET, 0, 0, DENY),
    ]
}

/// `cmd` with the W^X filter applied to the child just before `exec`.
fn deny_write_execute(cmd: &mut Command) -> &mut Command {
    let filter = wx_filter();
    // SAFETY: between fork and exec only async-signal-safe calls (prctl) run;
    // `filter` outlives them (it is moved into the closure).
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

#[test]
fn the_filter_refuses_writable_executable_memory() {
    // Control: a program that asks for W+X memory is refused under it.
    let py = "import mmap\ntry:\n    mmap.mmap(-1, 4096, prot=mmap.PROT_READ|mmap.PROT_WRITE|mmap.PROT_EXEC)\n    print('mapped')\nexcept PermissionError:\n    print('refused')\n";
    let out = deny_write_execute(Command::new("python3").args(["-c", py]))
        .output()
        .expect("python3 (scripts/setup needs it too)");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "refused");
    let out = Command::new("python3").args(["-c", py]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "mapped");
}

#[test]
fn detect_runs_under_memory_deny_write_execute() {
    let out = common::run(
        deny_write_execute(&mut common::bin())
            .args(["detect", "--json", "--threads", "2", "--model"])
            .arg(common::coco_model())
            .arg("--labels")
            .arg(common::coco_labels())
            .arg(common::photo("dog.jpg")),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    for label in ["\"dog\"", "\"bicycle\"", "\"car\""] {
        assert!(out.stdout.contains(label), "{label} missing: {}", out.stdout);
    }
}

#[test]
fn the_pipeline_runs_under_memory_deny_write_execute() {
    // bench: capture, XNNPACK on two threads, drawing, libjpeg-turbo encoding.
    let out = common::run(
        deny_write_execute(&mut common::bin())
            .args(["bench", "--frames", "6", "--threads", "2", "--json", "--source"])
            .arg(format!(
                "images:{}",
                common::root().join("tests/photos").display()
            ))
            .arg("--model")
            .arg(common::coco_model())
            .arg("--labels")
            .arg(common::coco_labels()),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("bench JSON");
    assert!(v["frames"].as_u64().unwrap() >= 6, "{v}");
}

/// Thread counts beyond the cores are capped with a warning, never fatal:
/// `detect --threads 100000` used to crash inside the runtime, and
/// `threads = 30` to panic on a low task limit.
#[test]
fn thread_counts_beyond_the_cores_are_capped() {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let out = common::run(
        common::bin()
            .args(["detect", "--json", "--threads", "100000", "--model"])
            .arg(common::coco_model())
            .arg("--labels")
            .arg(common::coco_labels())
            .arg(common::photo("dog.jpg")),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("\"dog\""), "{}", out.stdout);
    assert!(
        out.stderr
            .contains(&format!("--threads 100000 is more than the {cores} cores")),
        "{}",
        out.stderr
    );

    let photos = common::photo_dir(&["dog.jpg"]);
    let config = format!(
        "[source]\nuri = \"images:{}\"\nfps = 10.0\n[model]\npath = \"{}\"\nlabels = \"{}\"\nthreads = 30\nworkers = 30\n",
        photos.path().display(),
        common::coco_model().display(),
        common::coco_labels().display()
    );
    let d = common::daemon::start_until_dog(&config);
    assert_eq!(d.log_lines("model.threads = 30 is more than").len(), 1);
    assert_eq!(d.log_lines("model.workers = 30 is more than").len(), 1);
    // At most one interpreter and one thread each per core (fewer under a
    // task limit).
    let line = d.log_lines("inference: ").pop().expect("an inference line");
    let numbers: Vec<usize> = line
        .split("inference: ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let (workers, threads) = (numbers[0], numbers[1]);
    assert!(
        (1..=cores).contains(&workers) && (1..=cores).contains(&threads),
        "{line}"
    );
}
