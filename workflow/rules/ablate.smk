localrules:
    tune,


rule gap:
    """Input-distribution gap on held-out images: every training-input construction vs the model's own
    rollout, beside a rollout-vs-rollout null, in pixel inputs and trunk states."""
    input:
        model=f"{RUN}/model.pt",
        data=MANIFEST,
    output:
        f"{RUN}/gap.json",
    params:
        cfg=run_job_cfg("gap"),
        code=code("gap"),
        n=EXP.evaluate.diagnostic_images,
        perms=EXP.evaluate.diagnostic_permutations,
        subs=EXP.evaluate.diagnostic_subsamples,
    threads: 1
    resources:
        **job_resources("eval"),
    benchmark:
        f"{RUN}/gap.benchmark.tsv"
    log:
        f"{RUN}/gap.log",
    conda:
        ENV
    shell:
        "python -m pra gap --config-json {params.cfg:q} --model {input.model} --data {input.data} "
        "--images {params.n} --permutations {params.perms} --subsamples {params.subs} "
        "--out {output} --threads {threads} > {log} 2>&1"


rule accumulate:
    """Error accumulation on held-out images: a fixed region where real images have ink, generated after hybrid
    prefixes (true patches, then k of the model's own), scored against real same-class regions, with nulls."""
    input:
        model=f"{RUN}/model.pt",
        data=MANIFEST,
        classifier=classifier_input,
    output:
        f"{RUN}/accumulation.json",
    params:
        cfg=run_job_cfg("accumulate"),
        code=code("accumulate"),
        n=EXP.evaluate.diagnostic_images,
        perms=EXP.evaluate.diagnostic_permutations,
        subs=EXP.evaluate.diagnostic_subsamples,
        clf=classifier_flag,
    threads: 1
    resources:
        **job_resources("eval"),
    benchmark:
        f"{RUN}/accumulation.benchmark.tsv"
    log:
        f"{RUN}/accumulation.log",
    conda:
        ENV
    shell:
        "python -m pra accumulate --config-json {params.cfg:q} --model {input.model} "
        "--data {input.data} --images {params.n} --subsamples {params.subs} --permutations {params.perms} "
        "{params.clf} --out {output} --threads {threads} "
        "> {log} 2>&1"


rule approximate:
    """The approximation error on held-out images: PRA's and its twin's inputs against the anchored sequential
    rollout's, built from the same (t, eps) draws, per position and over the content positions."""
    input:
        model=f"{RUN}/model.pt",
        data=MANIFEST,
    output:
        f"{RUN}/approximation.json",
    params:
        cfg=run_job_cfg("approximate"),
        code=code("approximate"),
        n=EXP.evaluate.diagnostic_images,
        subs=EXP.evaluate.diagnostic_subsamples,
    threads: 1
    resources:
        **job_resources("eval"),
    benchmark:
        f"{RUN}/approximation.benchmark.tsv"
    log:
        f"{RUN}/approximation.log",
    conda:
        ENV
    shell:
        "python -m pra approximate --config-json {params.cfg:q} --model {input.model} --data {input.data} "
        "--images {params.n} --subsamples {params.subs} --out {output} --threads {threads} > {log} 2>&1"


checkpoint tune:
    """The noise-knob value of every tuned variant of an ablation, chosen on its held-out tuning seed."""
    input:
        tuning_inputs,
    output:
        f"{RESULTS}/tuning/{{ablation}}.json",
    params:
        cfg=job_cfg("tune"),
        code=code("tune"),
        results=lambda w, output: os.path.dirname(os.path.dirname(output[0])),
    log:
        f"{RESULTS}/logs/tune-{{ablation}}.log",
    conda:
        ENV
    shell:
        "python -m pra tune --config-json {params.cfg:q} --name {wildcards.ablation:q} --results {params.results} "
        "--out {output} > {log} 2>&1"


rule ablation:
    """One ablation's comparison table (from the JSON results) and its MLflow parent/child runs."""
    input:
        ablation_inputs,
        tracking=ancient(f"{RESULTS}/tracking.json"),
    output:
        f"{RESULTS}/ablations/{{ablation}}.json",
    params:
        cfg=job_cfg("ablation"),
        code=code("ablation"),
        results=lambda w, output: os.path.dirname(os.path.dirname(output[0])),
    log:
        f"{RESULTS}/logs/ablation-{{ablation}}.log",
    conda:
        ENV
    shell:
        "python -m pra ablation --config-json {params.cfg:q} --name {wildcards.ablation:q} "
        "--results {params.results} --tracking {input.tracking} --out {output} > {log} 2>&1"
