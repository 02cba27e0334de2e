"""Tests of the Python client, clients/python/osseg_client.py.

Two halves:
- the wire format, framing errors, descriptor passing and pipelining
  against a fake daemon on a socketpair (the test plays the daemon);
- a real bin/ossegd from the build tree, started on a temporary socket with
  the tiny fixture models in tests/data/models (as tests/daemon/test_ossegd.c
  does), whose answers are compared with the C client's (`osseg segment`)
  for the same image, with ensembles, Dice, descriptors, raw pixels, errors
  and health/models/stats.

Run by CTest (test_python_client) with PYTHONPATH=BUILD/python and
OSSEG_SOURCE_DIR / OSSEG_BINARY_DIR set; by hand:

    PYTHONPATH=build/release/python OSSEG_BINARY_DIR=build/release \\
        /usr/bin/python3 tests/clients/python/test_osseg_client.py -v
"""

import array
import csv
import hashlib
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import zlib

import numpy as np

import osseg_client as oc
import osseg_pb2 as pb

SRC = os.environ.get("OSSEG_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BIN = os.environ.get("OSSEG_BINARY_DIR") or os.path.join(SRC, "build", "release")
MODELS = os.path.join(SRC, "tests", "data", "models")
MODEL_A = os.path.join(MODELS, "unetpp_r18_tiny_op13.onnx")
MODEL_B = os.path.join(MODELS, "unet_effb0_tiny_op13.onnx")
SAMPLES = os.path.join(SRC, "data", "samples")
IMAGE = os.path.join(SAMPLES, "images", "phantom_1000100.png")
GT_CSV = os.path.join(SAMPLES, "gt.csv")

# Generous: under ASan the daemon is several times slower.
TIMEOUT = 120.0


# ------------------------------------------------------------ helpers ---

def _chunk(ctype, body):
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def png_gray(pixels):
    """A gray PNG (8- or 16-bit, filter None) of a 2-D uint8/uint16 array."""
    h, w = pixels.shape
    depth = 16 if pixels.dtype == np.uint16 else 8
    rows = pixels.astype(">u2" if depth == 16 else np.uint8).view(np.uint8).reshape(h, -1)
    raw = np.hstack([np.zeros((h, 1), np.uint8), rows]).tobytes()
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, 0, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))


def _paeth(a, b, c):
    p = a + b - c
    pa, pb_, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb_ and pa <= pc else (b if pb_ <= pc else c)


def png_mask(mask, filters):
    """A 1-bit gray PNG of a bool mask, row y filtered with
    filters[y % len(filters)] (PNG filter types 0..4, one byte per pixel
    group as for every depth below 8)."""
    h, w = mask.shape
    packed = np.packbits(mask.astype(np.uint8), axis=1)
    out = bytearray()
    prev = [0] * packed.shape[1]
    for y in range(h):
        cur = packed[y].tolist()
        f = filters[y % len(filters)]
        line = []
        for i, x in enumerate(cur):
            a = cur[i - 1] if i else 0
            b = prev[i]
            c = prev[i - 1] if i else 0
            pred = [0, a, b, (a + b) >> 1, _paeth(a, b, c)][f]
            line.append((x - pred) & 0xFF)
        out.append(f)
        out.extend(line)
        prev = cur
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(bytes(out))) + _chunk(b"IEND", b""))


