#!/usr/bin/python3
"""Per-image overhead of the Python client (clients/python) against the C
client (`osseg segment`), on one ossegd, the same image and the same model.

Both clients segment N copies of one image, one request at a time on one
connection (`osseg segment --in-flight 1` over a folder; a loop over
`Client.segment_all` in Python), in two ways: PNG bytes in the request
(the C client's default; `image=bytes` read from the file in Python) and a
file descriptor (`osseg segment --fd`; a path in Python). Per image:

  wall      the client's time for the image: for the C client the time
            between two of its --json lines (it prints and flushes one per
            image as it finishes; the first image, which includes the
            process start, is left out), for Python the time around
            segment_all;
  overhead  wall minus the daemon's own total_ms (request received -> Done
            written): what the client and the socket add.

Medians over every image of every round (rounds alternate C and Python).
The C client also formats CSV rows (to /dev/null); Python only builds its
result objects. With --arrays the Python loop also decodes every mask into
a NumPy array, reported separately (the C client has nothing like it).
The goal is Python overhead - C overhead < 10 ms per image.

Not a test (not in ctest); on a shared machine the numbers move with the
load. Usage:

    bench/bench_python_client.py [BUILD_DIR] [--model PATH] [--image PNG]
        [--count N] [--rounds R] [--threads N] [--arrays]

BUILD_DIR defaults to build/release (its bin/ossegd, bin/osseg, python/);
the model to tests/data/models/unetpp_r18_tiny_op13.onnx (bench/models/
unetpp_r18_512.onnx is a realistic alternative), the image to
data/samples/images/phantom_1000100.png (2048x2048).
"""

import argparse
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build", nargs="?", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--model", default=os.path.join(ROOT, "tests", "data", "models",
                                                    "unetpp_r18_tiny_op13.onnx"))
    ap.add_argument("--image", default=os.path.join(ROOT, "data", "samples", "images",
                                                    "phantom_1000100.png"))
    ap.add_argument("--count", type=int, default=20, help="images per round (20)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per client and mode (3)")
    ap.add_argument("--threads", type=int, help="ossegd --threads (default: its own)")
    ap.add_argument("--arrays", action="store_true",
                    help="also time Python with every mask decoded to a NumPy array")
    args = ap.parse_args()

    build = os.path.abspath(args.build)
    sys.path.insert(0, os.path.join(build, "python"))
    import osseg_client as oc  # noqa: E402 (from the build tree)

    for f in (args.model, args.image, os.path.join(build, "bin", "ossegd")):
        if not os.path.exists(f):
            sys.exit(f"bench_python_client: {f} is missing")
    tmp = tempfile.mkdtemp(prefix="osseg-bench-py-")
    sock = os.path.join(tmp, "ossegd.sock")
    images = os.path.join(tmp, "images")
    os.mkdir(images)
    paths = []
    for i in range(args.count):
        p = os.path.join(images, f"img_{i:03d}.png")
        shutil.copyfile(args.image, p)
        paths.append(p)

    argv = [os.path.join(build, "bin", "ossegd"), "--socket", sock, "--model", "m=" + args.model]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    print("daemon:", shlex.join(argv))
    log = open(os.path.join(tmp, "ossegd.log"), "wb")
    daemon = subprocess.Popen(argv, stdout=log, stderr=log)
    try:
        t0 = time.monotonic()
        while True:
            if daemon.poll() is not None:
                sys.exit(f"bench_python_client: ossegd exited with {daemon.returncode}")
            try:
                with oc.Client(sock, timeout=60) as c:
                    if c.health().ready:
                        break
            except oc.OssegConnectionError:
                time.sleep(0.05)
            if time.monotonic() - t0 > 600:
                sys.exit("bench_python_client: ossegd not ready in 600 s")
        run(oc, build, sock, images, paths, args)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def c_round(build, sock, images, fd):
    """One `osseg segment` run: [(wall_ms, total_ms)] per image but the
    first, and the first CSV row count check."""
    argv = [os.path.join(build, "bin", "osseg"), "segment", "--socket", sock, "--model", "m",
            "-o", os.devnull, "--json", "--in-flight", "1"] + (["--fd"] if fd else []) + [images]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    samples, last = [], None
    for line in p.stdout:
        now = time.perf_counter()
        rec = json.loads(line)
        if rec.get("status") != "ok":
            sys.exit(f"bench_python_client: osseg segment: {line.strip()}")
        if last is not None:
            samples.append(((now - last) * 1e3, rec["total_ms"]))
        last = now
    if p.wait() != 0:
        sys.exit(f"bench_python_client: {shlex.join(argv)} exited with {p.returncode}")
    return samples, shlex.join(argv)


def py_round(oc, sock, paths, fd, arrays):
    samples = []
    with oc.Client(sock, timeout=600) as c:
        for p in paths:
            t0 = time.perf_counter()
            if fd:
                r = c.segment_all(p, "m")
            else:
                with open(p, "rb") as f:
                    r = c.segment_all(f.read(), "m", name=os.path.basename(p))
            if arrays:
                r.stack()
            samples.append(((time.perf_counter() - t0) * 1e3, r.timings.total_ms))
    return samples


def med(samples, i):
    return statistics.median(s[i] for s in samples)


def run(oc, build, sock, images, paths, args):
    results = {}
    commands = {}
    kinds = ["C", "Python"] + (["Python+arrays"] if args.arrays else [])
    for mode in ("bytes", "fd"):
        fd = mode == "fd"
        for _ in range(args.rounds):
            for name in kinds:
                key = (name, mode)
                if name == "C":
                    s, cmd = c_round(build, sock, images, fd)
                    commands[mode] = cmd
                else:
                    s = py_round(oc, sock, paths, fd, name.endswith("arrays"))
                results.setdefault(key, []).extend(s)

    print(f"image {args.image} x {args.count}, model {args.model}, {args.rounds} round(s)")
    for mode in ("bytes", "fd"):
        print(f"C client ({mode}): {commands[mode]}")
    print("Python client: Client.segment_all(open(path).read(), 'm') (bytes) and "
          "Client.segment_all(path, 'm') (fd), one connection\n")
    print(f"{'client':<16}{'image as':<10}{'n':>5}{'wall ms':>10}{'daemon ms':>11}"
          f"{'overhead ms':>13}")
    for (name, mode), s in results.items():
        print(f"{name:<16}{mode:<10}{len(s):>5}{med(s, 0):>10.2f}{med(s, 1):>11.2f}"
              f"{statistics.median(w - t for w, t in s):>13.2f}")
    print()
    ok = True
    for mode in ("bytes", "fd"):
        c = statistics.median(w - t for w, t in results[("C", mode)])
        py = statistics.median(w - t for w, t in results[("Python", mode)])
        d = py - c
        ok = ok and d < 10
        print(f"{mode}: Python overhead - C overhead = {d:+.2f} ms per image (median; goal < 10)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
