rule train_classifier:
    """The evaluation feature network (trained on the train split; registered with torch-fidelity)."""
    input:
        data=MANIFEST,
    output:
        weights=f"{RESULTS}/classifier/classifier.pt",
        info=f"{RESULTS}/classifier/classifier.json",
    params:
        cfg=cfg_json("evaluate"),
        out=out_dir("weights"),
    threads: 1
    benchmark:
        f"{RESULTS}/benchmarks/train_classifier.tsv"
    log:
        f"{RESULTS}/logs/train_classifier.log",
    conda:
        ENV
    shell:
        "python -m pra train-classifier --config-json {params.cfg:q} --data {input.data} --out {params.out} "
        "--threads {threads} > {log} 2>&1"


rule evaluate:
    """FID (torch-fidelity, classifier features) and class agreement of one run's samples."""
    input:
        samples=f"{RUN}/samples.npz",
        info=f"{RUN}/samples.json",
        train=f"{RUN}/train.json",
        data=MANIFEST,
        classifier=f"{RESULTS}/classifier/classifier.pt",
        tracking=ancient(f"{RESULTS}/tracking.json"),
    output:
        f"{RUN}/eval.json",
    params:
        cfg=cfg_json("name", "evaluate"),
    threads: 1
    benchmark:
        f"{RUN}/evaluate.benchmark.tsv"
    log:
        f"{RUN}/evaluate.log",
    conda:
        ENV
    shell:
        "python -m pra evaluate --config-json {params.cfg:q} --samples {input.samples} --data {input.data} "
        "--classifier {input.classifier} --train-json {input.train} --tracking {input.tracking} "
        "--out {output} > {log} 2>&1"
