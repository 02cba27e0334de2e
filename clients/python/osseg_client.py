"""osseg_client: a small blocking Python client for ossegd's Unix socket.

It speaks proto/osseg.proto over the daemon's Unix stream socket exactly as
the C client library (clients/osseg_client.h) does: every message is a frame
of a 4-byte little-endian length and one serialized protobuf message.
Requests are built from the module ``osseg_pb2``, which ``protoc
--python_out`` generates from proto/osseg.proto at build time into the build
tree beside a copy of this file (``BUILD/python``); put that directory on
``sys.path`` (``PYTHONPATH=build/release/python``).

Example::

    from osseg_client import Client, ClassMask

    with Client("/run/osseg/ossegd.sock") as c:
        for item in c.segment("hand.png", ["unetpp"]):
            if isinstance(item, ClassMask):
                print(item.name, item.area)       # item.rle, item.to_array()
        result = c.segment_all("hand.png", ["unetpp", "segformer"], vote="soft")
        masks = result.arrays()                   # {class name: bool array}

Images: a path (opened here and passed to the daemon as a file descriptor
with SCM_RIGHTS; the daemon never opens paths), PNG bytes, an open binary
file (its descriptor is passed), or a 2-D NumPy ``uint8``/``uint16`` array of
gray pixels (sent raw).

Streams and pipelining: ``segment`` sends the request and returns a
``SegmentStream`` at once; iterating it yields the class masks as the daemon
sends them, then the Dice report (with ground truth), then the timings.
Several streams may be open on one client and consumed in any order:
responses of other requests read on the way are kept for their streams.
While a request is being sent, responses that arrive are read too, so a
client that pipelines many requests before reading cannot deadlock against
the daemon's backpressure.

Errors: an ``Error`` response raises the ``DaemonError`` subclass of its code
(``UnknownModelError``, ``BadImageError``, ...; every one carries ``code``,
``code_name``, ``message`` and ``request_id``), and the connection stays
usable. Socket and framing problems raise ``OssegConnectionError``
(``ProtocolError`` for bytes that are not valid frames, ``OssegTimeoutError``
when the timeout passes); after any of them except a timeout between frames
the connection cannot be trusted and every later call raises the same error.
Invalid arguments raise ``TypeError`` or ``ValueError`` before anything is
sent.

Thread safety: one client is used by one thread at a time; distinct clients
are independent.
"""

from __future__ import annotations

import array
import collections
import errno
import os
import select
import socket
import stat
import struct
import time
import warnings
import zlib
from dataclasses import dataclass, field
from typing import (IO, Any, Collection, Deque, Dict, Iterator, List, Mapping, Optional,
                    Sequence, Set, Tuple, Union)

import numpy as np

try:
    import osseg_pb2 as pb
except ImportError as e:  # pragma: no cover - depends on the build
    raise ImportError(
        "osseg_client needs osseg_pb2, which the build generates from "
        "proto/osseg.proto with protoc (Debian: protobuf-compiler) into "
        "BUILD/python beside a copy of this file; put that directory on "
        "PYTHONPATH") from e

__all__ = [
    "Client", "SegmentStream", "SegmentResult", "ClassMask", "DiceReport",
    "Timings", "Health", "ModelInfo", "Stats", "ModelStats",
    "OssegError", "DaemonError", "InternalError", "BadRequestError",
    "UnknownModelError", "ImageTooLargeError", "BadImageError", "BusyError",
    "DeadlineExceededError", "CancelledError", "OssegConnectionError",
    "ProtocolError", "OssegTimeoutError",
    "rle_decode", "rle_encode", "png_mask_decode", "read_rle_csv",
    "DEFAULT_MAX_FRAME_BYTES",
]

#: The longest response frame a client accepts unless told otherwise: the
#: daemon's default max_frame_bytes (64 MiB), as in the C library.
DEFAULT_MAX_FRAME_BYTES = 64 << 20

_HEADER = struct.Struct("<I")
_MSG_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)

# --------------------------------------------------------------- errors ---


class OssegError(Exception):
    """Base of every error this module raises about the daemon or the
    connection (invalid arguments raise TypeError/ValueError instead)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DaemonError(OssegError):
    """The daemon answered a request with an Error response.

    Attributes: ``code`` (the ``Error.Code`` number), ``code_name``
    (``"BAD_REQUEST"``, ...), ``message`` (the daemon's text, naming the
    problem) and ``request_id``. The connection stays usable. Each code has
    its own subclass; an unknown code (a newer daemon) raises this class.
    """

    code: int = -1
    code_name: str = "UNKNOWN"

    def __init__(self, message: str, request_id: int = 0, code: Optional[int] = None) -> None:
        super().__init__(message)
        self.request_id = request_id
        if code is not None and code != type(self).code:
            self.code = code
            self.code_name = _code_name(code)

    def __str__(self) -> str:
        return f"{self.code_name}: {self.message}"


class InternalError(DaemonError):
    """The daemon failed on its side (INTERNAL)."""
    code, code_name = pb.Error.INTERNAL, "INTERNAL"


class BadRequestError(DaemonError):
    """A malformed or invalid field; the message says which (BAD_REQUEST)."""
    code, code_name = pb.Error.BAD_REQUEST, "BAD_REQUEST"


class UnknownModelError(DaemonError):
    """A model name the daemon does not serve (UNKNOWN_MODEL)."""
    code, code_name = pb.Error.UNKNOWN_MODEL, "UNKNOWN_MODEL"


class ImageTooLargeError(DaemonError):
    """Over the daemon's pixel, side or byte limits (IMAGE_TOO_LARGE)."""
    code, code_name = pb.Error.IMAGE_TOO_LARGE, "IMAGE_TOO_LARGE"


