"""The contracts between rules, jobs and results: a job reads exactly the config keys its rule passes
(pra.__main__.READS), refuses to run on defaults for a key it was not given, and results carry the hash of
the code that made them (pra.codehash)."""
import dataclasses
import json
from pathlib import Path

import pytest

import pra.__main__ as M
import pra.jobconfig as J
from pra.config import ConfigError, ExperimentConfig

from conftest import tiny_config

CFG = ExperimentConfig()
SECTIONS = {f.name: type(getattr(CFG, f.name)) for f in dataclasses.fields(ExperimentConfig)
            if dataclasses.is_dataclass(getattr(CFG, f.name))}
FIELDS = {cls: {f.name for f in dataclasses.fields(cls)} for cls in [ExperimentConfig, *SECTIONS.values()]}


class Reads:
    """Records every field read on one job's config object and its sections (by identity: the config a
    checkpoint carries, also an ExperimentConfig, is another object and is not recorded). A section copied
    with dataclasses.replace is followed into its copy (the copy itself reads nothing); ExperimentConfig.subset,
    which writes what a job records, reads nothing it does not declare and is not counted."""

    def __init__(self):
        self.keys: set[str] = set()
        self.tree: dict[int, str] = {}
        self.replaced: dict[int, set] = {}  # fields of a copy that were set by replace(), not read from config
        self.keep = []
        self.paused = 0

    def register(self, cfg):
        self.keep.append(cfg)
        self.tree[id(cfg)] = ""
        for name in SECTIONS:
            sec = object.__getattribute__(cfg, name)
            self.keep.append(sec)
            self.tree[id(sec)] = name

    def hook(self):
        rec = self

        def __getattribute__(obj, name):
            value = object.__getattribute__(obj, name)
            where = rec.tree.get(id(obj))
            if where is not None and name in FIELDS[type(obj)] and not rec.paused \
                    and name not in rec.replaced.get(id(obj), ()):
                rec.keys.add(f"{where}.{name}" if where else name)
            return value

        return __getattribute__

    def quiet(self, fn, follow=False):
        """fn without recording; with follow, its result (a copy of a recorded section) is recorded as that."""
        rec = self

        def wrapped(obj, *args, **kwargs):
            rec.paused += 1
            try:
                out = fn(obj, *args, **kwargs)
            finally:
                rec.paused -= 1
            if follow and id(obj) in rec.tree:
                rec.keep.append(out)
                rec.tree[id(out)] = rec.tree[id(obj)]
                rec.replaced[id(out)] = set(kwargs) | rec.replaced.get(id(obj), set())
            return out

        return wrapped


def covered(read: str, declared) -> bool:
    head = read.split(".")[0]
    if "." not in read and head in SECTIONS:  # the section object itself: fine if anything in it is declared
        return any(d == head or d.startswith(head + ".") for d in declared)
    return read in declared or head in declared