def synthetic_image(h, w, seed):
    """A radiograph-like test image: a gradient with a bright disc."""
    y, x = np.mgrid[0:h, 0:w]
    v = (x * 255 // w + y * 128 // h + seed * 31) & 0xFF
    disc = (x - w // 3) ** 2 + (y - h // 2) ** 2 < (w * w) // 25
    v[disc] = 250 - (seed & 7)
    return v.astype(np.uint8)


def read_csv_rles(path):
    """{image: [(class, rle), ...]} in file order, from a submission CSV."""
    csv.field_size_limit((1 << 31) - 1)
    out = {}
    with open(path, newline="") as f:
        rows = csv.reader(f)
        assert next(rows) == ["image_name", "class", "rle"]
        for image, cls, rle in rows:
            out.setdefault(image, []).append((cls, rle))
    return out


def dice(a, b):
    """Dice as DESIGN.md defines it: (2|A&B| + 1e-4) / (|A| + |B| + 1e-4)."""
    inter = int(np.count_nonzero(a & b))
    return (2.0 * inter + 1e-4) / (int(a.sum()) + int(b.sum()) + 1e-4)


class Daemon:
    """bin/ossegd on a temporary socket, stopped with SIGTERM (SIGKILL
    after a timeout)."""

    def __init__(self, directory, *extra):
        self.sock = os.path.join(directory, "ossegd.sock")
        self.log_path = os.path.join(directory, "ossegd.log")
        argv = [os.path.join(BIN, "bin", "ossegd"), "--socket", self.sock,
                "--model", "a=" + MODEL_A, "--model", "b=" + MODEL_B, "--threads", "1", *extra]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log)
        # Ready = listening, which ossegd does only after loading and
        # warming up every model; Health must say so.
        t0 = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ossegd exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with oc.Client(self.sock, timeout=TIMEOUT) as c:
                    if c.health().ready:
                        return
            except oc.OssegConnectionError:
                pass
            if time.monotonic() - t0 > TIMEOUT:
                self.stop()
                raise RuntimeError(f"ossegd not ready in {TIMEOUT:g} s:\n{self.log()}")
            time.sleep(0.02)

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()[-4000:]

    def stop(self):
        """The daemon's exit status (128 + signal if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return 128 + signal.SIGKILL
        rc = self.proc.returncode
        return 128 - rc if rc < 0 else rc


# ------------------------------------------------------- fake daemon ---

def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        b = sock.recv(n - len(buf))
        if not b:
            raise EOFError
        buf += b
    return bytes(buf)


def read_request(sock):
    """(Request, descriptors that came with the frame's first byte)."""
    data, anc, _, _ = sock.recvmsg(4, socket.CMSG_SPACE(4 * 4))
    fds = []
    for level, ctype, cdata in anc:
        if level == socket.SOL_SOCKET and ctype == socket.SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(cdata[:len(cdata) - len(cdata) % a.itemsize])
            fds.extend(a)
    if not data:
        raise EOFError
    data += recv_exact(sock, 4 - len(data))
    (n,) = struct.unpack("<I", data)
    req = pb.Request()
    req.ParseFromString(recv_exact(sock, n))
    return req, fds


def frame(resp):
    body = resp.SerializeToString()
    return struct.pack("<I", len(body)) + body


def mask_resp(rid, index, name, rle, w=4, h=2):
    r = pb.Response(id=rid)
    r.class_mask.index, r.class_mask.name, r.class_mask.rle = index, name, rle
    r.class_mask.area, r.class_mask.width, r.class_mask.height = 0, w, h
    return r


def done_resp(rid, w=4, h=2):
    r = pb.Response(id=rid)
    d = r.done
    d.width, d.height = w, h
    d.queue_ms = d.decode_ms = d.preprocess_ms = d.postprocess_ms = d.total_ms = 0.0
    return r


class FakeDaemon:
    """The other end of a socketpair, served by a function on a thread."""

    def __init__(self, serve, timeout=20.0):
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.client = oc.Client.from_socket(a, timeout=timeout)
        # The fake daemon gives up too, so a failing test cannot hang.
        b.settimeout(30)
        self.peer = b
        self.error = None

        def run():
            try:
                serve(b)
            except Exception as e:  # reported by join()
                self.error = e

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self):
        self.thread.join(30)
        self.client.close()
        self.peer.close()
        if self.error is not None:
            raise self.error


class WireTests(unittest.TestCase):
    """The client against a fake daemon: framing, encoding, errors."""

    def test_frame_is_le_length_then_request(self):
        got = {}

        def serve(s):
            raw = recv_exact(s, 4)
            got["len"] = struct.unpack("<I", raw)[0]
            got["req"] = pb.Request.FromString(recv_exact(s, got["len"]))
            h = pb.Response(id=got["req"].id)
            h.health.ready, h.health.version = True, "x"
            for f in ("models", "queue_depth", "in_flight", "connections", "max_frame_bytes",
                      "max_image_pixels"):
                setattr(h.health, f, 7)
            h.health.uptime_s = 1.5
            s.sendall(frame(h))

        fake = FakeDaemon(serve)
        health = fake.client.health()
        fake.join()
        self.assertEqual(got["req"].WhichOneof("kind"), "health")
        self.assertEqual(got["req"].id, 1)
        self.assertEqual(got["req"].version, pb.VERSION_1)
        self.assertEqual(got["len"], got["req"].ByteSize())
        self.assertEqual(health, oc.Health(True, "x", 7, 7, 7, 7, 1.5, 7, 7))

    def test_segment_options_reach_the_request(self):
        reqs = []
        gt_mask = np.zeros((2, 4), bool)
        gt_mask[0, 1:3] = True
        gt_mask[1, 3] = True

        def serve(s):
            req, fds = read_request(s)
            reqs.append((req, fds))
            s.sendall(frame(done_resp(req.id)))

        fake = FakeDaemon(serve)
        fake.client.segment_all(b"\x89PNG-bytes", ["a", "b"], vote="hard", vote_threshold=0,
                                threshold=0.3, class_thresholds={"Radius": 0.7},
                                classes=["Radius", "Ulna"], output="png",
                                ground_truth={"Radius": "1 2", "Ulna": gt_mask},
                                priority="batch", deadline_ms=250, name="x.png")
        fake.join()
        seg = reqs[0][0].segment
        self.assertEqual(reqs[0][1], [])
        self.assertEqual(seg.png, b"\x89PNG-bytes")
        self.assertEqual(list(seg.models), ["a", "b"])
        self.assertEqual(seg.vote.kind, pb.Vote.HARD)
        self.assertTrue(seg.vote.HasField("threshold"))
        self.assertEqual(seg.vote.threshold, 0.0)
        self.assertAlmostEqual(seg.threshold, 0.3, places=6)
        self.assertEqual([(c.name, round(c.threshold, 6)) for c in seg.class_thresholds],
                         [("Radius", 0.7)])
        self.assertEqual(list(seg.classes), ["Radius", "Ulna"])
        self.assertEqual(seg.output, pb.OUTPUT_PNG_MASK)
        self.assertEqual([(c.name, c.rle) for c in seg.ground_truth.rles.classes],
                         [("Radius", "1 2"), ("Ulna", "2 2 8 1")])
        self.assertEqual(seg.priority, pb.PRIORITY_BATCH)
        self.assertEqual(seg.deadline_ms, 250)
        self.assertEqual(seg.image_name, "x.png")

    def test_defaults_leave_fields_to_the_daemon(self):
        reqs = []

        def serve(s):
            req, _ = read_request(s)
            reqs.append(req)
            s.sendall(frame(done_resp(req.id)))

        fake = FakeDaemon(serve)
        fake.client.segment_all(b"png", "a")
        fake.join()
        seg = reqs[0].segment
        self.assertEqual(list(seg.models), ["a"])
        for f in ("vote", "threshold", "deadline_ms", "image_name", "ground_truth"):
            self.assertFalse(seg.HasField(f), f)
        self.assertEqual(seg.output, pb.OUTPUT_RLE)
        self.assertEqual(seg.priority, pb.PRIORITY_INTERACTIVE)

    def test_bad_arguments_send_nothing(self):
        a, b = socket.socketpair()
        self.addCleanup(b.close)
        c = oc.Client.from_socket(a)
        with self.assertRaises(ValueError):
            c.segment(b"png", "a", output="jpeg")
        with self.assertRaises(ValueError):
            c.segment(b"png", "a", vote="majority")
        with self.assertRaises(ValueError):
            c.segment(b"png", "a", priority="urgent")
        with self.assertRaises(TypeError):
            c.segment(b"png", [1])
        with self.assertRaises(TypeError):
            c.segment(np.zeros((4, 4), np.float32), "a")
        with self.assertRaises(ValueError):
            c.segment(np.zeros((4, 4, 3), np.uint8), "a")
        with self.assertRaises(TypeError):
            c.segment(12, "a")
        with self.assertRaises(ValueError):
            c.segment("/dev/null", "a")  # not a regular file
        with self.assertRaises(FileNotFoundError):
            c.segment("/nonexistent/x.png", "a")
        self.assertEqual(c._next_id, 1)  # nothing was sent
        c.close()

    def test_raw_pixels(self):
        reqs = []

        def serve(s):
            for _ in range(3):
                req, _ = read_request(s)
                reqs.append(req)
                s.sendall(frame(done_resp(req.id)))

        fake = FakeDaemon(serve)
        px16 = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 4099)
        fake.client.segment_all(px16, "a")
        px8 = np.arange(12, dtype=np.uint8).reshape(4, 3)
        fake.client.segment_all(np.asfortranarray(px8), "a")  # not C-contiguous
        fake.client.segment_all(px16.astype(">u2"), "a")  # big-endian input
        fake.join()
        raw = reqs[0].segment.raw
        self.assertEqual((raw.width, raw.height, raw.bit_depth), (4, 3, 16))
        self.assertEqual(raw.pixels, px16.astype("<u2").tobytes())
        raw = reqs[1].segment.raw
        self.assertEqual((raw.width, raw.height, raw.bit_depth), (3, 4, 8))
        self.assertEqual(raw.pixels, px8.tobytes())
        self.assertEqual(reqs[2].segment.raw.pixels, px16.astype("<u2").tobytes())

    def test_descriptor_travels_with_the_frame(self):
        got = []

        def serve(s):
            for _ in range(3):
                req, fds = read_request(s)
                contents = []
                for fd in fds:
                    os.lseek(fd, 0, os.SEEK_SET)
                    with os.fdopen(fd, "rb") as f:
                        contents.append(f.read())
                got.append((req, contents))
                s.sendall(frame(done_resp(req.id)))

        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "hand.png")
            with open(path, "wb") as f:
                f.write(b"PNG-ish content")
            fake = FakeDaemon(serve)
            fake.client.segment_all(path, "a")
            with open(path, "rb") as f:
                f.read()  # the daemon reads from offset 0 anyway
                fake.client.segment_all(f, "a")
                self.assertFalse(f.closed)  # the caller's file stays open
            fake.client.segment_all(io.BytesIO(b"from memory"), "a")
            fake.join()
        for req, contents in got[:2]:
            self.assertEqual(req.segment.WhichOneof("image"), "fd")
            self.assertEqual(req.segment.fd.size_hint, 15)
            self.assertEqual(req.segment.image_name, "hand.png")
            self.assertEqual(contents, [b"PNG-ish content"])
        # No descriptor: bytes.
        self.assertEqual(got[2][0].segment.png, b"from memory")
        self.assertEqual(got[2][1], [])

    def test_frame_over_the_limit_is_refused_and_breaks_the_client(self):
        def serve(s):
            req, _ = read_request(s)
            s.sendall(struct.pack("<I", 1001))  # no body follows

        fake = FakeDaemon(serve)
        fake.client.max_frame_bytes = 1000
        with self.assertRaisesRegex(oc.ProtocolError, "1001 bytes is over the limit of 1000"):
            fake.client.health()
        with self.assertRaisesRegex(oc.ProtocolError, "over the limit"):
            fake.client.health()  # broken for good
        fake.join()

    def test_truncated_and_unparsable_frames(self):
        for payload, pattern, cls in [
            (struct.pack("<I", 10) + b"abc", "middle of a frame", oc.ProtocolError),
            (struct.pack("<I", 2) + b"\xff\xff", "does not parse", oc.ProtocolError),
            (struct.pack("<I", 0), "does not parse", oc.ProtocolError),  # no id
            (b"", "closed the connection", oc.OssegConnectionError),
        ]:
            def serve(s, payload=payload):
                read_request(s)
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)

            fake = FakeDaemon(serve)
            with self.assertRaisesRegex(cls, pattern):
                fake.client.models()
            fake.join()

    def test_response_for_a_request_not_in_flight(self):
        def serve(s):
            read_request(s)
            s.sendall(frame(done_resp(99)))

        fake = FakeDaemon(serve)
        with self.assertRaisesRegex(oc.ProtocolError, "request 99"):
            fake.client.stats()
        fake.join()

    def test_wrong_kind_of_response(self):
        def serve(s):
            req, _ = read_request(s)
            s.sendall(frame(done_resp(req.id)))

        fake = FakeDaemon(serve)
        with self.assertRaisesRegex(oc.ProtocolError, "expected a health response"):
            fake.client.health()
        fake.join()

    def test_timeout_keeps_a_partial_frame(self):
        go = threading.Event()

        def serve(s):
            req, _ = read_request(s)
            data = frame(mask_resp(req.id, 0, "finger-1", "1 3")) + frame(done_resp(req.id))
            s.sendall(data[:5])
            go.wait(20)
            s.sendall(data[5:])

        fake = FakeDaemon(serve, timeout=0.2)
        stream = fake.client.segment(b"png", "a")
        t0 = time.monotonic()
        with self.assertRaises(oc.OssegTimeoutError) as cm:
            next(stream)
        self.assertIsInstance(cm.exception, TimeoutError)
        self.assertGreaterEqual(time.monotonic() - t0, 0.15)
        go.set()
        fake.client.timeout = 20
        m = next(stream)
        self.assertEqual((m.index, m.name, m.rle), (0, "finger-1", "1 3"))
        self.assertIsInstance(next(stream), oc.Timings)
        self.assertRaises(StopIteration, next, stream)
        fake.join()

    def test_late_answer_after_a_timeout_is_dropped(self):
        go = threading.Event()

        def serve(s):
            r1, _ = read_request(s)
            go.wait(20)
            h = pb.Response(id=r1.id)
            h.health.ready, h.health.version = True, "late"
            for f in ("models", "queue_depth", "in_flight", "connections", "max_frame_bytes",
                      "max_image_pixels"):
                setattr(h.health, f, 0)
            h.health.uptime_s = 0
            s.sendall(frame(h))
            r2, _ = read_request(s)
            m = pb.Response(id=r2.id)
            m.models.models.add(name="a", sha256="0" * 64, input_size=64, precision="fp32")
            s.sendall(frame(m))

        fake = FakeDaemon(serve, timeout=0.2)
        with self.assertRaises(oc.OssegTimeoutError):
            fake.client.health()
        go.set()
        fake.client.timeout = 20
        self.assertEqual([m.name for m in fake.client.models()], ["a"])
        self.assertEqual(fake.client._discard, set())  # nothing left to wait for
        fake.join()

    def test_pipelined_responses_reach_their_streams(self):
        def serve(s):
            r1, _ = read_request(s)
            r2, _ = read_request(s)
            # Interleaved, the second request first.
            for resp in (mask_resp(r2.id, 0, "x", "2 1"), mask_resp(r1.id, 0, "x", "1 1"),
                         done_resp(r2.id), mask_resp(r1.id, 1, "y", "3 2"), done_resp(r1.id)):
                s.sendall(frame(resp))

        fake = FakeDaemon(serve)
        s1 = fake.client.segment(b"png", "a")
        s2 = fake.client.segment(b"png", "a")
        self.assertNotEqual(s1.id, s2.id)
        r1 = s1.result()
        r2 = s2.result()
        fake.join()
        self.assertEqual(r1.rles(), {"x": "1 1", "y": "3 2"})
        self.assertEqual(r2.rles(), {"x": "2 1"})
        self.assertEqual(r1["y"].to_array().tolist(),
                         [[False, False, True, True], [False, False, False, False]])

    def test_closed_stream_drops_its_responses(self):
        def serve(s):
            r1, _ = read_request(s)
            r2, _ = read_request(s)
            for resp in (mask_resp(r1.id, 0, "x", "1 1"), done_resp(r1.id)):
                s.sendall(frame(resp))
            m = pb.Response(id=r2.id)
            m.models.SetInParent()
            s.sendall(frame(m))

        fake = FakeDaemon(serve)
        with fake.client.segment(b"png", "a") as stream:
            pass  # abandoned unread
        self.assertTrue(stream.finished)
        self.assertEqual(fake.client.models(), [])
        fake.join()

    def test_error_response_raises_its_class(self):
        def serve(s):
            for code in range(8):
                req, _ = read_request(s)
                r = pb.Response(id=req.id)
                r.error.code, r.error.message = code, f"message {code}"
                s.sendall(frame(r))

        fake = FakeDaemon(serve)
        for code in range(8):
            stream = fake.client.segment(b"png", "a")
            with self.assertRaises(oc.DaemonError) as cm:
                list(stream)
            e = cm.exception
            self.assertIs(type(e), oc.ERROR_CLASSES[code])
            self.assertEqual(e.code, code)
            self.assertEqual(e.code_name, pb.Error.Code.Name(code))
            self.assertEqual(e.message, f"message {code}")
            self.assertEqual(e.request_id, stream.id)
            self.assertTrue(stream.finished)
        fake.join()

    def test_permission_denied_breaks_the_connection(self):
        def serve(s):
            read_request(s)
            r = pb.Response(id=0)
            r.error.code, r.error.message = pb.Error.PERMISSION_DENIED, "permission denied: uid 7"
            s.sendall(frame(r))
            s.shutdown(socket.SHUT_WR)

        fake = FakeDaemon(serve)
        with self.assertRaises(oc.PermissionDeniedError) as cm:
            fake.client.health()
        e = cm.exception
        self.assertIsInstance(e, oc.DaemonError)
        self.assertIsInstance(e, oc.OssegConnectionError)
        self.assertEqual((e.code_name, e.request_id), ("PERMISSION_DENIED", 0))
        self.assertEqual(e.message, "permission denied: uid 7")
        # The connection is unusable from then on.
        with self.assertRaises(oc.PermissionDeniedError):
            fake.client.health()
        fake.join()

    def test_one_exception_class_per_error_code(self):
        codes = dict(pb.Error.Code.items())
        self.assertEqual(sorted(oc.ERROR_CLASSES), sorted(codes.values()))
        for name, value in codes.items():
            cls = oc.ERROR_CLASSES[value]
            self.assertTrue(issubclass(cls, oc.DaemonError))
            self.assertTrue(issubclass(cls, oc.OssegError))
            self.assertEqual((cls.code, cls.code_name), (value, name))
        self.assertEqual(len(set(oc.ERROR_CLASSES.values())), len(codes))
        self.assertTrue(issubclass(oc.OssegConnectionError, ConnectionError))
        self.assertTrue(issubclass(oc.ProtocolError, oc.OssegConnectionError))
        self.assertFalse(issubclass(oc.OssegConnectionError, oc.DaemonError))

    def test_send_reads_responses_while_the_daemon_is_not_reading(self):
        # The fake daemon answers the first request with more bytes than
        # the socket buffers hold and reads nothing until they are all
        # written: a client that only wrote while sending its second,
        # large request would wait for it forever.
        big = "1 1 " * 200000
        state = {}

        def serve(s):
            r1, _ = read_request(s)
            for i in range(16):
                s.sendall(frame(mask_resp(r1.id, i, f"c{i}", big.strip(), w=1 << 20, h=1)))
            s.sendall(frame(done_resp(r1.id)))
            r2, _ = read_request(s)
            state["r2_len"] = len(r2.segment.png)
            s.sendall(frame(done_resp(r2.id)))

        fake = FakeDaemon(serve)
        s1 = fake.client.segment(b"png", "a")
        s2 = fake.client.segment(bytes(8 << 20), "a")
        self.assertEqual(len([m for m in s1 if isinstance(m, oc.ClassMask)]), 16)
        self.assertIsNotNone(s2.result().timings)
        fake.join()
        self.assertEqual(state["r2_len"], 8 << 20)

    def test_connect_failure_names_the_path(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "none.sock")
            with self.assertRaisesRegex(oc.OssegConnectionError, "none.sock: cannot connect"):
                oc.Client(path)

    def test_closed_client(self):
        a, b = socket.socketpair()
        self.addCleanup(b.close)
        c = oc.Client.from_socket(a)
        with c:
            pass
        self.assertTrue(c.closed)
        with self.assertRaisesRegex(oc.OssegConnectionError, "closed"):
            c.health()


