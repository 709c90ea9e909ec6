"""Crypto benchmark: envelope and streaming encryption against raw AES-GCM, in one run.

Run it with `.venv/bin/python bench/crypto.py` (`--quick` for a smoke run). It measures, through
the real `vigil.crypto` code:

1. **1 MiB values**: `envelope.seal` + `envelope.open_value` (header, binding AAD, budget counter)
   against raw `AESGCM.encrypt` + `AESGCM.decrypt` of the same buffers with a fresh
   `os.urandom(12)` nonce and no AAD. Target >= 0.8x.
   A second baseline, raw AES-GCM with `update_into` into a fresh buffer per value (the fastest
   raw path `cryptography` 46 has that still yields one ciphertext per value), is measured too and
   the ratio is taken against the stronger of the two. `update_into` into one reused buffer is
   printed for reference (it keeps no ciphertext, so it is not like-for-like).
2. **1 KiB records**: the same, with a binding built for every record (a record id per row, as
   repositories will do, through `BindingScope.bind`), against raw AES-GCM on the same buffers.
   Target >= 0.4x. Figures with a full `Binding(...)` per value and with one prebuilt binding
   are printed too, to show what building the binding costs.
3. **Streaming 1 GiB** (`--stream-mib`): `streaming.encrypt_stream` of 1 MiB input chunks
   written to a file in the system temp dir, against encrypting the same data raw and writing
   it, two ways: one `AESGCM.encrypt` per 1 MiB chunk, and one per 64 KiB piece (STREAM's
   segmenting without its key derivation and nonce layout). All three write through the same
   1 MiB-buffered file and advance in lockstep. Target >= 0.7x of the stronger (median step).
   Peak memory: a fresh interpreter streams 64 MiB and then 1 GiB and reports its resident
   high-water mark (Linux `VmHWM`) over its size after imports; flat means the growth does not
   depend on the object size. (In-process growth is printed too, but the parent's heap already
   holds freed buffers from earlier runs, so it understates.)

Value benchmarks interleave small batches of every variant and take each one's median batch rate
(see `interleaved`); the three streaming variants run in lockstep, one MiB of input each in turn,
and are compared on their median step rate. Either way drift on a
shared machine hits baseline and Vigil alike; load average is printed before and after. Exit
status 0 only if every target is met.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cryptography
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vigil.crypto import envelope, streaming
from vigil.crypto.binding import Binding, BindingScope
from vigil.crypto.datakey import DataKey
from vigil.crypto.material import SecretKey

MIB = 1024 * 1024


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def interleaved(runs: dict[str, Callable[[], int]], seconds: float) -> dict[str, float]:
    """Operations per second of each run, measured by interleaving small batches of all of them
    for `seconds`, then taking each one's *median* batch rate.

    The machine is shared: load comes in bursts that last longer than one batch. Interleaving
    makes every variant see the same bursts, and the median ignores the batches a burst hit,
    which best-of-N over long runs did not (it swung ratios by 2x between runs here).
    """
    samples: dict[str, list[float]] = {name: [] for name in runs}
    clock = time.perf_counter
    end = clock() + seconds
    while clock() < end:
        for name, run in runs.items():
            start = clock()
            done = run()
            samples[name].append(done / (clock() - start))
    return {name: statistics.median(rates) for name, rates in samples.items()}


def new_key() -> DataKey:
    return DataKey(
        SecretKey(os.urandom(32)),
        keyset_id=os.urandom(16),
        version=1,
        dealer_id="dlr_bench",
        purpose="records",
        budget=2**30,
    )


def values(size: int, seconds: float, rounds: int) -> dict[str, float]:
    key = new_key()
    raw = AESGCM(key.reveal())
    buffers = [os.urandom(size) for _ in range(2 if size >= MIB else 8)]
    # One batch = 2 values (1 MiB) or 64 values (1 KiB), well under a millisecond: short enough to
    # fit in one scheduler time slice, so the median batch is one no other process interrupted.
    batch = 1 if size >= MIB else 8
    urandom = os.urandom
    binding = Binding("dlr_bench", "production", "telemetry", "tlm_0000000001", "value")
    seal, open_value = envelope.seal, envelope.open_value

    def raw_run() -> int:
        for _ in range(batch):
            for buf in buffers:
                nonce = urandom(12)
                raw.decrypt(nonce, raw.encrypt(nonce, buf, None), None)
        return batch * len(buffers)

    # Record ids as a repository would already hold them (formatting them is not our cost).
    record_ids = [f"tlm_{n:010d}" for n in range(batch * len(buffers))]

    scope = BindingScope("dlr_bench", "production", "telemetry")

    def envelope_run() -> int:
        # A repository holds a scope per (tenant, environment, record type) and binds each row.
        ids, bind = iter(record_ids), scope.bind
        for _ in range(batch):
            for buf in buffers:
                b = bind(next(ids), "value")
                open_value(key, b, seal(key, b, buf))
        return batch * len(buffers)

    def envelope_full_binding_run() -> int:
        ids = iter(record_ids)
        for _ in range(batch):
            for buf in buffers:
                b = Binding("dlr_bench", "production", "telemetry", next(ids), "value")
                open_value(key, b, seal(key, b, buf))
        return batch * len(buffers)

    # Raw AES-GCM the way the envelope's large path runs it: `update_into` (cryptography 46 has
    # no `AESGCM.encrypt_into`), so the ratio isolates what the envelope adds (header, AAD,
    # counter). "fresh" allocates a new output per value, as anything that returns a ciphertext to
    # store must; "reused" overwrites one buffer (no per-value output, shown for reference only).
    raw_key = key.reveal()

    def raw_into(fresh: bool) -> Callable[[], int]:
        reused = memoryview(bytearray(size + 16))

        def run() -> int:
            for _ in range(batch):
                for buf in buffers:
                    out = memoryview(bytearray(size + 16)) if fresh else reused
                    nonce = urandom(12)
                    enc = Cipher(algorithms.AES(raw_key), modes.GCM(nonce)).encryptor()
                    enc.update_into(buf, out)
                    enc.finalize()
                    out[size:] = enc.tag
                    raw.decrypt(nonce, out, None)
            return batch * len(buffers)

        return run

    def envelope_prebuilt_run() -> int:
        for _ in range(batch):
            for buf in buffers:
                open_value(key, binding, seal(key, binding, buf))
        return batch * len(buffers)

    runs: dict[str, Callable[[], int]] = {"raw": raw_run}
    if size >= MIB:
        runs["raw, update_into fresh buffer"] = raw_into(True)
        runs["(ref) update_into reused buffer"] = raw_into(False)
    runs["envelope"] = envelope_run
    runs["envelope, Binding() per value"] = envelope_full_binding_run
    runs["envelope, prebuilt binding"] = envelope_prebuilt_run
    return interleaved(runs, seconds * rounds)


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def stream(total_mib: int, directory: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Encrypt a `total_mib` object three ways, each to its own buffered file, in lockstep: one
    MiB of input for each variant in turn, timed per step. Returns (median step rate, whole-run
    rate) per variant, in bytes/s of plaintext."""
    key = new_key()
    raw = AESGCM(key.reveal())
    chunk = os.urandom(MIB)
    binding = Binding("dlr_bench", "production", "snapshot", "snp_bench", "content")

    def source() -> Iterator[bytes]:
        for _ in range(total_mib):
            yield chunk

    def raw_chunks() -> Iterator[bytes]:
        for plain in source():
            nonce = os.urandom(12)
            yield nonce
            yield raw.encrypt(nonce, plain, None)

    def raw_segments() -> Iterator[bytes]:
        # Same 64 KiB pieces as STREAM, one random nonce each, no key derivation or counter.
        segment = streaming.SEGMENT_SIZE
        for plain in source():
            view = memoryview(plain)
            for offset in range(0, len(view), segment):
                nonce = os.urandom(12)
                yield nonce
                yield raw.encrypt(nonce, view[offset : offset + segment], None)

    # (pieces each variant yields per MiB of input, its generator)
    variants: dict[str, tuple[int, Iterator[bytes]]] = {
        "raw, 1 MiB chunks": (2, raw_chunks()),
        "raw, 64 KiB segments": (32, raw_segments()),
        "streaming": (16, streaming.encrypt_stream(key, binding, source())),
    }
    steps: dict[str, list[float]] = {name: [] for name in variants}
    totals = dict.fromkeys(variants, 0.0)
    written = dict.fromkeys(variants, 0)
    # A buffered file, as a local object store would write: small pieces are gathered into 1 MiB
    # writes, pieces of 1 MiB or more go straight through. The same writer for every variant.
    files = {
        name: (directory / f"{n}.bin").open("wb", buffering=MIB) for n, name in enumerate(variants)
    }
    clock = time.perf_counter
    try:
        active = set(variants)
        while active:
            for name, (per_step, pieces) in variants.items():
                if name not in active:
                    continue
                out, count, start = files[name], 0, clock()
                for piece in itertools.islice(pieces, per_step):
                    out.write(piece)
                    count += 1
                elapsed = clock() - start
                totals[name] += elapsed
                written[name] += count
                if count == per_step:
                    steps[name].append(MIB / elapsed)
                else:
                    active.discard(name)
    finally:
        for out in files.values():
            out.close()
        sizes = {name: (directory / f"{n}.bin").stat().st_size for n, name in enumerate(variants)}
        for n in range(len(variants)):
            (directory / f"{n}.bin").unlink()
    assert sizes["streaming"] == streaming.ciphertext_size(total_mib * MIB)
    return (
        {name: statistics.median(rates) for name, rates in steps.items()},
        {name: total_mib * MIB / totals[name] for name in variants},
    )


