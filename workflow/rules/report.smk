REPORT_OUTPUTS = [
    f"{REPORTS}/tables/fid.md",
    f"{REPORTS}/figures/samples.png",
    f"{REPORTS}/metrics.json",
]


rule build_report:
    """Tables, figures and metrics.json from the pipeline's JSON outputs."""
    input:
        evals=expand(f"{RUN}/eval.json", zip, **{k: [r[k] for r in runs()] for k in ("scale", "method", "seed")}),
        classifier=f"{RESULTS}/classifier/classifier.json",
        data=DATA,
    output:
        REPORT_OUTPUTS,
    params:
        cfg=cfg_json(*EXP.to_dict().keys()),
    log:
        f"{RESULTS}/logs/report.log",
    shell:
        "python -m pra report --config-json {params.cfg:q} --results {RESULTS} --out {REPORTS} > {log} 2>&1"
