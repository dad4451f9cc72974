"""FID through torch-fidelity, and the classifier's agreement with the conditioning labels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from pra.evaluate import extractor
from pra.evaluate.classifier import load_classifier, predict


class UInt8Images(Dataset):
    """NHWC uint8 array -> CHW uint8 tensors, the input torch-fidelity expects."""

    def __init__(self, images_nhwc: np.ndarray):
        self.images = images_nhwc

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return torch.from_numpy(np.ascontiguousarray(self.images[i])).permute(2, 0, 1)


def fid_torch_fidelity(images_a: np.ndarray, images_b: np.ndarray, classifier_path: str | Path,
                       batch_size: int = 250) -> float:
    """FID between two uint8 NHWC sets in the registered classifier's penultimate features."""
    import torch_fidelity

    name = extractor.register()
    out = torch_fidelity.calculate_metrics(
        input1=UInt8Images(images_a), input2=UInt8Images(images_b), fid=True, cuda=False, cache=False,
        verbose=False, save_cpu_ram=True, batch_size=batch_size, feature_extractor=name,
        feature_extractor_weights_path=str(classifier_path))
    return float(out["frechet_inception_distance"])


def class_agreement(images: np.ndarray, labels: np.ndarray, classifier_path: str | Path) -> dict:
    """How often the classifier recognises the class a sample was conditioned on."""
    _, logits = predict(load_classifier(classifier_path), images)
    pred = logits.argmax(1)
    num_classes = logits.shape[1]
    per_class = [float((pred[labels == c] == c).mean()) if (labels == c).any() else float("nan")
                 for c in range(num_classes)]
    return {"accuracy": float((pred == labels).mean()), "per_class": per_class}
