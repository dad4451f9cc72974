if EXP.data.source in EMBEDDED_SOURCES:

    rule export_embedded:
        """An embedded dataset (installed with the package, nothing downloaded) -> an image folder
        (deterministic; versioned by data.dvc)."""
        output:
            directory(EXP.data.root),
        params:
            cfg=job_cfg("export"),
            code=code("export"),
        log:
            f"{RESULTS}/logs/export_embedded.log",
        conda:
            ENV
        shell:
            "python -m pra export --config-json {params.cfg:q} --out {output} > {log} 2>&1"


rule prepare:
    """Raw image folder -> center-cropped uint8 shards, class index, manifest.

    Only manifest.json is declared: shards of an interrupted run survive and are reused."""
    input:
        ancient(EXP.data.root),
    output:
        MANIFEST,
    params:
        cfg=job_cfg("prepare"),
        code=code("prepare"),
        out=out_dir(0),
    threads: 2
    resources:
        mem_mb=2000,
    benchmark:
        f"{RESULTS}/benchmarks/prepare.tsv"
    log:
        f"{RESULTS}/logs/prepare.log",
    conda:
        ENV
    shell:
        "python -m pra prepare --config-json {params.cfg:q} --root {input} --out {params.out} "
        "--threads {threads} > {log} 2>&1"