class BadImageError(DaemonError):
    """Not a decodable image (BAD_IMAGE)."""
    code, code_name = pb.Error.BAD_IMAGE, "BAD_IMAGE"


class BusyError(DaemonError):
    """The daemon's queue or in-flight limit was reached; retry later
    (BUSY)."""
    code, code_name = pb.Error.BUSY, "BUSY"


class DeadlineExceededError(DaemonError):
    """The request's ``deadline_ms`` passed (DEADLINE_EXCEEDED)."""
    code, code_name = pb.Error.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED"


class CancelledError(DaemonError):
    """The request was cancelled (CANCELLED)."""
    code, code_name = pb.Error.CANCELLED, "CANCELLED"


class OssegConnectionError(OssegError, ConnectionError):
    """The socket failed: cannot connect, the daemon closed the connection,
    or an I/O error. Except for a timeout between frames, the connection is
    unusable afterwards."""


class PermissionDeniedError(DaemonError, OssegConnectionError):
    """The daemon does not let this user in (PERMISSION_DENIED: ossegd's
    [access] list). The daemon sends it once, with request id 0, before
    reading anything, and closes the connection: unlike other daemon
    errors, this one leaves the connection unusable."""
    code, code_name = pb.Error.PERMISSION_DENIED, "PERMISSION_DENIED"


#: One class per value of the protocol's closed Error.Code enum.
ERROR_CLASSES: Dict[int, type] = {
    cls.code: cls for cls in (InternalError, BadRequestError, UnknownModelError,
                              ImageTooLargeError, BadImageError, BusyError,
                              DeadlineExceededError, CancelledError, PermissionDeniedError)
}


def _code_name(code: int) -> str:
    try:
        return pb.Error.Code.Name(code)
    except ValueError:
        return "UNKNOWN"


def _daemon_error(err: Any, request_id: int) -> DaemonError:
    cls = ERROR_CLASSES.get(err.code)
    if cls is None:
        return DaemonError(err.message, request_id, err.code)
    return cls(err.message, request_id)


class ProtocolError(OssegConnectionError):
    """Bytes from the daemon are not valid frames: a frame over the size
    limit (refused before anything is allocated for it), a frame that does
    not parse as a Response, the connection ending inside a frame, or a
    response that does not belong where it came. Fatal for the
    connection."""


class OssegTimeoutError(OssegConnectionError, TimeoutError):
    """The client's timeout passed while waiting for the daemon. While
    receiving, this is not fatal: bytes of a frame read in part are kept and
    the next call continues it. While sending, it is fatal once part of a
    frame was written."""


# ---------------------------------------------------------------- masks ---


def rle_decode(rle: str, height: int, width: int) -> np.ndarray:
    """Decodes competition RLE ("start len start len ...", 1-based starts,
    row-major) into a ``(height, width)`` bool array. The empty string is
    an empty mask. Raises ValueError for text that is not valid RLE for
    that size (odd count, a run past the end, runs out of order or
    overlapping)."""
    if height < 0 or width < 0:
        raise ValueError("negative mask size")
    n = int(height) * int(width)
    text = rle.strip()
    if not text:
        return np.zeros((height, width), dtype=bool)
    # np.fromstring parses in C; text it cannot read to the end (anything
    # but integers and whitespace) only warns, so the warning is an error.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            nums = np.fromstring(text, dtype=np.int64, sep=" ")
        except (ValueError, DeprecationWarning):
            raise ValueError("RLE: not a list of integers") from None
    if nums.size % 2:
        raise ValueError("RLE: odd number of values (starts and lengths come in pairs)")
    starts = nums[0::2] - 1
    lens = nums[1::2]
    ends = starts + lens
    if (starts < 0).any() or (lens < 1).any():
        raise ValueError("RLE: starts must be >= 1 and lengths >= 1")
    if (starts[1:] < ends[:-1]).any():
        raise ValueError("RLE: runs out of order or overlapping")
    if ends[-1] > n:
        raise ValueError(f"RLE: a run ends at pixel {int(ends[-1])}, past the {n} of the mask")
    mask = np.zeros(n, dtype=bool)
    if starts.size <= n // 128:
        # Few runs (a bone is a few hundred): one slice each beats a pass
        # over every pixel.
        for s, e in zip(starts.tolist(), ends.tolist()):
            mask[s:e] = True
    else:
        # Many runs: toggles at every start and end, then a running XOR
        # (a run that starts where the previous one ended toggles twice).
        t = np.zeros(n + 1, dtype=np.uint8)
        t[starts] = 1
        t[ends] ^= 1
        mask = np.bitwise_xor.accumulate(t[:-1]).view(bool)
    return mask.reshape(height, width)


