"""Answers for notebook 05."""

import gzip
import shutil
import zlib


def compress_file(path):
    """Write path + '.gz', a gzip archive of path; return the archive's path."""
    archive = path + ".gz"
    with open(path, "rb") as source, gzip.open(archive, "wb") as target:
        shutil.copyfileobj(source, target)
    return archive


def verify_archive(original, archive):
    """True when archive decompresses to exactly the content of original."""
    try:
        with gzip.open(archive, "rb") as compressed:
            restored = compressed.read()
    except (OSError, EOFError, zlib.error):
        return False
    with open(original, "rb") as source:
        return restored == source.read()
