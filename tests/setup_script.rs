//! `scripts/setup.sh` counts libclang as present only where clang-sys (which bindgen
//! uses to load it at build time) would find it, together with clang's resource headers.
//!
//! Each test builds a fake file tree in its own temporary directory and runs the script
//! in dry-run mode with `CTXSTORE_SETUP_ROOT` pointing at it, so nothing here depends on
//! what this machine has installed. Files are empty: the script checks names, not
//! contents.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup.sh")
}

/// A fake root file system.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Self {
        Tree {
            dir: tempfile::tempdir().expect("create temp dir"),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn parent_dirs(&self, rel: &str) -> PathBuf {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create parent dirs");
        }
        path
    }

    /// Creates an empty file (and its parent directories).
    fn file(&self, rel: &str) -> &Self {
        fs::write(self.parent_dirs(rel), b"").expect("write file");
        self
    }

    /// Creates a symlink at `rel` pointing to `target` (relative to the link's dir).
    fn symlink(&self, rel: &str, target: &str) -> &Self {
        std::os::unix::fs::symlink(target, self.parent_dirs(rel)).expect("create symlink");
        self
    }

    /// Creates an executable file (a command the script looks for).
    fn executable(&self, rel: &str) -> &Self {
        use std::os::unix::fs::PermissionsExt;
        let path = self.parent_dirs(rel);
        fs::write(&path, b"#!/bin/sh\n").expect("write executable");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        self
    }

    /// Runs `bash scripts/setup.sh` in dry-run mode over this tree.
    fn check(&self) -> Outcome {
        self.run(&[], true)
    }

    fn run(&self, args: &[&str], dry_run_env: bool) -> Outcome {
        let mut cmd = Command::new("bash");
        cmd.arg(script())
            .args(args)
            .env("CTXSTORE_SETUP_ROOT", self.dir.path())
            .env_remove("CTXSTORE_SETUP_DRY_RUN")
            .env_remove("LIBCLANG_PATH")
            .env_remove("LLVM_CONFIG_PATH")
            .env_remove("LIBRARY_PATH");
        if dry_run_env {
            cmd.env("CTXSTORE_SETUP_DRY_RUN", "1");
        }
        let out = cmd.output().expect("run bash scripts/setup.sh");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "setup.sh failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        );
        Outcome { stdout }
    }
}

/// What a dry run printed.
struct Outcome {
    stdout: String,
}

impl Outcome {
    /// The packages on the final `setup: would install ...` line (empty for
    /// `setup: nothing to install`).
    fn would_install(&self) -> Vec<&str> {
        let decisions: Vec<&str> = self
            .stdout
            .lines()
            .filter(|l| l.starts_with("setup: would install ") || *l == "setup: nothing to install")
            .collect();
        assert_eq!(
            decisions.len(),
            1,
            "expected exactly one decision line:\n{}",
            self.stdout
        );
        match decisions[0].strip_prefix("setup: would install ") {
            Some(packages) => packages.split_whitespace().collect(),
            None => Vec::new(),
        }
    }

    fn installs_libclang(&self) -> bool {
        self.would_install().contains(&"libclang-dev")
    }

    /// The line reporting the libclang check.
    fn libclang_line(&self) -> &str {
        self.stdout
            .lines()
            .find(|l| l.starts_with("setup: libclang: "))
            .unwrap_or_else(|| panic!("no libclang line:\n{}", self.stdout))
    }

    fn assert_libclang_ok(&self) {
        assert!(
            !self.installs_libclang(),
            "libclang-dev should not be needed:\n{}",
            self.stdout
        );
        assert!(
            self.libclang_line().starts_with("setup: libclang: ok: "),
            "{}",
            self.stdout
        );
    }

    fn assert_installs_libclang(&self) {
        assert!(
            self.installs_libclang(),
            "libclang-dev should be installed:\n{}",
            self.stdout
        );
        assert!(
            self.libclang_line()
                .starts_with("setup: libclang: missing: "),
            "{}",
            self.stdout
        );
    }
}

const LLVM14_HEADERS: &str = "usr/lib/llvm-14/lib/clang/14.0.6/include/stddef.h";

/// The situation from the issue: llvm-14 pulls in libclang-cpp14, whose
/// libclang-cpp.so.14 is clang's C++ API, not libclang; clang-sys ignores it.
#[test]
fn libclang_cpp_alone_is_not_libclang() {
    let tree = Tree::new();
    tree.file("usr/lib/llvm-14/lib/libclang-cpp.so.14");
    let out = tree.check();
    out.assert_installs_libclang();
}

#[test]
fn libclang_cpp_with_headers_is_still_not_libclang() {
    let tree = Tree::new();
    tree.file("usr/lib/llvm-14/lib/libclang-cpp.so.14")
        .symlink(
            "usr/lib/x86_64-linux-gnu/libclang-cpp.so.14",
            "../llvm-14/lib/libclang-cpp.so.14",
        )
        .file(LLVM14_HEADERS);
    tree.check().assert_installs_libclang();
}

