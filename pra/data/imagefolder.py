"""Reading an ImageNet-style folder: class index, file lists, and ADM's center crop."""
from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}  # ADM reads jpg, jpeg, png, gif


def class_names(root: str | Path) -> list[str]:
    """Sorted class folder names of root/train (ImageNet: wnids -> 0..999)."""
    train = Path(root) / "train"
    if not train.is_dir():
        raise FileNotFoundError(f"{train} does not exist: data.root must hold train/<class>/ folders")
    names = sorted(p.name for p in train.iterdir() if p.is_dir() and not p.name.startswith("."))  # not .ipynb_checkpoints
    if not names:
        raise FileNotFoundError(f"{train} has no class folders")
    return names


def read_val_labels(path: str | Path) -> dict[str, str]:
    """File name -> class folder name for a flat val/ folder.

    Accepts "<file> <wnid>" lines (whitespace or comma separated) and Kaggle's LOC_val_solution.csv
    ("ImageId,PredictionString" where the string starts with the wnid).
    """
    out = {}
    for i, line in enumerate(Path(path).read_text().splitlines()):
        line = line.strip()
        if not line or (i == 0 and line.lower().startswith("imageid")):
            continue
        parts = line.replace(",", " ").split()
        if len(parts) < 2:
            raise ValueError(f"{path}:{i + 1}: expected '<file> <class>', got {line!r}")
        name = parts[0] if "." in parts[0] else parts[0] + ".JPEG"
        out[name] = parts[1]
    return out


def list_split(root: str | Path, split: str, classes: list[str],
               val_labels: str | Path | None = None, skipped: list[str] | None = None) -> list[tuple[str, int]]:
    """(path, label) of every image of a split, sorted by class then name.

    Class-folder layout (split/<class>/*), or for a flat folder a label file (see read_val_labels). Hidden
    folders and files (names starting with '.') are not data; the path of every other file whose suffix is
    not an image's is appended to `skipped`.
    """
    def image(f: Path) -> bool:
        if f.name.startswith("."):
            return False
        if f.suffix.lower() in IMAGE_SUFFIXES:  # the suffix first: no stat for the images themselves
            return True
        if skipped is not None and not f.is_dir():
            skipped.append(str(f))
        return False

    base = Path(root) / split
    if not base.is_dir():
        raise FileNotFoundError(f"{base} does not exist")
    index = {c: i for i, c in enumerate(classes)}
    items = []
    subdirs = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subdirs:
        for f in sorted(base.iterdir()):  # files beside the class folders are not read, images included: counted
            if not f.is_dir() and image(f) and skipped is not None:
                skipped.append(str(f))  # (image() has counted the others)
        for c in subdirs:
            if c not in index:
                raise ValueError(f"{base / c}: class folder not present in {Path(root) / 'train'}")
            for f in sorted((base / c).iterdir()):
                if image(f):
                    items.append((str(f), index[c]))
        return items
    files = sorted(f for f in base.iterdir() if image(f))
    if not files:
        return items
    if val_labels is None:
        raise FileNotFoundError(f"{base} holds images but no class folders: set data.val_labels to a file "
                                "mapping each file name to its class (e.g. LOC_val_solution.csv)")
    labels = read_val_labels(val_labels)
    missing = [f.name for f in files if f.name not in labels]
    if missing:
        raise ValueError(f"{len(missing)} files of {base} have no label in {val_labels}: {missing[:5]}")
    unknown = sorted({labels[f.name] for f in files} - set(index))
    if unknown:
        raise ValueError(f"{val_labels} names classes absent from {Path(root) / 'train'}: {unknown[:5]}")
    items = [(str(f), index[labels[f.name]]) for f in files]
    return sorted(items, key=lambda it: (it[1], it[0]))


def center_crop_arr(pil_image, image_size: int):
    """ADM's preprocessing: BOX-halve while the short side is >= 2x the target, BICUBIC resize, center crop."""
    from PIL import Image

    while min(*pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC)
    arr = np.array(pil_image)
    top = (arr.shape[0] - image_size) // 2
    left = (arr.shape[1] - image_size) // 2
    return arr[top: top + image_size, left: left + image_size]


def load_image(path: str, resolution: int, channels: int) -> np.ndarray:
    """Decode, convert (grayscale/CMYK/palette -> the target mode), crop; uint8 [H, W, C]."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        im = im.convert("L" if channels == 1 else "RGB")
        arr = center_crop_arr(im, resolution)
    return arr.reshape(resolution, resolution, channels)
