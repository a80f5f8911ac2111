//! Moving upload bytes from a socket into a file inside the kernel:
//! `splice(2)` socket -> pipe, then pipe -> file. The bytes are never copied
//! into our memory, and one pair of system calls moves up to a pipe's worth
//! (1 MiB here) where a read/write loop needs a pair per buffer.
//!
//! Linux only, like `sendfile` for downloads. Thin wrappers over libc, since
//! rustix's `pipe` feature is not enabled in this build (turning it on would
//! change the rustix every wasmtime crate shares and rebuild all of them).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// The pipe capacity asked for. Linux caps it at `/proc/sys/fs/pipe-max-size`
/// (1 MiB by default); a refusal leaves the default 64 KiB.
const PIPE_CAPACITY: usize = 1 << 20;

/// A pipe used as the kernel-side buffer of a splice.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes it can hold.
    capacity: usize,
}

impl Pipe {
    pub fn new() -> io::Result<Pipe> {
        let mut fds = [0i32; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and ours alone.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: F_SETPIPE_SZ on a pipe we own; the result is checked.
        let set = unsafe {
            libc::fcntl(
                write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                PIPE_CAPACITY as libc::c_int,
            )
        };
        let capacity = if set > 0 { set as usize } else { 64 << 10 };
        Ok(Pipe {
            read,
            write,
            capacity,
        })
    }

    /// Bytes the pipe holds at most; a splice into it asks for this many.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Moves up to `max` bytes (at most [`Self::capacity`]) from a socket
    /// into the pipe, which must be empty, without blocking. `Ok(0)` is the
    /// end of the data; `WouldBlock` means nothing has arrived yet.
    pub fn fill_from(&self, socket: BorrowedFd<'_>, max: usize) -> io::Result<usize> {
        splice(
            socket,
            None,
            self.write.as_fd(),
            None,
            max.clamp(1, self.capacity),
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    }

    /// Moves exactly `len` bytes (what the last [`Self::fill_from`] put in)
    /// from the pipe into `file` at `*offset`, advancing it. Blocks on the
    /// file like a `pwrite` would.
    pub fn drain_into(
        &self,
        file: BorrowedFd<'_>,
        offset: &mut u64,
        mut len: usize,
    ) -> io::Result<()> {
        while len > 0 {
            let mut at = i64::try_from(*offset).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "file offset too large")
            })?;
            let moved = splice(
                self.read.as_fd(),
                None,
                file,
                Some(&mut at),
                len,
                libc::SPLICE_F_MOVE,
            )?;
            if moved == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the file took no bytes",
                ));
            }
            *offset += moved as u64;
            len -= moved;
        }
        Ok(())
    }
}

fn splice(
    from: BorrowedFd<'_>,
    from_offset: Option<&mut i64>,
    to: BorrowedFd<'_>,
    mut to_offset: Option<&mut i64>,
    len: usize,
    flags: libc::c_uint,
) -> io::Result<usize> {
    let from_offset = from_offset.map_or(std::ptr::null_mut(), |o| o as *mut i64);
    loop {
        let to_ptr = to_offset
            .as_deref_mut()
            .map_or(std::ptr::null_mut(), |o| o as *mut i64);
        // SAFETY: both descriptors are borrowed for the call; the offset
        // pointers are null or point to live i64s we hold exclusively.
        let n = unsafe {
            libc::splice(
                from.as_raw_fd(),
                from_offset,
                to.as_raw_fd(),
                to_ptr,
                len,
                flags,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::FileExt;

    /// Blocks until `socket` has data or its end (what tokio's readiness does
    /// for the real transfer).
    fn wait_readable(socket: &impl AsFd) {
        let mut poll = libc::pollfd {
            fd: socket.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let rc = unsafe { libc::poll(&mut poll, 1, 10_000) };
        assert_eq!(rc, 1, "socket not readable within 10 s");
    }

    /// Bytes written to one end of a socket pair arrive in the file at the
    /// offset asked for, across more than one pipe's worth, and the end of the
    /// data reads as 0.
    #[test]
    fn socket_to_file_through_the_pipe() {
        let (mut tx, rx) = std::os::unix::net::UnixStream::pair().unwrap();
        let pipe = Pipe::new().unwrap();
        assert!(pipe.capacity() >= 4096);
        let data: Vec<u8> = (0..3 * pipe.capacity() + 123)
            .map(|i| (i % 253) as u8)
            .collect();
        let sent = data.clone();
        let writer = std::thread::spawn(move || tx.write_all(&sent).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::options()
            .create(true)
            .read(true)
            .write(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        file.write_all_at(b"head", 0).unwrap();
        let mut offset = 4u64;
        loop {
            let n = match pipe.fill_from(rx.as_fd(), usize::MAX) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_readable(&rx);
                    continue;
                }
                Err(e) => panic!("splice from the socket: {e}"),
            };
            pipe.drain_into(file.as_fd(), &mut offset, n).unwrap();
        }
        writer.join().unwrap();
        assert_eq!(offset, 4 + data.len() as u64);
        let mut content = Vec::new();
        (&file).read_to_end(&mut content).unwrap();
        assert_eq!(&content[..4], b"head");
        assert_eq!(&content[4..], &data[..]);
    }
}