class MaskTests(unittest.TestCase):
    """RLE and PNG mask decoding, against masks made here."""

    def masks(self):
        rng = np.random.default_rng(7)
        out = [np.zeros((5, 7), bool), np.ones((5, 7), bool)]
        m = np.zeros((5, 7), bool)
        m[0, 0] = m[-1, -1] = True
        out.append(m)
        m = np.zeros((6, 9), bool)
        m[2, :] = True
        m[3, :4] = True  # a run across a row end
        out.append(m)
        out.append(rng.random((64, 96)) < 0.5)  # many runs: the XOR path
        out.append(rng.random((300, 257)) < 0.002)  # few runs: the slice path
        return out

    def test_rle_round_trip(self):
        for m in self.masks():
            text = oc.rle_encode(m)
            self.assertTrue(np.array_equal(oc.rle_decode(text, *m.shape), m), text[:80])
        self.assertEqual(oc.rle_encode(np.zeros((3, 3))), "")
        self.assertEqual(oc.rle_encode(np.array([[0, 1, 1], [1, 0, 0]])), "2 3")
        # Any dtype, any memory order.
        m = self.masks()[4]
        self.assertEqual(oc.rle_encode(np.asfortranarray(m).astype(np.uint8) * 7),
                         oc.rle_encode(m))
        self.assertEqual(oc.rle_encode(m.T), oc.rle_encode(np.ascontiguousarray(m.T)))
        # Runs that touch decode as one.
        self.assertEqual(oc.rle_encode(oc.rle_decode("1 2 3 2", 1, 6)), "1 4")

    def test_rle_rejects_bad_text(self):
        for text in ("1", "0 2", "1 0", "3 2 1 1", "1 3 2 2", "5 3", "1 x", "1.5 2", "-1 2"):
            with self.assertRaises(ValueError, msg=text):
                oc.rle_decode(text, 1, 6)

    def test_png_masks_with_every_filter(self):
        for m in self.masks():
            for filters in ([0], [1], [2], [3], [4], [0, 1, 2, 3, 4]):
                got = oc.png_mask_decode(png_mask(m, filters), *m.shape)
                self.assertTrue(np.array_equal(got, m), f"filters {filters}, {m.shape}")

    def test_png_that_is_not_a_mask(self):
        with self.assertRaisesRegex(ValueError, "signature"):
            oc.png_mask_decode(b"GIF89a")
        with self.assertRaisesRegex(ValueError, "1-bit"):
            oc.png_mask_decode(png_gray(np.zeros((2, 2), np.uint8)))
        with self.assertRaisesRegex(ValueError, "expected"):
            oc.png_mask_decode(png_mask(np.zeros((2, 3), bool), [0]), 3, 2)

    def test_read_rle_csv(self):
        if not os.path.exists(GT_CSV):
            self.skipTest(f"{GT_CSV} is absent")
        gt = oc.read_rle_csv(GT_CSV)
        self.assertIn("phantom_1000100.png", gt)
        self.assertEqual(len(gt["phantom_1000100.png"]), 29)
        # Real masks: decoding and encoding again gives the file's text.
        for cls, text in gt["phantom_1000100.png"].items():
            self.assertTrue(oc.rle_encode(oc.rle_decode(text, 2048, 2048)) == text, cls)


