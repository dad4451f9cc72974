rule gap:
    """Input-distribution gap: teacher forcing / pixel noise / PRA inputs vs the model's own rollout."""
    input:
        model=f"{RUN}/model.pt",
        data=MANIFEST,
    output:
        f"{RUN}/gap.json",
    params:
        cfg=run_cfg_json("model", "method", "sample"),
    threads: 1
    resources:
        gpu=res("eval", "gpus"),
        mem_mb=res("eval", "mem_mb"),
        runtime=res("eval", "runtime"),
    benchmark:
        f"{RUN}/gap.benchmark.tsv"
    log:
        f"{RUN}/gap.log",
    conda:
        ENV
    shell:
        "python -m pra gap --config-json {params.cfg:q} --model {input.model} --data {input.data} "
        "--out {output} --threads {threads} > {log} 2>&1"


rule accumulate:
    """Error accumulation: per-position distance to real patches, own rollout vs ground-truth prefix."""
    input:
        model=f"{RUN}/model.pt",
        samples=f"{RUN}/samples.npz",
        data=MANIFEST,
    output:
        f"{RUN}/accumulation.json",
    params:
        cfg=run_cfg_json("model", "method", "sample"),
    threads: 1
    resources:
        gpu=res("eval", "gpus"),
        mem_mb=res("eval", "mem_mb"),
        runtime=res("eval", "runtime"),
    benchmark:
        f"{RUN}/accumulation.benchmark.tsv"
    log:
        f"{RUN}/accumulation.log",
    conda:
        ENV
    shell:
        "python -m pra accumulate --config-json {params.cfg:q} --model {input.model} --samples {input.samples} "
        "--data {input.data} --out {output} --threads {threads} > {log} 2>&1"


rule ablation:
    """One ablation's comparison table (from the JSON results) and its MLflow parent/child runs."""
    input:
        ablation_inputs,
        tracking=ancient(f"{RESULTS}/tracking.json"),
    output:
        f"{RESULTS}/ablations/{{ablation}}.json",
    params:
        cfg=cfg_json(*EXP.to_dict().keys()),
        results=lambda w, output: os.path.dirname(os.path.dirname(output[0])),
    log:
        f"{RESULTS}/logs/ablation-{{ablation}}.log",
    conda:
        ENV
    shell:
        "python -m pra ablation --config-json {params.cfg:q} --name {wildcards.ablation} "
        "--results {params.results} --tracking {input.tracking} --out {output} > {log} 2>&1"