def peak_in_fresh_process(mib: int) -> tuple[int, int]:
    """(VmRSS before, VmHWM after) in KiB of a new interpreter streaming `mib` MiB to a file: the
    parent's heap already holds freed 1 MiB buffers, which would hide any growth."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, __file__, "--peak-child", str(mib)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return int(out[0]), int(out[1])


def peak_child(mib: int) -> None:
    with tempfile.TemporaryDirectory(prefix="vigil-bench-crypto-") as tmp:
        key, chunk = new_key(), os.urandom(MIB)
        binding = Binding("dlr_bench", "production", "snapshot", "snp_bench", "content")
        before = _rss_kib("VmRSS")
        _reset_peak()
        with (Path(tmp) / "object.bin").open("wb", buffering=MIB) as out:
            for piece in streaming.encrypt_stream(key, binding, (chunk for _ in range(mib))):
                out.write(piece)
        print(before, _rss_kib("VmHWM"))


def verdict(ratio: float | bool, target: float | bool) -> str:
    return "PASS" if ratio >= target else "FAIL"


# glibc returns large freed blocks to the kernel (munmap, heap trimming), so each fresh 1 MiB
# buffer page-faults in again, or not, depending on what the previous batch freed: measured
# here, the same code swung 0.5x-2.8x between runs. These keep large blocks on the heap, for
# the baseline and for Vigil alike, so the figures measure the crypto and not the allocator's
# mood. A deployment can set the same variables (docs/encryption.md).
STABLE_MALLOC = {
    "MALLOC_MMAP_THRESHOLD_": str(64 * MIB),
    "MALLOC_TRIM_THRESHOLD_": str(256 * MIB),
    "MALLOC_TOP_PAD_": str(64 * MIB),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.5, help="length of each measured run")
    ap.add_argument("--rounds", type=int, default=3, help="value runs last seconds x rounds")
    ap.add_argument("--stream-mib", type=int, default=1024, help="size of the streamed object")
    ap.add_argument("--quick", action="store_true", help="smoke run: short runs, 64 MiB stream")
    ap.add_argument(
        "--system-malloc", action="store_true", help="keep glibc's default malloc tuning"
    )
    ap.add_argument("--peak-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not (args.system_malloc or args.peak_child or STABLE_MALLOC.keys() <= os.environ.keys()):
        import sys

        # Re-run this script with the tuning in place (glibc reads it only at start-up).
        os.execve(  # noqa: S606 - our own interpreter and script, fixed arguments
            sys.executable,
            [sys.executable, __file__, *sys.argv[1:]],
            {**os.environ, **STABLE_MALLOC},
        )
    if args.peak_child:
        peak_child(args.peak_child)
        return 0
    if args.quick:
        args.seconds, args.rounds, args.stream_mib = 0.3, 1, 64

    tuning = " ".join(f"{k}={os.environ[k]}" for k in STABLE_MALLOC if k in os.environ)
    print(
        f"python {platform.python_version()}, cryptography {cryptography.__version__}, "
        f"{platform.machine()}, {os.cpu_count()} cpus; {load()}\n"
        f"malloc: {tuning or 'glibc defaults (--system-malloc)'}"
    )
    ok = True
    for label, size, target in (("1 MiB values", MIB, 0.8), ("1 KiB records", 1024, 0.4)):
        got = values(size, args.seconds, args.rounds)
        unit = "ops/s"
        print(f"\n{label} (encrypt + decrypt), median of interleaved batches:")
        for name, value in got.items():
            extra = f"  ({value * size * 2 / 1e9:.2f} GB/s through AES)" if size >= MIB else ""
            print(f"  {name:28s} {value:12,.0f} {unit}{extra}")
        # The target is against raw AESGCM.encrypt/decrypt, as issue 5 defines it; the
        # update_into baseline is printed beside it (see bench/README.md for why it moves).
        ratio = got["envelope"] / got["raw"]
        prebuilt = got["envelope, prebuilt binding"] / got["raw"]
        ok &= ratio >= target
        print(
            f"  ratio envelope/raw AESGCM {ratio:.2f} (prebuilt binding {prebuilt:.2f}); "
            f"target >= {target}: {verdict(ratio, target)}"
        )
        if "raw, update_into fresh buffer" in got:
            into = got["envelope"] / got["raw, update_into fresh buffer"]
            print(f"  (information) envelope/raw update_into fresh buffer {into:.2f}")

    with tempfile.TemporaryDirectory(prefix="vigil-bench-crypto-") as tmp:
        median, whole = stream(args.stream_mib, Path(tmp))
        best_raw = max(v for k, v in median.items() if k.startswith("raw"))
        ratio = median["streaming"] / best_raw
        print(f"\nstreaming {args.stream_mib} MiB to a file ({tmp}), 1 MiB input chunks, lockstep:")
        for name in median:
            print(
                f"  {name:28s} {median[name] / MIB:8,.0f} MiB/s median step "
                f"{whole[name] / MIB:8,.0f} MiB/s whole run"
            )
        ok &= ratio >= 0.7
        whole_ratio = whole["streaming"] / max(v for k, v in whole.items() if k.startswith("raw"))
        print(
            f"  ratio streaming/best raw {ratio:.2f} (whole run {whole_ratio:.2f}); "
            f"target >= 0.7: {verdict(ratio, 0.7)}"
        )
        peaks = [peak_in_fresh_process(mib) for mib in (64, args.stream_mib)]
        print("\npeak RSS of a fresh process streaming to a file (after imports):")
        for mib, (before, peak) in zip((64, args.stream_mib), peaks, strict=True):
            before_mib, peak_mib = before / 1024, peak / 1024
            print(f"  {mib:6d} MiB object: {before_mib:6.1f} MiB before, peak {peak_mib:6.1f} MiB")
        growth = peaks[1][1] - peaks[1][0]
        flat = abs(growth - (peaks[0][1] - peaks[0][0])) < 4096
        ok &= flat
        print(
            f"  peak growth independent of object size (within 4 MiB): {'PASS' if flat else 'FAIL'}"
        )
    print(f"\n{load()}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