#[test]
fn libclang_so_1_in_llvm_dir_with_headers_is_enough() {
    let tree = Tree::new();
    tree.file("usr/lib/llvm-14/lib/libclang.so.1")
        .file(LLVM14_HEADERS);
    let out = tree.check();
    out.assert_libclang_ok();
    assert!(
        out.libclang_line()
            .contains("usr/lib/llvm-14/lib/libclang.so.1"),
        "{}",
        out.stdout
    );
}

#[test]
fn versioned_libclang_in_multiarch_dir_with_headers_is_enough() {
    let tree = Tree::new();
    tree.file("usr/lib/x86_64-linux-gnu/libclang-14.so.14")
        .file(LLVM14_HEADERS);
    tree.check().assert_libclang_ok();
}

/// Without clang's stddef.h bindgen fails on rocksdb/c.h, so libclang alone is not
/// enough (Debian ships the headers in libclang-common-N-dev).
#[test]
fn libclang_without_resource_headers_is_not_enough() {
    let tree = Tree::new();
    tree.file("usr/lib/llvm-14/lib/libclang.so.1");
    let out = tree.check();
    out.assert_installs_libclang();
    assert!(out.libclang_line().contains("headers"), "{}", out.stdout);
}

#[test]
fn empty_resource_header_dir_is_not_enough() {
    let tree = Tree::new();
    tree.file("usr/lib/llvm-14/lib/libclang.so.1");
    fs::create_dir_all(tree.path("usr/lib/llvm-14/lib/clang/14.0.6/include"))
        .expect("create include dir");
    tree.check().assert_installs_libclang();
}

/// A fake root's commands are looked for in its own bin dirs, so the whole answer is
/// known here.
#[test]
fn empty_tree_needs_everything() {
    let tree = Tree::new();
    let out = tree.check();
    out.assert_installs_libclang();
    assert_eq!(
        out.would_install(),
        ["libclang-dev", "g++", "make"],
        "{}",
        out.stdout
    );
}

/// clang-sys cannot load a symlink whose target is missing.
#[test]
fn dangling_libclang_symlink_does_not_count() {
    let tree = Tree::new();
    tree.symlink(
        "usr/lib/llvm-14/lib/libclang.so.1",
        "../../x86_64-linux-gnu/libclang-14.so.1",
    )
    .file(LLVM14_HEADERS);
    tree.check().assert_installs_libclang();
}

/// The files Debian 12's libclang1-14 and libclang-common-14-dev install (symlink
/// chains included), next to libclang-cpp14's.
#[test]
fn debian_libclang1_and_common_dev_layout_is_enough() {
    let tree = Tree::new();
    tree.file("usr/lib/x86_64-linux-gnu/libclang-14.so.14.0.6")
        .symlink(
            "usr/lib/x86_64-linux-gnu/libclang-14.so.13",
            "libclang-14.so.14.0.6",
        )
        .symlink(
            "usr/lib/x86_64-linux-gnu/libclang-14.so.1",
            "libclang-14.so.13",
        )
        .symlink(
            "usr/lib/llvm-14/lib/libclang-14.so.1",
            "../../x86_64-linux-gnu/libclang-14.so.1",
        )
        .symlink("usr/lib/llvm-14/lib/libclang.so.1", "libclang-14.so.1")
        .file("usr/lib/llvm-14/lib/libclang-cpp.so.14")
        .file(LLVM14_HEADERS)
        .symlink(
            "usr/lib/clang/14/include",
            "../../llvm-14/lib/clang/14.0.6/include",
        );
    tree.check().assert_libclang_ok();
}

/// Fedora-style: /usr/lib64/libclang.so.N with headers in /usr/lib64/clang/N/include.
#[test]
fn lib64_libclang_with_lib64_headers_is_enough() {
    let tree = Tree::new();
    tree.file("usr/lib64/libclang.so.18.1")
        .file("usr/lib64/clang/18/include/stddef.h");
    tree.check().assert_libclang_ok();
}

/// A self-built LLVM under /usr/local/llvmN, headers next to the library.
#[test]
fn usr_local_llvm_with_headers_is_enough() {
    let tree = Tree::new();
    tree.file("usr/local/llvm18/lib/libclang.so")
        .file("usr/local/llvm18/lib/clang/18/include/stddef.h");
    tree.check().assert_libclang_ok();
}

/// Everything present: nothing to install. Uses `--check` instead of the environment
/// variable.
#[test]
fn complete_tree_needs_nothing_with_check_flag() {
    let tree = Tree::new();
    tree.file("usr/lib/llvm-14/lib/libclang.so.1")
        .file(LLVM14_HEADERS)
        .executable("usr/bin/c++")
        .executable("usr/bin/make");
    let out = tree.run(&["--check"], false);
    out.assert_libclang_ok();
    assert!(out.would_install().is_empty(), "{}", out.stdout);
    assert!(
        out.stdout.lines().any(|l| l == "setup: nothing to install"),
        "{}",
        out.stdout
    );
}
