//! File helpers: positioned reads, private files and directories, directory fsync.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

pub(super) fn ignore_not_found(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Whether a read may wait for the disk.
///
/// `Never` reads only what the kernel already holds in memory: on Linux, paths are looked up
/// with `openat2(RESOLVE_CACHED)` and data read with `preadv2(RWF_NOWAIT)`, which fail instead
/// of waiting. Whatever would wait fails with [`io::ErrorKind::WouldBlock`], for the caller
/// to do the whole read again on the blocking pool. Elsewhere `Never` always fails so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wait {
    Allowed,
    Never,
}

pub(super) fn would_block() -> io::Error {
    io::ErrorKind::WouldBlock.into()
}

pub(super) fn is_would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// Opens a file for reading.
pub(super) fn open_to_read(path: &Path, wait: Wait) -> io::Result<File> {
    match wait {
        Wait::Allowed => File::open(path),
        Wait::Never => no_wait::open(path, false),
    }
}

/// The metadata of a directory.
pub(super) fn dir_metadata(path: &Path, wait: Wait) -> io::Result<fs::Metadata> {
    match wait {
        Wait::Allowed => fs::metadata(path),
        // An `O_PATH` descriptor's metadata is the in-memory inode's: no disk read.
        Wait::Never => no_wait::open(path, true)?.metadata(),
    }
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64, wait: Wait) -> io::Result<usize> {
    match wait {
        Wait::Allowed => std::os::unix::fs::FileExt::read_at(file, buf, offset),
        Wait::Never => no_wait::read_at(file, buf, offset),
    }
}

#[cfg(windows)]
fn read_at(file: &File, buf: &mut [u8], offset: u64, wait: Wait) -> io::Result<usize> {
    match wait {
        Wait::Allowed => std::os::windows::fs::FileExt::seek_read(file, buf, offset),
        Wait::Never => Err(would_block()),
    }
}

/// Reads that never wait for the disk (see [`Wait::Never`]).
#[cfg(target_os = "linux")]
mod no_wait {
    use std::fs::File;
    use std::io;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};

    use rustix::fs::{openat2, Mode, OFlags, ResolveFlags, CWD};
    use rustix::io::{preadv2, Errno, ReadWriteFlags};

    use super::would_block;

    /// Cleared for good when the kernel or the filesystem lacks a call or flag (Linux before
    /// 5.12, a seccomp filter, a filesystem without `RWF_NOWAIT`): every read then goes to the
    /// blocking pool.
    static SUPPORTED: AtomicBool = AtomicBool::new(true);

    /// Any failure but "no such file" is left for the blocking read to meet and report.
    fn fail(e: Errno) -> io::Error {
        if matches!(
            e,
            Errno::NOSYS | Errno::INVAL | Errno::PERM | Errno::OPNOTSUPP
        ) {
            SUPPORTED.store(false, Ordering::Relaxed);
        }
        if e == Errno::NOENT {
            return io::ErrorKind::NotFound.into();
        }
        would_block()
    }

    pub(super) fn open(path: &Path, dir: bool) -> io::Result<File> {
        if !SUPPORTED.load(Ordering::Relaxed) {
            return Err(would_block());
        }
        let flags = if dir {
            OFlags::PATH | OFlags::DIRECTORY
        } else {
            OFlags::RDONLY
        };
        let resolve = ResolveFlags::CACHED;
        match openat2(CWD, path, flags | OFlags::CLOEXEC, Mode::empty(), resolve) {
            Ok(fd) => Ok(File::from(fd)),
            Err(e) => Err(fail(e)),
        }
    }

    pub(super) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut bufs = [io::IoSliceMut::new(buf)];
        preadv2(file, &mut bufs, offset, ReadWriteFlags::NOWAIT).map_err(fail)
    }
}

#[cfg(not(target_os = "linux"))]
mod no_wait {
    use std::fs::File;
    use std::io;
    use std::path::Path;

    use super::would_block;

    pub(super) fn open(_: &Path, _: bool) -> io::Result<File> {
        Err(would_block())
    }

    #[cfg(unix)]
    pub(super) fn read_at(_: &File, _: &mut [u8], _: u64) -> io::Result<usize> {
        Err(would_block())
    }
}

/// Fills `buf` from `offset`, stopping early only at the end of the file. Returns the count.
pub(super) fn read_full_at(
    file: &File,
    buf: &mut [u8],
    offset: u64,
    wait: Wait,
) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match read_at(file, &mut buf[filled..], offset + filled as u64, wait) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

pub(super) fn read_exact_at(
    file: &File,
    buf: &mut [u8],
    offset: u64,
    wait: Wait,
) -> io::Result<()> {
    if read_full_at(file, buf, offset, wait)? == buf.len() {
        Ok(())
    } else {
        Err(io::ErrorKind::UnexpectedEof.into())
    }
}

/// Options that create a new file readable and writable by its owner only: cached responses
/// may hold one user's data, and other local users must not read them.
pub(super) fn private_file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Creates a directory and its parents, those it creates accessible by their owner only.
pub(super) fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Whether `path` still names the file whose metadata is `opened`.
pub(super) fn still_names(path: &Path, opened: &fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(path).is_ok_and(|now| now.ino() == opened.ino() && now.dev() == opened.dev())
    }
    #[cfg(not(unix))]
    {
        let _ = (path, opened);
        true
    }
}

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    // Directories cannot be opened as files on Windows; the rename is durable there anyway
    // once the file is.
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    let _ = dir;
    Ok(())
}
