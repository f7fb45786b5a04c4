"""A parallel file compressor: gzip every data/*.log with a Pool, then verify.

The inputs come from the read-only data/ folder next to this script; the
archives are written to the working directory (the only writable place).
"""

import gzip
import hashlib
import shutil
from multiprocessing import Pool
from pathlib import Path

SOURCE = Path(__file__).parent / "data"
TARGET = Path.cwd() / "compressed"


def compress(path: Path) -> tuple[str, int, int]:
    archive = TARGET / f"{path.name}.gz"
    with path.open("rb") as src, gzip.open(archive, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return path.name, path.stat().st_size, archive.stat().st_size


def verify(path: Path) -> bool:
    original = hashlib.sha256(path.read_bytes()).hexdigest()
    with gzip.open(TARGET / f"{path.name}.gz", "rb") as archive:
        restored = hashlib.sha256(archive.read()).hexdigest()
    return original == restored


if __name__ == "__main__":
    files = sorted(SOURCE.glob("*.log"))
    if not files:
        raise SystemExit(f"no .log files in {SOURCE}")
    TARGET.mkdir(exist_ok=True)
    with Pool(2) as pool:
        sizes = pool.map(compress, files)
        checks = pool.map(verify, files)
    for (name, before, after), ok in zip(sizes, checks, strict=True):
        print(f"{name:<16} {before:>7} -> {after:>5} bytes  {'verified' if ok else 'CORRUPT'}")
    if not all(checks):
        raise SystemExit("a compressed file does not decompress to its original")
    print(f"compressed and verified {len(files)} files")