def rle_encode(mask: np.ndarray) -> str:
    """Encodes a 2-D mask (non-zero = set) as competition RLE text, the
    inverse of ``rle_decode``; an empty mask gives ""."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"a mask is 2-D, not {m.ndim}-D")
    flat = m.reshape(-1)  # row-major, a copy only if m is not C-contiguous
    if flat.dtype != np.bool_:
        flat = flat != 0
    if flat.size == 0:
        return ""
    # Pixel offsets where the value changes, plus the ends if set there:
    # (start, end) pairs of the runs.
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    if flat[0]:
        edges = np.concatenate(([0], edges))
    if flat[-1]:
        edges = np.concatenate((edges, [flat.size]))
    runs = edges.reshape(-1, 2)
    runs[:, 1] -= runs[:, 0]
    runs[:, 0] += 1
    return " ".join(map(str, runs.reshape(-1).tolist()))


def _unfilter_sequential(ftype: int, cur: np.ndarray, prev: np.ndarray, bpp: int) -> None:
    """PNG filters 3 (Average) and 4 (Paeth) depend on the byte just
    reconstructed; done byte by byte (rare: libpng does not filter 1-bit
    images by default)."""
    c = cur.tolist()
    p = prev.tolist()
    for i in range(len(c)):
        a = c[i - bpp] if i >= bpp else 0
        b = p[i]
        if ftype == 3:
            c[i] = (c[i] + ((a + b) >> 1)) & 0xFF
        else:
            cc = p[i - bpp] if i >= bpp else 0
            pa, pb_, pc = abs(b - cc), abs(a - cc), abs(a + b - 2 * cc)
            pred = a if pa <= pb_ and pa <= pc else (b if pb_ <= pc else cc)
            c[i] = (c[i] + pred) & 0xFF
    cur[:] = c


def png_mask_decode(png: bytes, height: Optional[int] = None,
                    width: Optional[int] = None) -> np.ndarray:
    """Decodes a mask PNG as the daemon writes them for ``output="png"``
    (1-bit gray, not interlaced; 1 = set) into a bool array. ``height`` and
    ``width``, when given, must match the PNG's header. Other PNG kinds
    raise ValueError: this is not a general PNG decoder."""
    data = memoryview(png)
    if bytes(data[:8]) != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG (bad signature)")
    pos, ihdr, idat = 8, None, []
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if len(body) != length:
            raise ValueError("PNG: truncated chunk")
        pos += 12 + length
        if ctype == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif ctype == b"IDAT":
            idat.append(bytes(body))
        elif ctype == b"IEND":
            break
    if ihdr is None:
        raise ValueError("PNG: no IHDR chunk")
    w, h, depth, color, _, _, interlace = ihdr
    if depth != 1 or color != 0 or interlace != 0:
        raise ValueError(f"PNG: a mask is 1-bit gray and not interlaced, not depth {depth}, "
                         f"colour type {color}, interlace {interlace}")
    if (height is not None and h != height) or (width is not None and w != width):
        raise ValueError(f"PNG: {w}x{h}, expected {width}x{height}")
    stride = (w + 7) // 8
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as e:
        raise ValueError(f"PNG: bad compressed data: {e}") from None
    if len(raw) != h * (stride + 1):
        raise ValueError(f"PNG: {len(raw)} bytes of image data, expected {h * (stride + 1)}")
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(h, stride + 1)
    filters = rows[:, 0]
    px = rows[:, 1:].copy()
    if filters.any():
        if (filters > 4).any():
            raise ValueError("PNG: unknown filter type")
        zero = np.zeros(stride, dtype=np.uint8)
        for y in np.flatnonzero(filters).tolist():
            prev = px[y - 1] if y > 0 else zero
            f = int(filters[y])
            if f == 1:  # Sub, one byte per pixel group below 8 bits
                px[y] = np.cumsum(px[y], dtype=np.uint8)
            elif f == 2:  # Up
                px[y] += prev
            else:
                _unfilter_sequential(f, px[y], prev, 1)
    return np.unpackbits(px, axis=1, count=w).astype(bool)


# -------------------------------------------------------------- results ---


@dataclass(frozen=True)
class ClassMask:
    """One class's mask, as the daemon streams them (in class order).

    ``rle`` is the competition RLE text (``output="rle"``; "" for an empty
    mask), ``png`` a 1-bit gray PNG (``output="png"``); the other one is
    None. ``area`` is the number of pixels set; ``index`` the class's index
    in the models' class order.
    """

    index: int
    name: str
    area: int
    width: int
    height: int
    rle: Optional[str] = None
    png: Optional[bytes] = field(default=None, repr=False)

    def to_array(self) -> np.ndarray:
        """The mask as a ``(height, width)`` bool array, decoded from the
        RLE text or the PNG."""
        if self.rle is not None:
            return rle_decode(self.rle, self.height, self.width)
        if self.png is not None:
            return png_mask_decode(self.png, self.height, self.width)
        raise ValueError(f"class {self.name}: the response carried no mask")


@dataclass(frozen=True)
class DiceReport:
    """Dice against the ground truth sent with the request: per scored class
    (name -> Dice, in class order) and their mean."""

    classes: Dict[str, float]
    mean: float


@dataclass(frozen=True)
class Timings:
    """The Done response that ends a Segment: image size and the daemon's
    timings in milliseconds (``inference`` per model, in request order)."""

    width: int
    height: int
    queue_ms: float
    decode_ms: float
    preprocess_ms: float
    inference: Dict[str, float]
    postprocess_ms: float
    total_ms: float

    @property
    def inference_ms(self) -> float:
        """All models' inference time together."""
        return sum(self.inference.values())


