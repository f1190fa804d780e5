"""A FIFO of byte records on disk, in go-diskqueue's format, so Go nsqd and nsqtx share data dirs.

Files: ``<name>.diskqueue.<6-digit n>.dat`` holding records ``[4-byte big-endian length][data]``; a new
file once one would pass ``max_bytes_per_file``; ``<name>.diskqueue.meta.dat`` holding
``depth\\nreadFileNum,readPos\\nwriteFileNum,writePos\\n``.

It runs on the reactor thread and never waits there for a disk: a write is one ``os.write`` per batch
(so an acknowledged record is in the kernel before the ``OK``, and survives a crash of the process),
reads go through a buffer refilled in bounded chunks, and what may block (fsync every ``sync_every``
records or after ``sync_timeout``, replacing the metadata file, removing files) is a job of its
:class:`~nsqtx.disk_worker.IDiskWorker`, the queue's jobs one after another. A sync records the
positions of when it began. With ``sync_every`` 1 a write is synced before ``put`` returns, on the
calling thread, as the README promises. Unlike go-diskqueue, start-up also recovers complete records
written after the last metadata sync instead of skipping them; a torn last record is cut off.
"""
from __future__ import annotations

import io
import os
import re

from twisted.internet import defer

from nsqtx.batch import RECORD_LENGTH, Batch
from nsqtx.disk_worker import InlineWorker
from nsqtx.files import remove_file, replace_file
from nsqtx.log import NSQLogger

log = NSQLogger()

_unpack_length = RECORD_LENGTH.unpack_from
_META = re.compile(rb"(-?\d+)\n(\d+),(\d+)\n(\d+),(\d+)\n?\Z")
READ_CHUNK = 1 << 20
#: the read buffer while no file is being read
_NO_BUFFER = (b"", memoryview(b""))
#: what a data file is renamed to once it is done with (fully read, emptied or deleted), so that
#: removing it in the background never meets a new file of its name
DONE_SUFFIX = ".done"


