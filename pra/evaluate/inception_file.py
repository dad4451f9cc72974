"""The Inception weights file of the ImageNet protocol: where it comes from and whether a local file is it.

torch-fidelity publishes the weights as weights-inception-2015-12-05-6726825d.pth; by torch.hub's naming
convention the part after the last hyphen is the start of the file's sha256. A file whose digest starts
otherwise loads into the same network with other numbers (another conversion, a partial download that still
unpickles), and every FID, IS, KID and precision/recall measured with it is in another feature space than ADM's
reference statistics and published results. So the file is refused unless `evaluate.inception_sha256_prefix` is
emptied on purpose. No torch import here: the workflow checks the file before any job starts.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

PUBLISHED_NAME = "weights-inception-2015-12-05-6726825d.pth"
PUBLISHED_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{PUBLISHED_NAME}"
PUBLISHED_SHA256_PREFIX = "6726825d"
INCEPTION_HELP = ("torch-fidelity's Inception weights are not downloaded at run time. Download "
                  f"{PUBLISHED_URL} on a machine with internet access, copy it to the cluster and set "
                  "evaluate.inception_weights to its path.")


@lru_cache(maxsize=8)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    """The file's sha256, once per file state in a process (a sweep or the snapshots extract many times)."""
    from pra.io import file_sha256

    return file_sha256(path)


def check_inception_weights(path: str | Path, sha256_prefix: str) -> str:
    """The file's sha256; raises FileNotFoundError when it is missing and ValueError when the digest does not
    start with `sha256_prefix` (an empty prefix accepts any file)."""
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a folder, not the weights file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"evaluate.inception_weights: {path} {what}. {INCEPTION_HELP}")
    st = path.stat()
    digest = _digest(str(path.resolve()), st.st_size, st.st_mtime_ns)
    if not digest.startswith(sha256_prefix.lower()):
        raise ValueError(
            f"evaluate.inception_weights: {path} has sha256 {digest}, which does not start with "
            f"{sha256_prefix} (evaluate.inception_sha256_prefix; the published {PUBLISHED_NAME} does). Scores "
            f"in these weights' features are not comparable with ADM's reference statistics or published numbers. "
            f"Download the published file ({PUBLISHED_URL}), or set evaluate.inception_sha256_prefix to '' to "
            "score with this file anyway (the report's scoring record in metrics.json keeps its digest).")
    return digest
