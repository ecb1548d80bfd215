//! Data an install puts beside the binary. `PREFIX/bin/edgevision` finds
//! `PREFIX/share/edgevision/models/...` (what `install.sh` and the `.deb`
//! install), as it finds `PREFIX/lib/edgevision/libLiteRt.so`, so the
//! default model and labels work from any directory.

use std::path::{Path, PathBuf};

/// `rel` (e.g. `models/coco_labels.txt`) in the install's data directory,
/// when the running binary is `PREFIX/bin/edgevision` and the file is there.
pub fn installed_data(rel: &Path) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let prefix = exe.parent()?.parent()?;
    let p = prefix.join("share/edgevision").join(rel);
    p.is_file().then_some(p)
}

/// `p` as given when it is absolute, empty or exists from the working
/// directory; else the installed copy of it, if there is one.
pub fn locate(p: &Path) -> PathBuf {
    if p.as_os_str().is_empty() || p.is_absolute() || p.exists() {
        return p.to_path_buf();
    }
    installed_data(p).unwrap_or_else(|| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_and_absolute_paths_stay() {
        assert_eq!(locate(Path::new("")), PathBuf::new());
        assert_eq!(locate(Path::new("/no/such/file")), PathBuf::from("/no/such/file"));
        assert_eq!(locate(Path::new("Cargo.toml")), PathBuf::from("Cargo.toml"));
        // The test binary is in target/debug/deps: no share/edgevision there.
        assert_eq!(
            locate(Path::new("models/nope.tflite")),
            PathBuf::from("models/nope.tflite")
        );
    }
}