class DiskQueue:
    def __init__(self, name: str, data_path: str, max_bytes_per_file: int, min_msg_size: int,
                 max_msg_size: int, sync_every: int, sync_timeout: float, clock, worker=None):
        self.name = name
        self.data_path = data_path
        self.max_bytes_per_file = max_bytes_per_file
        self.min_msg_size = min_msg_size
        self.max_msg_size = max_msg_size
        self.sync_every = sync_every
        self.sync_timeout = sync_timeout
        self.clock = clock
        #: runs syncs and removals; the queue's jobs are keyed by its metadata file
        self._worker = worker if worker is not None else InlineWorker()
        self._key = self.meta_file_name()
        #: while a sync job of ours is under way, and whether another was asked for meanwhile
        self._syncing = False
        self._sync_again = False
        self.depth = 0
        self.read_file_num = 0
        self.read_pos = 0
        self.write_file_num = 0
        self.write_pos = 0
        self._write_fd = None
        #: the data file being read (unbuffered)
        self._read_file = None
        #: the read file's readable end: its size if earlier than the write file, else write_pos
        self._read_end = 0
        #: the read buffer, reused from one refill to the next while a file is read: its first
        #: _rlen bytes are the read file's from _rbuf_start
        self._rbuf, self._rview = _NO_BUFFER
        self._rlen = 0
        self._rbuf_start = 0
        self._unsynced = 0
        self._dirty = False
        self._sync_timer = None
        self.closed = False
        #: set by delete(): a sync job still under way must not write the metadata file again
        self.deleted = False
        self._load()

    def __repr__(self) -> str:
        return "<DiskQueue %s depth=%d>" % (self.name, self.depth)

    # -- file names

    def file_name(self, num: int) -> str:
        return os.path.join(self.data_path, "%s.diskqueue.%06d.dat" % (self.name, num))

    def meta_file_name(self) -> str:
        return os.path.join(self.data_path, "%s.diskqueue.meta.dat" % (self.name,))

    def _file_nums(self):
        pattern = re.compile(re.escape(self.name) + r"\.diskqueue\.(\d{6,})\.dat\Z")
        try:
            names = os.listdir(self.data_path or ".")
        except OSError:
            return []
        return sorted(int(m.group(1)) for m in map(pattern.match, names) if m)

    def _remove_done_files(self) -> None:
        """Files whose removal a stop or crash cut short."""
        pattern = re.compile(re.escape(self.name) + r"\.diskqueue\.(\d{6,}|meta)\.dat" + re.escape(DONE_SUFFIX) + r"\Z")
        try:
            names = os.listdir(self.data_path or ".")
        except OSError:
            return
        for name in names:
            if pattern.match(name):
                path = os.path.join(self.data_path, name)
                self._worker.submit(path, remove_file, path)

    # -- start-up

    def _load(self) -> None:
        self._remove_done_files()
        meta = self._read_meta()
        nums = self._file_nums()
        if meta is None:
            if nums:
                # No (readable) metadata but data files: a crash before the first sync, or a
                # damaged meta file. Everything from the oldest file on is recounted.
                self.read_file_num = nums[0]
                self.write_file_num = nums[0]
                self._recount(nums)
            return
        self.depth, self.read_file_num, self.read_pos, self.write_file_num, self.write_pos = meta
        later = [n for n in nums if n > self.write_file_num]
        size = self._size(self.write_file_num)
        if later or size != self.write_pos:
            self._recover_tail(size, later)

    def _read_meta(self):
        try:
            with open(self.meta_file_name(), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as err:
            log.error("DISKQUEUE({name}) failed to retrieveMetaData - {err}", name=self.name, err=err)
            return None
        m = _META.match(data)
        if m is None:
            log.error("DISKQUEUE({name}) unreadable metadata {data!r}: recounting from the data files",
                      name=self.name, data=data[:100])
            return None
        return tuple(int(g) for g in m.groups())

    def _size(self, num: int) -> int:
        try:
            return os.path.getsize(self.file_name(num))
        except OSError:
            return 0

    def _recover_tail(self, size: int, later) -> None:
        """Records past the synced write position: keep the complete ones, cut a torn one off."""
        if size < self.write_pos:
            log.error("DISKQUEUE({name}) {file} is shorter ({size}) than its metadata says ({pos}): recounting",
                      name=self.name, file=self.file_name(self.write_file_num), size=size, pos=self.write_pos)
            self._recount(self._file_nums())
            return
        for num in [self.write_file_num] + list(later):
            if num != self.write_file_num:
                self.write_file_num = num
                self.write_pos = 0
            end, count = self._scan(num, self.write_pos)
            if count or end != self._size(num):
                log.warn("DISKQUEUE({name}) recovered {count} records written after the last sync of {file}",
                         name=self.name, count=count, file=self.file_name(num))
            self.depth += count
            self.write_pos = end
        self._dirty = True

    def _recount(self, nums) -> None:
        """Rebuild depth and write position by reading every record from the read position on."""
        self.depth = 0
        start = self.read_pos
        for num in nums:
            if num < self.read_file_num:
                continue
            end, count = self._scan(num, start if num == self.read_file_num else 0)
            self.depth += count
            self.write_file_num = num
            self.write_pos = end
        self._dirty = True

    def _scan(self, num: int, pos: int):
        """Count the complete, plausible records of file `num` from `pos`; truncate the rest away."""
        path = self.file_name(num)
        count = 0
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return pos, 0
        try:
            size = os.fstat(fd).st_size
            buf = b""
            buf_start = pos
            while True:
                idx = pos - buf_start
                if len(buf) - idx < 4:
                    buf, buf_start = self._pread_more(fd, buf, idx, pos, 4)
                    idx = 0
                if len(buf) - idx < 4:
                    break
                length = _unpack_length(buf, idx)[0]
                if length < self.min_msg_size or length > self.max_msg_size:
                    break
                if len(buf) - idx < 4 + length:
                    buf, buf_start = self._pread_more(fd, buf, idx, pos, 4 + length)
                    idx = 0
                    if len(buf) < 4 + length:
                        break
                pos += 4 + length
                count += 1
            if pos < size:
                log.error("DISKQUEUE({name}) {file}: dropping {n} bytes of torn or invalid data at offset {pos}",
                          name=self.name, file=path, n=size - pos, pos=pos)
                os.ftruncate(fd, pos)
                os.fsync(fd)
        finally:
            os.close(fd)
        return pos, count

    @staticmethod
    def _pread_more(fd, buf, idx, pos, need):
        rest = buf[idx:]
        chunk = os.pread(fd, max(READ_CHUNK, need), pos + len(rest))
        return rest + chunk, pos

    # -- writing

    def put(self, batch: Batch) -> None:
        """Append a batch's records in order; raises OSError or ValueError, writing none (unless
        the batch spans files: then the files already completed stay written)."""
        if self.closed:
            raise OSError("exiting")
        sizes = list(batch.sizes())
        for size in sizes:
            if not self.min_msg_size <= size <= self.max_msg_size:
                raise ValueError("invalid message write size (%d) minMsgSize=%d maxMsgSize=%d"
                                 % (size, self.min_msg_size, self.max_msg_size))
        view = memoryview(batch.records)
        start = end = count = 0
        for size in sizes:
            total = 4 + size
            pending = end - start
            if self.write_pos + pending > 0 and self.write_pos + pending + total > self.max_bytes_per_file:
                self._write(view[start:end], count)
                start = end
                count = 0
                self._roll()
            end += total
            count += 1
        self._write(view[start:end], count)
        self._unsynced += len(sizes)
        if self._unsynced >= self.sync_every:
            self.sync()
        else:
            self._arm_sync()

    def _write(self, view, count: int) -> None:
        size = len(view)
        if not size:
            return
        if self._write_fd is None:
            self._write_fd = os.open(self.file_name(self.write_file_num), os.O_RDWR | os.O_CREAT, 0o600)
            os.lseek(self._write_fd, self.write_pos, os.SEEK_SET)
        written = 0
        try:
            while written < size:
                written += os.write(self._write_fd, view[written:])
        except OSError:
            # Leave no partial record behind: the file ends where the last whole batch ended.
            try:
                os.ftruncate(self._write_fd, self.write_pos)
                os.lseek(self._write_fd, self.write_pos, os.SEEK_SET)
            except OSError:
                self._close_write()
            raise
        self.write_pos += size
        self.depth += count
        self._dirty = True
        if self.read_file_num == self.write_file_num:
            self._read_end = self.write_pos

    def _roll(self) -> None:
        if self.read_file_num == self.write_file_num:
            self._read_end = self.write_pos
        self.write_file_num += 1
        self.write_pos = 0
        self.sync()
        self._close_write()

    def _close_write(self) -> None:
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None

    # -- reading

    def read(self, max_count: int) -> Batch:
        """Take up to `max_count` records off the front (fewer if the queue has fewer), as a batch
        copied out of the read buffer in as few pieces as the buffer's refills allow."""
        pieces = []
        #: where the records taken since the read buffer last changed start in it
        run = None
        count = 0
        while count < max_count and not self.closed:
            if self.read_file_num == self.write_file_num and self.read_pos >= self.write_pos:
                self._check_tail()
                break
            if self._read_file is None:
                run = self._take_run(pieces, run)
                if not self._open_read():
                    continue
            if self.read_pos >= self._read_end:
                if self.read_file_num < self.write_file_num:
                    run = self._take_run(pieces, run)
                    self._next_read_file(delete=True)
                    continue
                break
            idx = self.read_pos - self._rbuf_start
            if self._rlen - idx < 4:
                run = self._take_run(pieces, run)
                if not self._fill(4):
                    self._bad_file("short read of record size at %d" % self.read_pos)
                    continue
                idx = 0
            length = _unpack_length(self._rbuf, idx)[0]
            if length < self.min_msg_size or length > self.max_msg_size:
                run = self._take_run(pieces, run)
                self._bad_file("invalid message read size (%d)" % length)
                continue
            if self._rlen - idx < 4 + length:
                run = self._take_run(pieces, run)
                if not self._fill(4 + length):
                    self._bad_file("short read of a %d byte record at %d" % (length, self.read_pos))
                    continue
                idx = 0
            if run is None:
                run = idx
            count += 1
            self.read_pos += 4 + length
            self.depth -= 1
            self._dirty = True
        self._take_run(pieces, run)
        if count:
            self._arm_sync()
        return Batch(pieces[0] if len(pieces) == 1 else b"".join(pieces), count)

    def _take_run(self, pieces, run):
        """Copy the records taken since `run` out of the read buffer, before it changes."""
        if run is not None:
            pieces.append(self._rview[run:self.read_pos - self._rbuf_start].tobytes())
        return None

    def _open_read(self) -> bool:
        path = self.file_name(self.read_file_num)
        try:
            self._read_file = io.FileIO(path, "r")
        except OSError as err:
            log.error("DISKQUEUE({name}) cannot open {file} - {err}", name=self.name, file=path, err=err)
            self._skip_read_file()
            return False
        if self.read_file_num < self.write_file_num:
            self._read_end = os.fstat(self._read_file.fileno()).st_size
        else:
            self._read_end = self.write_pos
        self._rlen = 0
        self._rbuf_start = self.read_pos
        return True

    def _fill(self, need: int) -> bool:
        """Make `need` bytes from read_pos available in the buffer, reading at most what the file
        holds. The buffer is reused: a new string per refill kept PyPy's collector busy and
        stalled the reactor."""
        idx = self.read_pos - self._rbuf_start
        rest = self._rview[idx:self._rlen].tobytes()
        want = min(max(READ_CHUNK, need), self._read_end - self.read_pos) - len(rest)
        size = len(rest) + max(want, 0)
        if len(self._rbuf) < size:
            self._rbuf = bytearray(size)
            self._rview = memoryview(self._rbuf)
        self._rview[:len(rest)] = rest
        got = 0
        if want > 0:
            self._read_file.seek(self.read_pos + len(rest))
            got = self._read_file.readinto(self._rview[len(rest):size]) or 0
        self._rlen = len(rest) + got
        self._rbuf_start = self.read_pos
        return self._rlen >= need

    def _next_read_file(self, delete: bool) -> None:
        done = self.read_file_num
        self._close_read()
        self.read_file_num += 1
        self.read_pos = 0
        self._dirty = True
        if delete:
            self._discard([self.file_name(done)])
        self.sync()

    def _skip_read_file(self) -> None:
        if self.read_file_num == self.write_file_num:
            self._close_write()
            self.write_file_num += 1
            self.write_pos = 0
        self._next_read_file(delete=False)
        self._check_tail()

    def _bad_file(self, why: str) -> None:
        """go-diskqueue's handleReadError: keep the damaged file as .bad and go on with the next."""
        path = self.file_name(self.read_file_num)
        log.error("DISKQUEUE({name}) reading at {pos} of {file} - {why}; saving it as {file}.bad",
                  name=self.name, pos=self.read_pos, file=path, why=why)
        self._close_read()
        try:
            os.rename(path, path + ".bad")
        except OSError as err:
            log.error("DISKQUEUE({name}) failed to rename bad file {file} - {err}", name=self.name, file=path, err=err)
        self._skip_read_file()

    def _check_tail(self) -> None:
        if self.read_file_num == self.write_file_num and self.read_pos >= self.write_pos and self.depth != 0:
            log.error("DISKQUEUE({name}) depth {depth} at the tail, resetting to 0", name=self.name, depth=self.depth)
            self.depth = 0
            self._dirty = True

    def _close_read(self) -> None:
        if self._read_file is not None:
            self._read_file.close()
            self._read_file = None
        self._rbuf, self._rview = _NO_BUFFER
        self._rlen = 0

    # -- durability

    def _arm_sync(self) -> None:
        if self._sync_timer is None or not self._sync_timer.active():
            self._sync_timer = self.clock.callLater(self.sync_timeout, self._sync_due)

    def _sync_due(self) -> None:
        self._sync_timer = None
        if not self.closed:
            try:
                self.sync()
            except OSError as err:
                log.error("DISKQUEUE({name}) failed to sync - {err}", name=self.name, err=err)

    def sync(self) -> None:
        """fsync what was written and record the positions in the metadata file: as a job of the
        worker, or with a --sync-every of 1 at once on this thread (so that a write is on disk before
        its OK; such a queue never syncs in the background). A sync asked for while one is under way
        follows it."""
        if self.closed:
            return
        if self._syncing:
            self._sync_again = True
            return
        fd = self._write_fd if self._unsynced else None
        meta = self._meta() if self._dirty else None
        if fd is None and meta is None:
            return
        self._unsynced = 0
        self._dirty = False
        if self.sync_every <= 1:
            try:
                _sync_files(fd, self.meta_file_name(), meta)
            except OSError:
                self._unsynced, self._dirty = 1, True
                raise
            return
        # the job fsyncs a descriptor of its own, so a roll may close this one meanwhile
        fd = os.dup(fd) if fd is not None else None
        self._syncing = True
        self._worker.submit(self._key, self._sync_job, fd, meta).addCallbacks(self._synced, self._sync_failed)

    def _sync_job(self, fd, meta) -> None:
        """In the worker: the sync's blocking part, leaving the metadata of a deleted queue gone."""
        _sync_files(fd, self.meta_file_name(), None if self.deleted else meta, close_fd=True)

    def _synced(self, _) -> None:
        self._syncing = False
        if self._sync_again:
            self._sync_again = False
            self.sync()

    def _sync_failed(self, failure) -> None:
        """The next sync does it again."""
        log.error("DISKQUEUE({name}) failed to sync - {err}", name=self.name, err=failure.value)
        self._unsynced = max(self._unsynced, 1)
        self._dirty = True
        self._synced(None)

    def _meta(self) -> bytes:
        return b"%d\n%d,%d\n%d,%d\n" % (
            self.depth, self.read_file_num, self.read_pos, self.write_file_num, self.write_pos)

    def _discard(self, paths) -> None:
        """Rename data files this queue is done with, at once, and remove them in the worker: freeing
        a large file's blocks can take long."""
        for path in paths:
            try:
                os.rename(path, path + DONE_SUFFIX)
            except FileNotFoundError:
                continue
            except OSError as err:
                log.error("DISKQUEUE({name}) failed to Remove({file}) - {err}", name=self.name, file=path, err=err)
                continue
            self._worker.submit(path + DONE_SUFFIX, remove_file, path + DONE_SUFFIX)

    # -- lifecycle

    def empty(self) -> None:
        """Drop everything, and carry on in a fresh file as go-diskqueue does."""
        self._close_read()
        self._close_write()
        self._discard([self.file_name(num) for num in range(self.read_file_num, self.write_file_num + 1)])
        self.write_file_num += 1
        self.write_pos = 0
        self.read_file_num = self.write_file_num
        self.read_pos = 0
        self.depth = 0
        self._unsynced = 0
        self._dirty = True
        self.sync()

    def close(self):
        """Stop, with what was written synced and the positions recorded, whatever became of the
        syncs before. A Deferred that fires once they are on disk."""
        if self.closed:
            return defer.succeed(None)
        fd = os.dup(self._write_fd) if self._write_fd is not None else None
        meta = self._meta()
        self._shut()
        return self._worker.submit(self._key, _sync_files, fd, self.meta_file_name(), meta, True).addErrback(
            self._close_failed)

    def _close_failed(self, failure) -> None:
        log.error("DISKQUEUE({name}) failed to sync when closing - {err}", name=self.name, err=failure.value)

    def delete(self):
        """Remove the queue and its files: renamed at once, so that a queue made again under its name
        starts empty, and removed in the worker. A Deferred that fires once they are gone."""
        self.deleted = True
        nums = range(self.read_file_num, self.write_file_num + 1)
        self._shut()
        self._discard([self.file_name(num) for num in nums] + [self.meta_file_name()])
        return self._worker.submit(self._key, _nothing)

    def _shut(self) -> None:
        self.closed = True
        if self._sync_timer is not None and self._sync_timer.active():
            self._sync_timer.cancel()
        self._sync_timer = None
        self._close_read()
        self._close_write()


def _nothing() -> None:
    pass


def _sync_files(fd, meta_path: str, meta, close_fd: bool = False) -> None:
    """A sync's blocking part: fsync the data file (if `fd`), then replace the metadata file (if
    `meta`), in that order, so that the metadata never points past what is on disk."""
    try:
        if fd is not None:
            os.fsync(fd)
    finally:
        if close_fd and fd is not None:
            os.close(fd)
    if meta is not None:
        replace_file(meta_path, meta)
