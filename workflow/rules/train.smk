localrules:
    init_tracking,
    gather_samples,


rule init_tracking:
    """Create the MLflow database and experiment once, before training jobs fan out."""
    output:
        f"{RESULTS}/tracking.json",
    params:
        code=code("init-tracking"),
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
        log=f"{RUN}/train_log.jsonl",
        # evaluation along training (evaluate.snapshot_every): the network every N steps
        **({"snapshots": directory(f"{RUN}/snapshots")} if EXP.evaluate.snapshot_every else {}),
    params:
        cfg=run_job_cfg("train"),
        code=code("train"),
        out=out_dir("model"),
        launcher=train_launcher,
    # training jobs first: they are the long ones, and evaluation of finished runs fills the gaps
    priority: 10
    threads: EXP.train.threads
    resources:
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
        **train_node_resources(),
    benchmark:
        f"{RUN}/train.benchmark.tsv"
    log:
        f"{RUN}/train.log",
    conda:
        ENV
    shell:
        "{params.launcher} -m pra train --config-json {params.cfg:q} --scale {wildcards.scale} --method {wildcards.method} "
        "--seed {wildcards.seed} --data {input.data} --tracking {input.tracking} --out {params.out} "
        "--speed-json \"$PRA_SPEED_JSON\" > {log} 2>&1"


rule sample:
    """One shard of the class-balanced, seeded samples (EMA weights), at the swept guidance scale where the
    run sweeps it."""
    input:
        model=f"{RUN}/model.pt",
        guidance=guidance_input,
    output:
        samples=f"{RUN}/samples/shard-{{shard}}.npz",
        info=f"{RUN}/samples/shard-{{shard}}.json",
    params:
        cfg=run_job_cfg("sample"),
        code=code("sample"),
        guidance=guidance_flag,
        shards=EXP.sample.shards,
        launcher=launcher,
    threads: 1
    resources:
        **job_resources("sample"),
    benchmark:
        f"{RUN}/samples/shard-{{shard}}.benchmark.tsv"
    log:
        f"{RUN}/samples/shard-{{shard}}.log",
    conda:
        ENV
    shell:
        "{params.launcher} -m pra sample --config-json {params.cfg:q} --model {input.model} --out {output.samples} "
        "--shard {wildcards.shard} --num-shards {params.shards} {params.guidance} --threads {threads} "
        "--speed-json \"$PRA_SPEED_JSON\" "
        "> {log} 2>&1"


rule gather_samples:
    """All shards -> one uint8 npz (arr_0, labels) in a fixed shuffled order, as the ADM evaluator reads it."""
    input:
        npz=expand(f"{RUN}/samples/shard-{{shard}}.npz", shard=range(EXP.sample.shards), allow_missing=True),
        info=expand(f"{RUN}/samples/shard-{{shard}}.json", shard=range(EXP.sample.shards), allow_missing=True),
    output:
        samples=f"{RUN}/samples.npz",
        info=f"{RUN}/samples.json",
    params:
        code=code("gather"),
        png=lambda w, output: f"--png-dir {os.path.dirname(output.samples)}/png" if EXP.sample.png else "",
    log:
        f"{RUN}/gather.log",
    conda:
        ENV
    shell:
        "python -m pra gather --shards {input.npz} --out {output.samples} {params.png} > {log} 2>&1"
