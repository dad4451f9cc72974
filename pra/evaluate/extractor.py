"""torch-fidelity feature extractor backed by the classifier trained on the default data."""
from __future__ import annotations

import torch
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from pra.evaluate.classifier import load_classifier

NAME = "pra-classifier"


class ClassifierFeatureExtractor(FeatureExtractorBase):
    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        if not feature_extractor_weights_path:
            raise ValueError(f"feature extractor {NAME!r} needs feature_extractor_weights_path: the classifier.pt "
                             "written by `python -m pra train-classifier`")
        self.model = load_classifier(feature_extractor_weights_path)

    @staticmethod
    def get_provided_features_list():
        return ("penultimate", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "penultimate", "kid": "penultimate", "prc": "penultimate"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 1, 32, 32, dtype=torch.uint8)

    def forward(self, x):
        feats, logits = self.model(x)
        named = {"penultimate": feats, "logits": logits}
        return tuple(named[f] for f in self.features_list)


def register() -> str:
    if NAME not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(NAME, ClassifierFeatureExtractor)
    return NAME