def used(key: str, reads: set[str]) -> bool:
    if key in SECTIONS:
        return any(r.startswith(key + ".") for r in reads)
    return key in reads


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Run every command a rule runs with a config subset, in order, on a tiny config, recording each job's
    reads. Returns {command: recorded keys} and the folder."""
    root = tmp_path_factory.mktemp("contracts")
    cfg = tiny_config(evaluate={"classifier_epochs": 1, "probe_epochs": 2, "probe_warmup_epochs": 1,
                                "probe_max_train": 200, "reference_features": 100, "kid_subset_size": 20,
                                "snapshot_every": 3, "snapshot_per_class": 2},
                      train={"steps": 6, "log_every": 3, "ckpt_every": 3}, device="cpu",
                      sample={"cfg_sweep": [1.0, 3.0], "sweep_per_class": 2})
    raw, data, run = root / "raw", root / "data", root / "run"
    recorded: dict[str, set[str]] = {}
    original = M.experiment_config

    def job_json(command):
        return cfg.subset_json(*J.reads(command))

    steps = [
        ("export", ["--out", str(raw)]),
        ("prepare", ["--root", str(raw), "--out", str(data)]),
        ("train-classifier", ["--data", str(data), "--out", str(root / "clf")]),
        ("reference", ["--data", str(data), "--classifier", str(root / "clf" / "classifier.pt"),
                       "--out", str(root / "ref.npz")]),
        ("train", ["--scale", "tiny-XS", "--method", "pra", "--data", str(data), "--out", str(run), "--quiet"]),
        ("sweep-guidance", ["--model", str(run / "model.pt"), "--reference", str(root / "ref.npz"), "--classifier",
                            str(root / "clf" / "classifier.pt"), "--train-json", str(run / "train.json"),
                            "--out", str(run / "guidance.json")]),
        ("sample", ["--model", str(run / "model.pt"), "--out", str(run / "shard-0.npz"),
                    "--guidance", str(run / "guidance.json")]),
        ("evaluate", ["--samples", str(run / "shard-0.npz"), "--reference", str(root / "ref.npz"),
                      "--classifier", str(root / "clf" / "classifier.pt"), "--train-json", str(run / "train.json"),
                      "--out", str(run / "eval.json")]),
        ("evaluate-snapshots", ["--snapshots", str(run / "snapshots"), "--model", str(run / "model.pt"),
                                "--reference", str(root / "ref.npz"), "--classifier",
                                str(root / "clf" / "classifier.pt"), "--train-json", str(run / "train.json"),
                                "--guidance", str(run / "guidance.json"), "--out", str(run / "along.json")]),
        ("probe", ["--model", str(run / "model.pt"), "--data", str(data), "--out", str(run / "probe.json")]),
        ("gap", ["--model", str(run / "model.pt"), "--data", str(data), "--out", str(run / "gap.json"),
                 "--images", "20", "--basis-images", "40", "--subsamples", "20", "--permutations", "19"]),
        ("accumulate", ["--model", str(run / "model.pt"), "--data", str(data), "--out", str(run / "acc.json"),
                        "--images", "60", "--basis-images", "40", "--subsamples", "20"]),
        ("approximate", ["--model", str(run / "model.pt"), "--data", str(data), "--out", str(run / "approx.json"),
                         "--images", "20", "--basis-images", "40", "--subsamples", "20"]),
    ]
    for command, argv in steps:
        rec = Reads()
        mp = pytest.MonkeyPatch()
        try:
            for cls in FIELDS:
                mp.setattr(cls, "__getattribute__", rec.hook())
            mp.setattr(dataclasses, "replace", rec.quiet(dataclasses.replace, follow=True))
            mp.setattr(ExperimentConfig, "subset", rec.quiet(ExperimentConfig.subset))
            mp.setattr(M, "experiment_config", lambda args, rec=rec: rec.register(original(args)) or rec.keep[0])
            assert M.main([command, "--config-json", job_json(command), *argv]) == 0, command
        finally:
            mp.undo()
        recorded[command] = rec.keys
    return recorded, root


PARTIAL = [c for c, r in J.READS.items() if r is not J.ALL]


def test_every_partial_command_is_exercised(pipeline):
    recorded, _ = pipeline
    assert sorted(recorded) == sorted(PARTIAL)


@pytest.mark.parametrize("command", PARTIAL)
def test_a_job_reads_exactly_the_keys_its_rule_passes(pipeline, command):
    recorded, _ = pipeline
    execution = J.EXECUTION.get(command, ())  # reach the job through PRA_SPEED_JSON, outside the params
    reads = {r for r in recorded[command] if not covered(r, execution) or r in ("train",)}
    declared = J.READS[command]
    unpassed = sorted(r for r in reads if not covered(r, declared))
    unread = sorted(k for k in declared if not used(k, reads) and k not in J.CONDITIONAL.get(command, ()))
    assert not unpassed, f"{command} reads {unpassed}, which its rule does not pass (READS)"
    assert not unread, f"{command}'s rule passes {unread}, which its job never reads: needless reruns"


def test_the_rules_pass_what_the_commands_declare():
    """Every rule's cfg param comes from job_cfg/run_job_cfg of its own command (no hand-written key lists)."""
    import re

    text = "\n".join(p.read_text() for p in (Path(M.__file__).parents[1] / "workflow" / "rules").glob("*.smk"))
    shells = re.findall(r"python -m pra ([a-z-]+) --config-json", text) + \
        re.findall(r"\{params\.launcher\} -m pra ([a-z-]+) --config-json", text)
    passes = re.findall(r"cfg=(?:run_)?job_cfg\(\"([a-z-]+)\"\)", text)
    assert sorted(set(shells)) == sorted(set(passes)) == sorted(J.READS), (shells, passes)
    hand_made = [ln for ln in text.splitlines() if "subset_json(" in ln and "reads(command)" not in ln]
    assert hand_made == ['os.environ["PRA_SPEED_JSON"] = EXP.subset_json("speed", *TRAIN_EXECUTION)'], hand_made


