localrules:
    build_report,


REPORT_OUTPUTS = (
    [
        f"{REPORTS}/tables/fid.md",
        f"{REPORTS}/figures/samples.png",
        f"{REPORTS}/figures/training_curves.png",
        f"{REPORTS}/metrics.json",
    ]
    + [f"{REPORTS}/tables/ablation_{a.name}.md" for a in EXP.ablations]
    + [f"{REPORTS}/figures/{kind}_{a.name}.png" for a in EXP.ablations if a.diagnostics
       for kind in ("input_gap", "error_accumulation")]
    + for_runs(f"{REPORTS}/curves/{{scale}}_{{method}}_{{variant}}_s{{seed}}.csv")
)


rule build_report:
    """Tables, figures and metrics.json from the pipeline's JSON outputs."""
    input:
        evals=for_runs(f"{RUN}/eval.json"),
        probes=for_runs(f"{RUN}/probe.json") if EXP.evaluate.probe else [],
        ablations=[f"{RESULTS}/ablations/{a.name}.json" for a in EXP.ablations],
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
