import json

import pytest
import torch

from conftest import run
from pra.config import load
from pra.model.network import Geometry, PRANetwork, count_parameters
from pra.model.scales import SCALES, get_scale


@pytest.mark.parametrize("name", ["PRA-S", "PRA-B", "PRA-L"])
def test_paper_scales_within_3_percent(name):
    cfg = load("config/config.yaml", "experiments/imagenet256.yaml")
    geom = Geometry(256, 3, 16, 1000)
    with torch.device("meta"):
        net = PRANetwork(get_scale(name), cfg.model, geom, "pra")
    n = count_parameters(net)
    target = SCALES[name].paper_params
    assert abs(n - target) / target < 0.03, (name, n, target)


def test_params_command_prints_json():
    p = run(["python", "-m", "pra", "params", "--experiment", "experiments/imagenet256.yaml"])
    counts = json.loads(p.stdout)
    assert set(counts) == {"PRA-S", "PRA-B", "PRA-L"}
    assert counts["PRA-S"] < counts["PRA-B"] < counts["PRA-L"]
    assert 130e6 < counts["PRA-S"] < 140e6