def test_every_command_with_execution_settings_gets_them_from_its_rule():
    """A command that reads execution settings (EXECUTION) is passed them (--speed-json "$PRA_SPEED_JSON") by its
    rule; one that reads none is not (its jobs would otherwise take defaults where the experiment set others)."""
    text = "\n".join(p.read_text() for p in (Path(M.__file__).parents[1] / "workflow" / "rules").glob("*.smk"))
    blocks = text.split("\nrule ")
    for command in J.READS:
        mine = [b for b in blocks if f"-m pra {command} --config-json" in b]
        assert mine, command
        passed = all('--speed-json \\"$PRA_SPEED_JSON\\"' in b for b in mine)
        assert passed == (command in J.EXECUTION), command


def test_snapshots_along_training_are_evaluated_with_both_weights(pipeline):
    """train with evaluate.snapshot_every: 3 over 6 steps keeps step 3 (snapshots/, EMA and raw weights in
    the model.pt format); the evaluation scores it and the final model, EMA and raw, on the proxy sample."""
    import torch

    _, root = pipeline
    run = root / "run"
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == ["step-0000003.pt"]
    assert not (run / "snapshots.partial").exists()
    snap = torch.load(run / "snapshots" / "step-0000003.pt", weights_only=False)
    final = torch.load(run / "model.pt", weights_only=False)
    assert snap["step"] == 3 and final["step"] == 6 and snap["config"] == final["config"]
    assert any(not torch.equal(snap["model"][k], final["model"][k]) for k in final["model"])
    rows = json.loads((run / "along.json").read_text())["rows"]
    assert [(r["step"], r["weights"]) for r in rows] == [(3, "ema"), (3, "raw"), (6, "ema"), (6, "raw")]
    assert all(r["num_samples"] == 20 and r["fid"] > 0 and 0 <= r["class_accuracy"] <= 1 for r in rows)
    assert rows[0]["fid"] != rows[1]["fid"]  # EMA and raw weights sample differently
    assert all(r["precision"] == "float32" for r in rows)  # the sample job's precision (speed section)
    assert json.loads((run / "along.json").read_text())["cfg_scale"] == \
        json.loads((run / "guidance.json").read_text())["chosen"]  # at the run's swept guidance


def test_a_conditional_key_is_read_where_its_condition_holds(tmp_path, trained_pra):
    """sample.cfg_scale, passed to every sample job, is read by one that does not sweep the guidance."""
    rec = Reads()
    cfg = tiny_config(device="cpu")
    mp = pytest.MonkeyPatch()
    original = M.experiment_config
    try:
        for cls in FIELDS:
            mp.setattr(cls, "__getattribute__", rec.hook())
        mp.setattr(M, "experiment_config", lambda args: rec.register(original(args)) or rec.keep[0])
        assert M.main(["sample", "--config-json", cfg.subset_json(*J.reads("sample")), "--model", str(trained_pra),
                       "--out", str(tmp_path / "s.npz")]) == 0
    finally:
        mp.undo()
    assert set(J.CONDITIONAL["sample"]) <= rec.keys


