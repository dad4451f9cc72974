localrules:
    init_tracking,


rule init_tracking:
    """Create the MLflow database and experiment once, before training jobs fan out."""
    output:
        f"{RESULTS}/tracking.json",
    params:
        name=EXP.name,
        results=lambda w, output: os.path.dirname(output[0]),
    log:
        f"{RESULTS}/logs/init_tracking.log",
    conda:
        ENV
    shell:
        "python -m pra init-tracking --results {params.results} --experiment {params.name} --out {output} > {log} 2>&1"


rule train:
    """Train one (scale, method, seed); resumes from state.pt if a previous attempt was interrupted."""
    input:
        data=MANIFEST,
        tracking=ancient(f"{RESULTS}/tracking.json"),
    output:
        model=f"{RUN}/model.pt",
        summary=f"{RUN}/train.json",
    params:
        cfg=cfg_json("name", "device", "data.resolution", "data.channels", "model", "method", "train"),
        out=out_dir("model"),
    threads: EXP.train.threads
    resources:
        mem_mb=3000,
    benchmark:
        f"{RUN}/train.benchmark.tsv"
    log:
        f"{RUN}/train.log",
    conda:
        ENV
    shell:
        "python -m pra train --config-json {params.cfg:q} --scale {wildcards.scale} --method {wildcards.method} "
        "--seed {wildcards.seed} --data {input.data} --tracking {input.tracking} --out {params.out} > {log} 2>&1"


rule sample:
    """Class-balanced, seeded samples (EMA weights) -> ADM-style npz."""
    input:
        model=f"{RUN}/model.pt",
    output:
        samples=f"{RUN}/samples.npz",
        info=f"{RUN}/samples.json",
    params:
        cfg=cfg_json("device", "sample"),
    threads: 1
    resources:
        mem_mb=2000,
    benchmark:
        f"{RUN}/sample.benchmark.tsv"
    log:
        f"{RUN}/sample.log",
    conda:
        ENV
    shell:
        "python -m pra sample --config-json {params.cfg:q} --model {input.model} --out {output.samples} "
        "--threads {threads} > {log} 2>&1"
