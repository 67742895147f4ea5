# Atomic file replacement for the run folder: a reader (vaelab following a run) sees the old file or
# the new one, never half of one. Not a locking scheme: one writer per file is assumed.
import os


def write_file_atomically(path, data: bytes):
    """Writes data to a temporary file beside path, fsyncs it, renames it over path and fsyncs the
    folder, so the rename itself survives a crash."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
