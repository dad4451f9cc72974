REPORT_OUTPUTS = [
    f"{REPORTS}/tables/fid.md",
    f"{REPORTS}/figures/samples.png",
    f"{REPORTS}/metrics.json",
] + [f"{REPORTS}/curves/{r['scale']}_{r['method']}_s{r['seed']}.csv" for r in runs()]


rule build_report:
    """Tables, figures and metrics.json from the pipeline's JSON outputs."""
    input:
        evals=expand(f"{RUN}/eval.json", zip, **{k: [r[k] for r in runs()] for k in ("scale", "method", "seed")}),
        probes=expand(f"{RUN}/probe.json", zip, **{k: [r[k] for r in runs()] for k in ("scale", "method", "seed")})
        if EXP.evaluate.probe
        else [],
        reference=f"{RESULTS}/reference/reference.json",
        data=MANIFEST,
    output:
        REPORT_OUTPUTS,
    params:
        cfg=cfg_json(*EXP.to_dict().keys()),
        results=lambda w, input: os.path.dirname(os.path.dirname(input.reference)),
        reports=lambda w, output: os.path.dirname(os.path.dirname(output[0])),
    log:
        f"{RESULTS}/logs/report.log",
    conda:
        ENV
    shell:
        "python -m pra report --config-json {params.cfg:q} --results {params.results} --out {params.reports} > {log} 2>&1"