@dataclass(frozen=True)
class SegmentResult:
    """Everything a Segment produced (see ``Client.segment_all``)."""

    request_id: int
    masks: List[ClassMask]
    dice: Optional[DiceReport]
    timings: Timings

    def __getitem__(self, name: str) -> ClassMask:
        for m in self.masks:
            if m.name == name:
                return m
        raise KeyError(name)

    def rles(self) -> Dict[str, str]:
        """Class name -> RLE text (RLE output only)."""
        return {m.name: m.rle for m in self.masks if m.rle is not None}

    def arrays(self) -> Dict[str, np.ndarray]:
        """Class name -> ``(height, width)`` bool array."""
        return {m.name: m.to_array() for m in self.masks}

    def stack(self) -> np.ndarray:
        """All masks as one ``(classes, height, width)`` bool array, in
        class order."""
        if not self.masks:
            return np.zeros((0, self.timings.height, self.timings.width), dtype=bool)
        return np.stack([m.to_array() for m in self.masks])


@dataclass(frozen=True)
class Health:
    """The daemon's Health answer."""

    ready: bool
    version: str
    models: int
    queue_depth: int
    in_flight: int
    connections: int
    uptime_s: float
    max_frame_bytes: int
    max_image_pixels: int


@dataclass(frozen=True)
class ModelInfo:
    """One served model (``Client.models``)."""

    name: str
    sha256: str
    input_size: int
    precision: str
    classes: Tuple[str, ...]
    generation: int


@dataclass(frozen=True)
class ModelStats:
    """Inference runs of one model since the daemon started."""

    runs: int
    mean_ms: float
    max_ms: float


@dataclass(frozen=True)
class Stats:
    """The daemon's counters. ``outcomes``: "ok" or an Error code name ->
    count; ``latency``: (upper bound in ms, count of finished Segments at
    most that long), cumulative; ``models``: name -> ModelStats."""

    outcomes: Dict[str, int]
    latency: List[Tuple[float, int]]
    queue_depth: int
    connections: int
    connections_total: int
    bytes_in: int
    bytes_out: int
    models: Dict[str, ModelStats]


def _class_mask(m: Any) -> ClassMask:
    png = m.png if m.HasField("png") else None
    if m.HasField("rle"):
        rle: Optional[str] = m.rle
    else:
        rle = None if png is not None else ""
    return ClassMask(m.index, m.name, m.area, m.width, m.height, rle, png)


def _dice(d: Any) -> DiceReport:
    return DiceReport({c.name: c.dice for c in d.classes}, d.mean)


def _timings(d: Any) -> Timings:
    return Timings(d.width, d.height, d.queue_ms, d.decode_ms, d.preprocess_ms,
                   {t.model: t.ms for t in d.inference}, d.postprocess_ms, d.total_ms)


SegmentItem = Union[ClassMask, DiceReport, Timings]
ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes], np.ndarray]

_OUTPUTS = {"rle": pb.OUTPUT_RLE, "png": pb.OUTPUT_PNG_MASK, "dice": pb.OUTPUT_DICE_ONLY}
_PRIORITIES = {"interactive": pb.PRIORITY_INTERACTIVE, "batch": pb.PRIORITY_BATCH}
_VOTES = {"hard": pb.Vote.HARD, "soft": pb.Vote.SOFT}


class SegmentStream(Iterator[SegmentItem]):
    """The responses of one Segment request, in the order the daemon sends
    them: a ``ClassMask`` per class, a ``DiceReport`` when ground truth was
    sent, then ``Timings`` (the Done), after which iteration stops. An Error
    response raises its ``DaemonError`` subclass and ends the stream.

    ``id`` is the request id (for ``Client.cancel``). ``dice`` and
    ``timings`` are filled in as they arrive. ``close()`` (or leaving a
    ``with`` block) abandons the request: its remaining responses are read
    and dropped as they come; the daemon keeps working on it unless it is
    cancelled.
    """

    def __init__(self, client: "Client", request_id: int) -> None:
        self._client = client
        self.id = request_id
        self.dice: Optional[DiceReport] = None
        self.timings: Optional[Timings] = None
        self._finished = False

    @property
    def finished(self) -> bool:
        """True once the final response (Done or Error) was consumed or the
        stream was closed."""
        return self._finished

    def __iter__(self) -> "SegmentStream":
        return self

    def __next__(self) -> SegmentItem:
        if self._finished:
            raise StopIteration
        try:
            resp = self._client._next_response(self.id)
        except OssegError:
            if self._client._broken is not None:
                self._finished = True
            raise
        kind = resp.WhichOneof("kind")
        if kind == "class_mask":
            return _class_mask(resp.class_mask)
        if kind == "dice":
            self.dice = _dice(resp.dice)
            return self.dice
        self._finished = True
        self._client._forget(self.id)
        if kind == "done":
            self.timings = _timings(resp.done)
            return self.timings
        if kind == "error":
            raise _daemon_error(resp.error, self.id)
        raise self._client._fail(ProtocolError(
            f"request {self.id}: a Segment answered by a {kind or 'empty'} response"))

    def result(self) -> SegmentResult:
        """Consumes the rest of the stream into a SegmentResult (masks not
        yet consumed, the Dice report and the timings)."""
        masks = [item for item in self if isinstance(item, ClassMask)]
        if self.timings is None:
            raise ProtocolError(f"request {self.id}: the stream ended without a Done")
        return SegmentResult(self.id, masks, self.dice, self.timings)

    def cancel(self) -> None:
        """Asks the daemon to cancel this request (``Client.cancel``). The
        stream then ends with ``CancelledError``, or normally if the request
        had already finished."""
        if not self._finished:
            self._client.cancel(self.id)

    def close(self) -> None:
        """Abandons the stream without waiting for the rest."""
        if not self._finished:
            self._finished = True
            self._client._abandon(self.id)

    def __enter__(self) -> "SegmentStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