def test_the_guidance_sweep_chooses_on_its_own_seed_and_the_sample_uses_the_choice(pipeline):
    _, root = pipeline
    run = root / "run"
    g = json.loads((run / "guidance.json").read_text())
    assert [r["cfg_scale"] for r in g["rows"]] == [1.0, 3.0] and g["seed"] != 0  # sample.seed is 0
    assert g["chosen"] == min(g["rows"], key=lambda r: r["fid"])["cfg_scale"]
    shard = json.loads((run / "shard-0.json").read_text())
    assert shard["sampling"]["cfg_scale"] == g["chosen"] and shard["sampling"]["seed"] == 0
    # the evaluation records how the samples were drawn, the precision included
    ev = json.loads((run / "eval.json").read_text())
    assert ev["sampling"] == shard["sampling"] and ev["speed"] == shard["speed"] == {"precision": "float32",
                                                                                    "cuda_graphs": False}
    # the sweep draws its proxy samples as the sample job draws (the speed section's precision and head ODE)
    assert g["speed"] == shard["speed"] and all(r["precision"] == "float32" for r in g["rows"])


def test_a_job_given_too_little_config_stops_naming_the_key(tmp_path):
    passed = json.loads(CFG.subset_json(*J.READS["gap"]))
    del passed["device"]
    with pytest.raises(ConfigError, match=r"'device'"):
        args = M.parser().parse_args(["gap", "--config-json", json.dumps(passed), "--model", "m", "--data", "d",
                                      "--out", "o"])
        M.experiment_config(args)
    assert M.main(["gap", "--config-json", json.dumps(passed), "--model", "m", "--data", "d", "--out",
                   str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def test_a_non_mapping_config_is_rejected():
    args = M.parser().parse_args(["sample", "--config-json", "[1, 2]", "--model", "m", "--out", "o"])
    with pytest.raises(ConfigError, match="mapping"):
        M.experiment_config(args)


def test_results_carry_the_code_hash_of_their_job(pipeline):
    from pra.codehash import code_hash

    _, root = pipeline
    run = root / "run"
    for name, command in (("train.json", "train"), ("shard-0.json", "sample"), ("eval.json", "evaluate"),
                          ("probe.json", "probe"), ("gap.json", "gap"), ("acc.json", "accumulate"),
                          ("along.json", "evaluate-snapshots"), ("guidance.json", "sweep-guidance"),
                          ("approx.json", "approximate")):
        assert json.loads((run / name).read_text())["code_hash"] == code_hash(command), name
    assert len({code_hash(c) for c in PARTIAL}) == len(PARTIAL)


def test_the_code_hash_follows_the_code_a_job_runs(tmp_path):
    """Edits in a copy of the package: a comment or docstring changes no hash; code in a model module changes
    training's and not the report's; another job of the same entry module leaves a job's hash alone; the
    report's own module changes only the report's."""
    import shutil
    import subprocess
    import sys

    from conftest import ROOT

    shutil.copytree(ROOT / "pra", tmp_path / "pra", ignore=shutil.ignore_patterns("__pycache__"))
    commands = ["train", "train-classifier", "sweep-guidance", "report", "sample"]

    def hashes():
        code = ("import json; from pra.codehash import code_hash; "
                f"print(json.dumps({{c: code_hash(c) for c in {commands!r}}}))")
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
                             env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}).stdout
        return json.loads(out)

    def edit(rel, old, new):
        p = tmp_path / "pra" / rel
        text = p.read_text()
        assert old in text, (rel, old)
        p.write_text(text.replace(old, new, 1))

    base = hashes()
    edit("model/trunk.py", '"""', '"""A docstring edit. ')
    edit("model/trunk.py", "import torch\n", "import torch  # a comment\n")
    assert hashes() == base
    edit("model/trunk.py", "import torch  # a comment\n", "import torch\n\nPADDING = 0\n")
    h = hashes()
    assert h["train"] != base["train"] and h["sample"] != base["sample"] and h["report"] == base["report"]
    base = h
    edit("evaluate/jobs.py", "def sweep_guidance(args):\n", "def sweep_guidance(args):\n    args = args\n")
    h = hashes()
    assert h["sweep-guidance"] != base["sweep-guidance"] and h["train-classifier"] == base["train-classifier"]
    base = h
    edit("report/tables.py", "MISSING = ", "EXTRA = 1\nMISSING = ")
    h = hashes()
    assert h["report"] != base["report"] and {c: h[c] for c in commands if c != "report"} == \
        {c: base[c] for c in commands if c != "report"}
