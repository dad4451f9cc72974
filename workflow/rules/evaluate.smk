if USE_CLASSIFIER and CARRIED_CLASSIFIER:

    rule carry_classifier:
        """The evaluation feature network trained elsewhere on the same images (evaluate.classifier_dir),
        checked and copied: a study scores every block in one feature space. Its param is the source's weights
        digest, not its path: the same classifier in another folder, or with a newer file time, reruns nothing."""
        input:
            data=MANIFEST,
        output:
            weights=CLASSIFIER,
            info=f"{RESULTS}/classifier/classifier.json",
        params:
            code=code("carry-classifier"),
            sha256=CARRIED_CLASSIFIER_SHA256,
            out=out_dir("weights"),
        log:
            f"{RESULTS}/logs/carry_classifier.log",
        conda:
            ENV
        shell:
            f"python -m pra carry-classifier --source {shlex.quote(CARRIED_CLASSIFIER)} "
            "--data {input.data} --out {params.out} > {log} 2>&1"

else:

    rule train_classifier:
        """The evaluation feature network (trained on the train split; registered with torch-fidelity)."""
        input:
            data=classifier_training_input,
        output:
            weights=CLASSIFIER,
            info=f"{RESULTS}/classifier/classifier.json",
        params:
            cfg=job_cfg("train-classifier"),
            code=code("train-classifier"),
            out=out_dir("weights"),
        threads: 1
        resources:
            mem_mb=2000,
        benchmark:
            f"{RESULTS}/benchmarks/train_classifier.tsv"
        log:
            f"{RESULTS}/logs/train_classifier.log",
        conda:
            ENV
        shell:
            "python -m pra train-classifier --config-json {params.cfg:q} --data {input.data} --out {params.out} "
            "--threads {threads} > {log} 2>&1"


rule reference:
    """Reference statistics of real images (or the user's reference batch, converted) and the real validation
    split's floor."""
    input:
        data=MANIFEST,
        classifier=classifier_input,
        reference_batch=EXP.evaluate.reference_stats or [],  # a replaced file reruns the conversion
    output:
        npz=REFERENCE,
        info=f"{RESULTS}/reference/reference.json",
    params:
        cfg=job_cfg("reference"),
        code=code("reference"),
        clf=classifier_flag,
    threads: 1
    resources:
        **job_resources("eval"),
    benchmark:
        f"{RESULTS}/benchmarks/reference.tsv"
    log:
        f"{RESULTS}/logs/reference.log",
    conda:
        ENV
    shell:
        "python -m pra reference --config-json {params.cfg:q} --data {input.data} {params.clf} "
        "--out {output.npz} --threads {threads} > {log} 2>&1"


rule evaluate:
    """FID, IS, KID, precision/recall (and class agreement) of one run's samples."""
    input:
        samples=f"{RUN}/samples.npz",
        info=f"{RUN}/samples.json",
        train=f"{RUN}/train.json",
        reference=REFERENCE,
        classifier=classifier_input,
        tracking=ancient(f"{RESULTS}/tracking.json"),
    output:
        f"{RUN}/eval.json",
    params:
        cfg=job_cfg("evaluate"),
        code=code("evaluate"),
        clf=classifier_flag,
    threads: 1
    resources:
        **job_resources("eval"),
    benchmark:
        f"{RUN}/evaluate.benchmark.tsv"
    log:
        f"{RUN}/evaluate.log",
    conda:
        ENV
    shell:
        "python -m pra evaluate --config-json {params.cfg:q} --samples {input.samples} "
        "--reference {input.reference} {params.clf} --train-json {input.train} --tracking {input.tracking} "
        "--out {output} --threads {threads} > {log} 2>&1"


rule sweep_guidance:
    """The guidance scale of one run, chosen on a proxy sample apart from the final one (sample.cfg_sweep)."""
    input:
        model=f"{RUN}/model.pt",
        train=f"{RUN}/train.json",
        reference=REFERENCE,
        classifier=classifier_input,
        tracking=ancient(f"{RESULTS}/tracking.json"),
    output:
        f"{RUN}/guidance.json",
    params:
        cfg=run_job_cfg("sweep-guidance"),
        code=code("sweep-guidance"),
        clf=classifier_flag,
    threads: 1
    resources:
        **job_resources("eval"),
    benchmark:
        f"{RUN}/guidance.benchmark.tsv"
    log:
        f"{RUN}/guidance.log",
    conda:
        ENV
    shell:
        "python -m pra sweep-guidance --config-json {params.cfg:q} --model {input.model} "
        "--reference {input.reference} {params.clf} --train-json {input.train} --tracking {input.tracking} "
        "--out {output} --threads {threads} --speed-json \"$PRA_SPEED_JSON\" > {log} 2>&1"


rule evaluate_snapshots:
    """Evaluation along training: proxy FID/KID (and class agreement) of every snapshot and the final model,
    EMA and raw weights (evaluate.snapshot_every > 0)."""
    input:
        snapshots=f"{RUN}/snapshots",
        model=f"{RUN}/model.pt",
        train=f"{RUN}/train.json",
        guidance=guidance_input,
        reference=REFERENCE,
        classifier=classifier_input,
        tracking=ancient(f"{RESULTS}/tracking.json"),
    output:
        f"{RUN}/along_training.json",
    params:
        cfg=run_job_cfg("evaluate-snapshots"),
        code=code("evaluate-snapshots"),
        clf=classifier_flag,
        guidance=guidance_flag,
    threads: 1
    resources:
        **job_resources("eval"),
    benchmark:
        f"{RUN}/along_training.benchmark.tsv"
    log:
        f"{RUN}/along_training.log",
    conda:
        ENV
    shell:
        "python -m pra evaluate-snapshots --config-json {params.cfg:q} --snapshots {input.snapshots} "
        "--model {input.model} --reference {input.reference} {params.clf} --train-json {input.train} "
        "{params.guidance} --tracking {input.tracking} --out {output} --threads {threads} "
        "--speed-json \"$PRA_SPEED_JSON\" > {log} 2>&1"


rule probe:
    """Linear probing of the frozen generator (MAE-style recipe; plus the labelled fast probe)."""
    input:
        model=f"{RUN}/model.pt",
        data=MANIFEST,
        tracking=ancient(f"{RESULTS}/tracking.json"),
    output:
        f"{RUN}/probe.json",
    params:
        cfg=job_cfg("probe"),
        code=code("probe"),
    threads: 1
    resources:
        **job_resources("eval"),
    benchmark:
        f"{RUN}/probe.benchmark.tsv"
    log:
        f"{RUN}/probe.log",
    conda:
        ENV
    shell:
        "python -m pra probe --config-json {params.cfg:q} --model {input.model} --data {input.data} "
        "--tracking {input.tracking} --out {output} --threads {threads} > {log} 2>&1"