# ------------------------------------------------------- real daemon ---

_daemon = None
_tmp = None


def setUpModule():
    global _daemon, _tmp
    for f in (MODEL_A, MODEL_B):
        if not os.path.exists(f):
            raise unittest.SkipTest(f"{f} is absent")
    ossegd = os.path.join(BIN, "bin", "ossegd")
    if not os.access(ossegd, os.X_OK):
        raise RuntimeError(f"{ossegd} is not built (OSSEG_BINARY_DIR={BIN})")
    _tmp = tempfile.TemporaryDirectory(prefix="osseg-pyclient-")
    _daemon = Daemon(_tmp.name)


def tearDownModule():
    if _daemon is not None:
        rc = _daemon.stop()
        log = _daemon.log()
        _tmp.cleanup()
        # Under ASan a leak or error in ossegd shows up as its exit status.
        if rc != 0:
            raise RuntimeError(f"ossegd exited with {rc}:\n{log}")


class DaemonTests(unittest.TestCase):
    """The client against a real ossegd serving models a and b."""

    def setUp(self):
        self.client = oc.Client(_daemon.sock, timeout=TIMEOUT)
        self.addCleanup(self.client.close)
        self.tmp = tempfile.mkdtemp(prefix="t-", dir=_tmp.name)

    def need(self, *paths):
        for p in paths:
            if not os.path.exists(p):
                self.skipTest(f"{p} is absent")

    def c_client(self, image, *options):
        """`osseg segment` (the C client) on the same daemon: [(class, rle)]
        and its --json line."""
        out = os.path.join(self.tmp, "c.csv")
        p = subprocess.run([os.path.join(BIN, "bin", "osseg"), "segment", "--socket",
                            _daemon.sock, "-o", out, "--json", *options, image],
                           capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(p.returncode, 0, p.stderr)
        rows = read_csv_rles(out)
        self.assertEqual(list(rows), [os.path.basename(image)])
        return rows[os.path.basename(image)], json.loads(p.stdout.splitlines()[0])

    def assert_same_rles(self, got, want):
        """got == want for {class: rle} dicts or [(class, rle)] lists, with
        a short message: unittest's own diff of 250 kB RLE strings would
        take practically forever."""
        got = list(got.items()) if isinstance(got, dict) else list(got)
        want = list(want.items()) if isinstance(want, dict) else list(want)
        if got == want:
            return
        if [k for k, _ in got] != [k for k, _ in want]:
            self.fail(f"classes differ: {[k for k, _ in got]} != {[k for k, _ in want]}")
        bad = [k for (k, a), (_, b) in zip(got, want) if a != b]
        self.fail(f"{len(bad)} of {len(want)} masks differ: {', '.join(bad)}")

    def assert_same_masks(self, result, rows):
        self.assert_same_rles([(m.name, m.rle) for m in result.masks], rows)

    # -- health, models, stats --

    def test_health(self):
        h = self.client.health()
        self.assertTrue(h.ready)
        self.assertEqual(h.models, 2)
        self.assertTrue(h.version)
        self.assertGreaterEqual(h.connections, 1)
        self.assertEqual(h.max_frame_bytes, 64 << 20)
        self.assertGreater(h.max_image_pixels, 0)
        self.assertGreater(h.uptime_s, 0)

    def test_models(self):
        models = {m.name: m for m in self.client.models()}
        self.assertEqual(sorted(models), ["a", "b"])
        for name, path in (("a", MODEL_A), ("b", MODEL_B)):
            m = models[name]
            with open(path, "rb") as f:
                self.assertEqual(m.sha256, hashlib.sha256(f.read()).hexdigest())
            self.assertEqual(m.input_size, 64)
            self.assertEqual(m.precision, "fp32")
            self.assertEqual(len(m.classes), 29)
            self.assertEqual((m.classes[0], m.classes[-1]), ("finger-1", "Ulna"))
            self.assertGreaterEqual(m.generation, 1)

    def test_stats_count_outcomes(self):
        before = self.client.stats()
        png = png_gray(synthetic_image(96, 80, 1))
        self.client.segment_all(png, "a")
        with self.assertRaises(oc.UnknownModelError):
            self.client.segment_all(png, "nope")
        after = self.client.stats()
        self.assertEqual(after.outcomes["ok"], before.outcomes["ok"] + 1)
        self.assertEqual(after.outcomes["UNKNOWN_MODEL"], before.outcomes["UNKNOWN_MODEL"] + 1)
        self.assertEqual(after.models["a"].runs, before.models["a"].runs + 1)
        self.assertGreater(after.bytes_in, before.bytes_in)
        self.assertGreaterEqual(after.connections_total, 1)
        self.assertEqual(after.latency[-1][0], float("inf"))

    # -- segment --

    def test_segment_path_equals_the_c_client(self):
        self.need(IMAGE)
        stream = self.client.segment(IMAGE, ["a"])
        items = list(stream)
        rows, _ = self.c_client(IMAGE, "--model", "a")
        masks = [i for i in items if isinstance(i, oc.ClassMask)]
        # 29 masks in class order, then the timings, nothing else.
        self.assertEqual([m.index for m in masks], list(range(29)))
        self.assertIsInstance(items[-1], oc.Timings)
        self.assertEqual(len(items), 30)
        self.assertIs(stream.timings, items[-1])
        self.assertEqual((stream.timings.width, stream.timings.height), (2048, 2048))
        self.assertEqual(list(stream.timings.inference), ["a"])
        self.assert_same_rles([(m.name, m.rle) for m in masks], rows)
        for m in masks[::7]:
            a = m.to_array()
            self.assertEqual(a.shape, (2048, 2048))
            self.assertEqual(int(a.sum()), m.area)

    def test_bytes_file_and_fd_give_the_same_masks(self):
        self.need(IMAGE)
        ref = self.client.segment_all(IMAGE, "a").rles()
        with open(IMAGE, "rb") as f:
            data = f.read()
            self.assert_same_rles(self.client.segment_all(data, "a").rles(), ref)
            self.assert_same_rles(self.client.segment_all(memoryview(data), "a").rles(), ref)
            # An open file travels as a descriptor, read from offset 0.
            self.assert_same_rles(self.client.segment_all(f, "a").rles(), ref)
        self.assert_same_rles(self.client.segment_all(io.BytesIO(data), "a").rles(), ref)

    def test_hard_ensembles(self):
        self.need(IMAGE)
        union = self.client.segment_all(IMAGE, ["a", "b"], vote="hard", vote_threshold=0)
        both = self.client.segment_all(IMAGE, ["a", "b"], vote="hard")
        self.assert_same_masks(union, self.c_client(IMAGE, "--model", "a,b", "--vote", "hard:0")[0])
        self.assert_same_masks(both, self.c_client(IMAGE, "--model", "a,b", "--vote", "hard")[0])
        self.assertEqual(list(union.timings.inference), ["a", "b"])
        # Two models: more than 0 votes is the union, more than 1 (the
        # default, 2 // 2) the intersection of the single-model masks.
        a = self.client.segment_all(IMAGE, "a")
        b = self.client.segment_all(IMAGE, "b")
        for name in ("finger-1", "Capitate", "Ulna"):
            ma, mb = a[name].to_array(), b[name].to_array()
            self.assertTrue(np.array_equal(union[name].to_array(), ma | mb), name)
            self.assertTrue(np.array_equal(both[name].to_array(), ma & mb), name)

    def test_soft_ensemble(self):
        self.need(IMAGE)
        soft = self.client.segment_all(IMAGE, ["a", "b"], vote="soft")
        self.assert_same_masks(soft, self.c_client(IMAGE, "--model", "a,b", "--vote", "soft")[0])

    def test_dice_against_gt_csv(self):
        self.need(IMAGE, GT_CSV)
        name = os.path.basename(IMAGE)
        gt = oc.read_rle_csv(GT_CSV)[name]
        stream = self.client.segment(IMAGE, ["a", "b"], vote="soft", ground_truth=gt)
        items = list(stream)
        masks = [i for i in items if isinstance(i, oc.ClassMask)]
        self.assertIsInstance(items[-2], oc.DiceReport)
        self.assertIs(items[-2], stream.dice)
        report = stream.dice
        self.assertEqual(list(report.classes), [m.name for m in masks])
        # Dice computed here from the masks and the ground truth.
        for m in masks:
            want = dice(m.to_array(), oc.rle_decode(gt[m.name], 2048, 2048))
            self.assertAlmostEqual(report.classes[m.name], want, places=9, msg=m.name)
        self.assertAlmostEqual(report.mean, sum(report.classes.values()) / len(masks), places=12)
        _, js = self.c_client(IMAGE, "--model", "a,b", "--vote", "soft", "--gt", GT_CSV)
        self.assertAlmostEqual(report.mean, js["dice"], places=8)
        # Dice only: no masks, the same report; ground truth as arrays.
        arrays = {k: oc.rle_decode(v, 2048, 2048) for k, v in list(gt.items())[:3]}
        only = self.client.segment_all(IMAGE, ["a", "b"], vote="soft", output="dice",
                                       ground_truth=arrays)
        self.assertEqual(only.masks, [])
        self.assertEqual(list(only.dice.classes), list(arrays))
        for k in arrays:
            self.assertAlmostEqual(only.dice.classes[k], report.classes[k], places=12)

    def test_dice_against_label_json(self):
        labels = os.path.join(SAMPLES, "labels")
        label = os.path.join(labels, os.path.basename(IMAGE)[:-4] + ".json")
        self.need(IMAGE, label)
        with open(label) as f:
            text = f.read()
        r = self.client.segment_all(IMAGE, "a", ground_truth=text)
        self.assertEqual(len(r.dice.classes), 29)  # every class is scored
        self.assertAlmostEqual(r.dice.mean, sum(r.dice.classes.values()) / 29, places=12)
        _, js = self.c_client(IMAGE, "--model", "a", "--labels", labels)
        self.assertAlmostEqual(r.dice.mean, js["dice"], places=8)
        with self.assertRaises(oc.BadRequestError):
            self.client.segment_all(IMAGE, "a", ground_truth="{not json")

    def test_png_masks_equal_rle_masks(self):
        self.need(IMAGE)
        rle = self.client.segment_all(IMAGE, "b")
        png = self.client.segment_all(IMAGE, "b", output="png")
        self.assertEqual([m.name for m in png.masks], [m.name for m in rle.masks])
        for mp, mr in zip(png.masks, rle.masks):
            self.assertIsNone(mp.rle)
            self.assertTrue(mp.png.startswith(b"\x89PNG"))
            a = mp.to_array()
            self.assertTrue(np.array_equal(a, mr.to_array()), mp.name)
            self.assertEqual(int(a.sum()), mp.area)
        self.assertEqual(png.stack().shape, (29, 2048, 2048))

    def test_raw_pixels_equal_png(self):
        px = synthetic_image(300, 200, 3)
        path = os.path.join(self.tmp, "synthetic.png")
        with open(path, "wb") as f:
            f.write(png_gray(px))
        raw = self.client.segment_all(px, ["a", "b"], vote="soft")
        self.assertEqual((raw.timings.width, raw.timings.height), (200, 300))
        self.assert_same_masks(raw, self.c_client(path, "--model", "a,b", "--vote", "soft")[0])
        # 16-bit pixels against the same 16-bit PNG, and a transposed
        # (not C-contiguous) array against its own PNG.
        px16 = (px.astype(np.uint16) * 257) ^ np.uint16(0x5A)
        self.assert_same_rles(self.client.segment_all(px16, "a").rles(),
                              self.client.segment_all(png_gray(px16), "a").rles())
        self.assert_same_rles(self.client.segment_all(px.T, "a").rles(),
                              self.client.segment_all(png_gray(np.ascontiguousarray(px.T)),
                                                      "a").rles())

    def test_classes_and_thresholds(self):
        px = synthetic_image(256, 256, 5)
        base = self.client.segment_all(px, "a")
        some = self.client.segment_all(px, "a", classes=["Radius", "Ulna"])
        self.assertEqual([(m.index, m.name) for m in some.masks], [(27, "Radius"), (28, "Ulna")])
        self.assert_same_rles(some.rles(), {k: base.rles()[k] for k in ("Radius", "Ulna")})
        high = self.client.segment_all(px, "a", threshold=0.9)
        for m in high.masks:  # a higher threshold keeps a subset
            self.assertFalse((m.to_array() & ~base[m.name].to_array()).any(), m.name)
        one = self.client.segment_all(px, "a", class_thresholds={"Ulna": 0.9})
        self.assertTrue(one["Ulna"].rle == high["Ulna"].rle)
        self.assertTrue(one["Radius"].rle == base["Radius"].rle)

    # -- pipelining, cancel --

    def test_pipelined_requests_on_one_connection(self):
        images = [synthetic_image(128, 128, s) for s in range(3)]
        alone = [self.client.segment_all(px, "a").rles() for px in images]
        streams = [self.client.segment(px, "a") for px in images]
        got = [s.result().rles() for s in reversed(streams)][::-1]
        for g, a in zip(got, alone):
            self.assert_same_rles(g, a)

    def test_cancel(self):
        self.need(IMAGE)
        # Two requests keep the two workers busy; the third waits in the
        # queue when its Cancel arrives, so it ends CANCELLED.
        busy = [self.client.segment(IMAGE, ["a", "b"], vote="soft") for _ in range(2)]
        victim = self.client.segment(IMAGE, "a")
        self.client.cancel(victim)
        with self.assertRaises(oc.CancelledError) as cm:
            list(victim)
        self.assertEqual(cm.exception.code, pb.Error.CANCELLED)
        self.assertEqual(cm.exception.request_id, victim.id)
        for s in busy:
            self.assertEqual(len(s.result().masks), 29)
        self.client.cancel(123456)  # nothing in flight with that id: a no-op
        self.assertTrue(self.client.health().ready)

    def test_abandoned_stream_does_not_disturb_the_next_requests(self):
        px = synthetic_image(128, 128, 9)
        with self.client.segment(px, "a") as s:
            next(s)
        self.assertEqual(len(self.client.segment_all(px, "b").masks), 29)
        self.assertEqual(len(self.client.models()), 2)

    # -- errors --

    def test_daemon_errors_raise_their_classes(self):
        huge = (b"\x89PNG\r\n\x1a\n" +
                _chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)) +
                _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b""))
        good = png_gray(synthetic_image(64, 64, 2))
        empty = os.path.join(self.tmp, "empty.png")
        open(empty, "wb").close()
        r, w = os.pipe()
        self.addCleanup(os.close, w)
        pipe = os.fdopen(r, "rb")
        self.addCleanup(pipe.close)
        cases = [
            (good, {"models": ["nope"]}, oc.UnknownModelError, "nope"),
            (b"not a png", {}, oc.BadImageError, "PNG"),
            (empty, {}, oc.BadImageError, "empty"),
            (huge, {}, oc.ImageTooLargeError, "20000x20000"),
            (good, {"threshold": 1.5}, oc.BadRequestError, "threshold"),
            (pipe, {}, oc.BadRequestError, "regular file"),
            (good, {"output": "dice"}, oc.BadRequestError, "ground_truth"),
        ]
        if os.path.exists(IMAGE):
            cases.append((IMAGE, {"deadline_ms": 1}, oc.DeadlineExceededError, "deadline"))
        for image, kw, cls, word in cases:
            kw = dict(kw)
            models = kw.pop("models", ["a"])
            with self.assertRaises(cls, msg=cls.__name__) as cm:
                self.client.segment_all(image, models, **kw)
            e = cm.exception
            self.assertIs(type(e), cls)
            self.assertEqual(e.code, cls.code)
            self.assertEqual(e.code_name, pb.Error.Code.Name(cls.code))
            self.assertIn(word, e.message)
            self.assertIn(e.code_name, str(e))
            # The connection stays usable after an Error.
            self.assertTrue(self.client.health().ready)

    def test_small_frame_limit_breaks_only_that_client(self):
        self.need(IMAGE)
        with oc.Client(_daemon.sock, timeout=TIMEOUT, max_frame_bytes=4096) as c:
            with self.assertRaisesRegex(oc.ProtocolError, "over the limit of 4096"):
                c.segment_all(IMAGE, "a")
            with self.assertRaises(oc.ProtocolError):
                c.health()
        self.assertTrue(self.client.health().ready)


if __name__ == "__main__":
    unittest.main()
