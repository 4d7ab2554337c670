//! A small filesystem that can be filled: a tmpfs with a size limit,
//! mounted on a directory (these machines are root), unmounted on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it: `16m`) on
    /// `dir`, made first.
    pub fn mount(dir: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).expect("mount point");
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("run mount")
            .success();
        assert!(ok, "mounting a tmpfs on {} needs root", dir.display());
        SmallDisk {
            dir: dir.to_path_buf(),
        }
    }

    /// Fills what is left with one file, whose path is returned; removing
    /// it frees the space again.
    pub fn fill(&self) -> PathBuf {
        let filler = self.dir.join("filler.tmp");
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=4k", "status=none"])
            .arg(format!("of={}", filler.display()))
            .stderr(Stdio::null())
            .status();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}