# --------------------------------------------------------------- client ---


class Client:
    """A connection to ossegd.

    ``Client(socket_path, timeout=None)`` connects at once (raising
    ``OssegConnectionError`` if it cannot). ``timeout`` (seconds, None = no
    limit) bounds the connect, each send, and each wait for the next
    response frame. ``max_frame_bytes`` is the longest response frame
    accepted (refused before anything is allocated for it). Use it as a
    context manager or call ``close()``.
    """

    def __init__(self, socket_path: Union[str, "os.PathLike[str]"], timeout: Optional[float] = None,
                 *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        path = os.fspath(socket_path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._connect(sock, path, timeout)
        except BaseException:
            sock.close()
            raise
        self._setup(sock, timeout, max_frame_bytes)
        self.socket_path = path

    @classmethod
    def from_socket(cls, sock: socket.socket, timeout: Optional[float] = None, *,
                    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> "Client":
        """Wraps an already connected stream socket (e.g. one end of a
        ``socket.socketpair()``); the client owns it from then on."""
        self = cls.__new__(cls)
        self._setup(sock, timeout, max_frame_bytes)
        self.socket_path = ""
        return self

    @staticmethod
    def _connect(sock: socket.socket, path: str, timeout: Optional[float]) -> None:
        sock.setblocking(False)
        deadline = None if timeout is None else time.monotonic() + timeout
        # A Unix socket connects at once, or fails with EAGAIN while the
        # listener's backlog is full; then retry until the deadline.
        while True:
            try:
                sock.connect(path)
                return
            except (BlockingIOError, InterruptedError):
                if deadline is not None and time.monotonic() >= deadline:
                    raise OssegTimeoutError(
                        f"{path}: the daemon did not accept the connection within "
                        f"{timeout:g} s") from None
                time.sleep(0.005)
            except OSError as e:
                raise OssegConnectionError(f"{path}: cannot connect: {e.strerror or e}") from None

    def _setup(self, sock: socket.socket, timeout: Optional[float], max_frame_bytes: int) -> None:
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be >= 0 or None")
        if not 0 < max_frame_bytes <= 0xFFFFFFFF:
            raise ValueError("max_frame_bytes must be in 1 .. 2**32-1")
        sock.setblocking(False)
        self._sock: Optional[socket.socket] = sock
        self.timeout = timeout
        self.max_frame_bytes = max_frame_bytes
        self._next_id = 1
        self._broken: Optional[OssegConnectionError] = None
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN)
        # Responses read for requests whose turn has not come, by id; ids
        # whose remaining responses are dropped (abandoned streams).
        self._inbox: Dict[int, Deque[Any]] = {}
        self._discard: Set[int] = set()
        # The frame being read, kept across a timeout.
        self._hdr = bytearray(4)
        self._hdr_got = 0
        self._body: Optional[bytearray] = None
        self._body_got = 0

    # -- lifetime --

    def close(self) -> None:
        """Closes the connection. Requests still in flight are abandoned;
        the daemon cancels them when it sees the connection go."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    @property
    def closed(self) -> bool:
        return self._sock is None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fileno(self) -> int:
        """The socket, for select/poll (readable: a response may be there).
        Do not read or write it directly."""
        return self._usable().fileno()

    # -- requests --

    def segment(self, image: ImageInput, models: Union[str, Sequence[str]], *,
                vote: Optional[str] = None, vote_threshold: Optional[float] = None,
                threshold: Optional[float] = None,
                class_thresholds: Optional[Mapping[str, float]] = None,
                classes: Optional[Sequence[str]] = None, output: str = "rle",
                ground_truth: Union[None, str, Mapping[str, Union[str, np.ndarray]]] = None,
                priority: str = "interactive", deadline_ms: Optional[int] = None,
                name: Optional[str] = None) -> SegmentStream:
        """Sends a Segment request and returns its ``SegmentStream``.

        image: a PNG file path (str or PathLike; opened here and passed as a
            file descriptor), PNG bytes, an open binary file that is a
            regular file (its descriptor is passed; the daemon reads it from
            offset 0), a file-like object without a descriptor (read here
            and sent as bytes), or a 2-D ``uint8``/``uint16`` NumPy array of
            gray pixels (sent raw).
        models: one model name or several (up to 8), combined by ``vote``.
        vote: "hard" (a pixel is kept when more than ``vote_threshold``
            models keep it; default models // 2) or "soft" (mean of the
            probabilities, then the threshold). None: the daemon's default.
        threshold: probability threshold in (0, 1), default 0.5;
            class_thresholds: class name -> threshold for single classes.
        classes: produce only these classes (default all).
        output: "rle" (ClassMask.rle), "png" (ClassMask.png, a 1-bit PNG)
            or "dice" (no masks; needs ground_truth).
        ground_truth: class name -> RLE text or 2-D mask array (encoded
            here), or the dataset's label JSON as a str; adds a DiceReport.
        priority: "interactive" or "batch" (served after interactive ones).
        deadline_ms: give up after this many ms in the daemon
            (DeadlineExceededError).
        name: the image name used in results; default the file name of a
            path or file, else the daemon's "image".
        """
        req = pb.Request()
        seg = req.segment
        fd: Optional[int] = None
        close_fd = False
        if isinstance(models, str):
            models = [models]
        seg.models.extend(_strings("models", models))
        if vote is not None or vote_threshold is not None:
            kind = _choice("vote", "hard" if vote is None else vote, _VOTES)
            seg.vote.kind = kind
            if vote_threshold is not None:
                seg.vote.threshold = float(vote_threshold)
        if threshold is not None:
            seg.threshold = float(threshold)
        if class_thresholds:
            for cname, t in class_thresholds.items():
                seg.class_thresholds.add(name=str(cname), threshold=float(t))
        if classes:
            seg.classes.extend(_strings("classes", classes))
        seg.output = _choice("output", output, _OUTPUTS)
        seg.priority = _choice("priority", priority, _PRIORITIES)
        if deadline_ms is not None:
            if not 0 <= int(deadline_ms) <= 0xFFFFFFFF:
                raise ValueError("deadline_ms must be in 0 .. 2**32-1")
            seg.deadline_ms = int(deadline_ms)
        if ground_truth is not None:
            if isinstance(ground_truth, str):
                seg.ground_truth.label_json = ground_truth
            else:
                rles = seg.ground_truth.rles
                for cname, gt in ground_truth.items():
                    text = gt if isinstance(gt, str) else rle_encode(gt)
                    rles.classes.add(name=str(cname), rle=text)
                rles.SetInParent()
        try:
            default_name, fd, close_fd = _set_image(seg, image)
            if name is None:
                name = default_name
            if name is not None:
                seg.image_name = name
            return SegmentStream(self, self._send(req, fd))
        finally:
            if close_fd and fd is not None:
                os.close(fd)

    def segment_all(self, image: ImageInput, models: Union[str, Sequence[str]],
                    **options: Any) -> SegmentResult:
        """``segment(image, models, **options)`` consumed at once: the
        masks, the Dice report (if ground truth was given) and the timings.
        Raises the ``DaemonError`` of an Error response."""
        with self.segment(image, models, **options) as stream:
            return stream.result()

    def cancel(self, request: Union[int, SegmentStream]) -> None:
        """Cancels a request of this connection (by id or stream) and waits
        for the daemon's acknowledgement. The cancelled request then ends
        with ``CancelledError``, or with its usual responses if it had
        already finished. Cancelling an id that is not in flight is a
        no-op."""
        target = request.id if isinstance(request, SegmentStream) else int(request)
        req = pb.Request()
        req.cancel.id = target
        self._expect(req, "done")

    def health(self) -> Health:
        """The daemon's health (answered at once, never queued behind
        inference)."""
        req = pb.Request()
        req.health.SetInParent()
        h = self._expect(req, "health").health
        return Health(h.ready, h.version, h.models, h.queue_depth, h.in_flight, h.connections,
                      h.uptime_s, h.max_frame_bytes, h.max_image_pixels)

    def models(self) -> List[ModelInfo]:
        """The models the daemon serves."""
        req = pb.Request()
        req.list_models.SetInParent()
        return [ModelInfo(m.name, m.sha256, m.input_size, m.precision, tuple(m.classes),
                          m.generation)
                for m in self._expect(req, "models").models.models]

    def stats(self) -> Stats:
        """The daemon's counters."""
        req = pb.Request()
        req.stats.SetInParent()
        s = self._expect(req, "stats").stats
        return Stats({o.name: o.count for o in s.outcomes},
                     [(b.le_ms, b.count) for b in s.latency], s.queue_depth, s.connections,
                     s.connections_total, s.bytes_in, s.bytes_out,
                     {m.model: ModelStats(m.runs, m.mean_ms, m.max_ms) for m in s.models})

    # -- plumbing --

    def _expect(self, req: Any, kind: str) -> Any:
        rid = self._send(req, None)
        try:
            resp = self._next_response(rid)
        except BaseException:
            # A late answer (after a timeout) is dropped when it comes.
            self._abandon(rid)
            raise
        self._forget(rid)
        got = resp.WhichOneof("kind")
        if got == kind:
            return resp
        if got == "error":
            raise _daemon_error(resp.error, rid)
        raise self._fail(ProtocolError(f"request {rid}: expected a {kind} response, got "
                                       f"{got or 'an empty one'}"))

    def _usable(self) -> socket.socket:
        if self._broken is not None:
            raise type(self._broken)(self._broken.message)
        if self._sock is None:
            raise OssegConnectionError("the client is closed")
        return self._sock

    def _fail(self, err: OssegConnectionError) -> OssegConnectionError:
        """Marks the connection broken by err (returned, for raise)."""
        self._broken = err
        return err

    def _forget(self, rid: int) -> None:
        self._inbox.pop(rid, None)

    def _abandon(self, rid: int) -> None:
        box = self._inbox.pop(rid, None)
        if box is not None and not any(_is_final(r) for r in box):
            self._discard.add(rid)

    def _deadline(self) -> Optional[float]:
        return None if self.timeout is None else time.monotonic() + self.timeout

    def _wait(self, events: int, deadline: Optional[float]) -> int:
        """Polls the socket for events until the deadline; returns the
        events that happened, 0 on timeout."""
        sock = self._usable()
        self._poll.modify(sock.fileno(), events)
        if deadline is None:
            ready = self._poll.poll()
        else:
            ready = self._poll.poll(max(0.0, deadline - time.monotonic()) * 1000.0)
        return ready[0][1] if ready else 0

    def _send(self, req: Any, fd: Optional[int]) -> int:
        """Gives req a fresh id, registers it and writes it as one frame;
        returns the id."""
        sock = self._usable()
        rid = self._next_id
        self._next_id += 1
        req.id = rid
        req.version = pb.VERSION_1
        payload = req.SerializeToString()
        if len(payload) > 0xFFFFFFFF:
            raise ValueError(f"a request of {len(payload)} bytes does not fit a frame")
        self._inbox[rid] = collections.deque()
        try:
            self._write_frame(sock, payload, fd)
        except BaseException:
            self._inbox.pop(rid, None)
            raise
        return rid

    def _write_frame(self, sock: socket.socket, payload: bytes, fd: Optional[int]) -> None:
        header = _HEADER.pack(len(payload))
        body = memoryview(payload)
        total = 4 + len(payload)
        done = 0
        deadline = self._deadline()
        while done < total:
            parts = [header[done:], body] if done < 4 else [body[done - 4:]]
            try:
                if fd is not None and done == 0:
                    # The descriptor travels with the frame's first byte.
                    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
                    n = sock.sendmsg(parts, anc, _MSG_NOSIGNAL)
                else:
                    n = sock.sendmsg(parts, [], _MSG_NOSIGNAL)
                done += n
                continue
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                raise self._fail(OssegConnectionError("the daemon closed the connection")) from None
            except OSError as e:
                if e.errno == errno.EBADF and fd is not None and done == 0:
                    raise ValueError(f"descriptor {fd} to pass: {e.strerror}") from None
                raise self._fail(OssegConnectionError(f"send: {e.strerror or e}")) from None
            # While the daemon cannot take more, read what it sends: it may
            # be waiting for us to read before it reads again.
            ev = self._wait(select.POLLOUT | select.POLLIN, deadline)
            if not ev & select.POLLOUT and deadline is not None and time.monotonic() >= deadline:
                ev = 0  # only responses keep arriving: the send still timed out
            if ev == 0:
                if done > 0:
                    raise self._fail(OssegTimeoutError(
                        f"send timed out after {self.timeout:g} s with {done} of {total} "
                        "bytes of a frame written"))
                raise OssegTimeoutError(f"send timed out after {self.timeout:g} s")
            if ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
                self._read_available()

    def _read_available(self) -> None:
        """Reads and files every response that has already arrived."""
        while True:
            resp = self._read_frame()
            if resp is None:
                return
            self._file(resp)

    def _file(self, resp: Any) -> None:
        rid = resp.id
        if (rid == 0 and resp.WhichOneof("kind") == "error"
                and resp.error.code == pb.Error.PERMISSION_DENIED):
            # The connection's answer, not a request's: the daemon closes it.
            raise self._fail(PermissionDeniedError(resp.error.message, 0))
        box = self._inbox.get(rid)
        if box is not None:
            box.append(resp)
        elif rid in self._discard:
            if _is_final(resp):
                self._discard.discard(rid)
        else:
            raise self._fail(ProtocolError(f"a response for request {rid}, which is not in "
                                           "flight on this connection"))

    def _next_response(self, rid: int) -> Any:
        """The next response of request rid, reading (and filing others')
        until it arrives or the timeout passes."""
        box = self._inbox.get(rid)
        if box is None:
            raise ValueError(f"request {rid} is not in flight on this client")
        deadline = self._deadline()
        while not box:
            resp = self._read_frame()
            if resp is not None:
                self._file(resp)
                continue
            if self._wait(select.POLLIN, deadline) == 0:
                raise OssegTimeoutError(f"no response within {self.timeout:g} s")
        return box.popleft()

    def _recv_into(self, sock: socket.socket, buf: memoryview, in_frame: bool) -> int:
        try:
            n = sock.recv_into(buf)
        except BlockingIOError:
            return -1
        except ConnectionResetError:
            raise self._fail(OssegConnectionError("connection reset by the daemon")) from None
        except OSError as e:
            raise self._fail(OssegConnectionError(f"recv: {e.strerror or e}")) from None
        if n == 0:
            if in_frame:
                raise self._fail(ProtocolError("the connection ended in the middle of a frame"))
            raise self._fail(OssegConnectionError("the daemon closed the connection"))
        return n

    def _read_frame(self) -> Optional[Any]:
        """Reads what is available without blocking; returns a complete
        response, or None if more bytes are needed."""
        sock = self._usable()
        while self._body is None:
            n = self._recv_into(sock, memoryview(self._hdr)[self._hdr_got:], self._hdr_got > 0)
            if n < 0:
                return None
            self._hdr_got += n
            if self._hdr_got == 4:
                (length,) = _HEADER.unpack(self._hdr)
                # The declared length sizes nothing until it passed the limit.
                if length > self.max_frame_bytes:
                    raise self._fail(ProtocolError(
                        f"response frame of {length} bytes is over the limit of "
                        f"{self.max_frame_bytes}"))
                self._body = bytearray(length)
                self._body_got = 0
        body = self._body
        view = memoryview(body)
        while self._body_got < len(body):
            n = self._recv_into(sock, view[self._body_got:], True)
            if n < 0:
                return None
            self._body_got += n
        view.release()
        self._body = None
        self._hdr_got = 0
        resp = pb.Response()
        try:
            resp.ParseFromString(body)
        except Exception:
            resp = None
        if resp is None or not resp.IsInitialized():
            raise self._fail(ProtocolError(f"a {len(body)}-byte response frame does not parse"))
        return resp


def _is_final(resp: Any) -> bool:
    """Whether resp is the last response of its request: everything but a
    Segment's ClassMask and DiceReport is."""
    return resp.WhichOneof("kind") not in ("class_mask", "dice")


def _choice(what: str, value: str, table: Mapping[str, int]) -> int:
    try:
        return table[value]
    except (KeyError, TypeError):
        raise ValueError(f"{what} must be one of {', '.join(map(repr, table))}, "
                         f"not {value!r}") from None


def _strings(what: str, values: Collection[str]) -> List[str]:
    out = list(values)
    for v in out:
        if not isinstance(v, str):
            raise TypeError(f"{what}: expected names (str), got {type(v).__name__}")
    return out


def _set_image(seg: Any, image: Any) -> Tuple[Optional[str], Optional[int], bool]:
    """Puts image into seg; returns (default image name, descriptor to
    pass or None, whether that descriptor is ours to close)."""
    if isinstance(image, np.ndarray):
        if image.ndim != 2:
            raise ValueError(f"a pixel array is 2-D (height, width) gray, not shape {image.shape}")
        # Any byte order: 16-bit samples go out little-endian.
        if image.dtype.kind == "u" and image.dtype.itemsize == 1:
            depth, px = 8, np.ascontiguousarray(image)
        elif image.dtype.kind == "u" and image.dtype.itemsize == 2:
            depth, px = 16, np.ascontiguousarray(image, dtype="<u2")
        else:
            raise TypeError(f"pixel arrays are uint8 or uint16, not {image.dtype}")
        h, w = image.shape
        seg.raw.width, seg.raw.height, seg.raw.bit_depth = w, h, depth
        seg.raw.pixels = px.tobytes()
        return None, None, False
    if isinstance(image, (bytes, bytearray, memoryview)):
        seg.png = bytes(image)
        return None, None, False
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        # O_NONBLOCK: opening a FIFO must not hang; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ValueError(f"{path}: not a regular file")
        except BaseException:
            os.close(fd)
            raise
        seg.fd.size_hint = st.st_size
        return os.path.basename(path), fd, True
    fileno = getattr(image, "fileno", None)
    if fileno is not None:
        try:
            fd = fileno()
        except (OSError, ValueError):  # io.BytesIO and friends
            fd = None
        if fd is not None:
            fname = getattr(image, "name", None)
            seg.fd.SetInParent()
            try:
                seg.fd.size_hint = os.fstat(fd).st_size
            except OSError:
                pass  # the daemon checks the descriptor itself
            return (os.path.basename(fname) if isinstance(fname, str) else None), fd, False
    read = getattr(image, "read", None)
    if read is not None:
        data = read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("a file-like image must be opened in binary mode")
        seg.png = bytes(data)
        return None, None, False
    raise TypeError("image must be a path, PNG bytes, a binary file or a 2-D uint8/uint16 "
                    f"NumPy array, not {type(image).__name__}")


def read_rle_csv(path: Union[str, "os.PathLike[str]"]) -> Dict[str, Dict[str, str]]:
    """Reads a submission/ground-truth CSV (``image_name,class,rle``) into
    {image name: {class: rle}}, e.g. to pass as ``ground_truth``."""
    import csv
    old = csv.field_size_limit()
    csv.field_size_limit((1 << 31) - 1)
    try:
        out: Dict[str, Dict[str, str]] = {}
        with open(path, newline="") as f:
            rows = csv.reader(f)
            header = next(rows, None)
            if header is None or [h.strip() for h in header[:3]] != ["image_name", "class", "rle"]:
                raise ValueError(f"{os.fspath(path)}: the header is not image_name,class,rle")
            for i, row in enumerate(rows, start=2):
                if len(row) != 3:
                    raise ValueError(f"{os.fspath(path)}:{i}: expected 3 fields, got {len(row)}")
                out.setdefault(row[0], {})[row[1]] = row[2]
        return out
    finally:
        csv.field_size_limit(old)
