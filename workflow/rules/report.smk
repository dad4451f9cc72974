localrules:
    build_report,


rule build_report:
    """Tables (Markdown + LaTeX), figures (PNG + PDF), curves, metrics.json and README.md from the JSON outputs."""
    input:
        evals=for_runs(f"{RUN}/eval.json"),
        logs=for_runs(f"{RUN}/train_log.jsonl"),
        samples=for_runs(f"{RUN}/samples.npz"),
        classifier=f"{RESULTS}/classifier/classifier.json" if USE_CLASSIFIER else [],
        probes=for_runs(f"{RUN}/probe.json") if EXP.evaluate.probe else [],
        along=for_runs(f"{RUN}/along_training.json") if EXP.evaluate.snapshot_every else [],
        guidance=for_runs(f"{RUN}/guidance.json", [r for r in runs() if plan.sweeps_guidance(EXP, plan.Run(**r))]),
        ablations=[f"{RESULTS}/ablations/{a.name}.json" for a in EXP.ablations],
        diagnostics=report_diagnostics,
        measured=report_measurement_inputs,
        reference=f"{RESULTS}/reference/reference.json",
        data=MANIFEST,
    output:
        _reported("tables", "Tables", "../report/table.rst"),
        _reported("figures", "Figures", "../report/figure.rst"),
        [f"{REPORTS}/{p}" for p in _FILES["curves"] + _FILES["other"]],
    params:
        cfg=job_cfg("report"),
        code=code("report"),
        results=lambda w, input: os.path.dirname(os.path.dirname(input.reference)),
        reports=lambda w, output: os.path.dirname(next(p for p in output if os.path.basename(p) == "metrics.json")),
    log:
        f"{RESULTS}/logs/report.log",
    conda:
        ENV
    shell:
        "python -m pra report --config-json {params.cfg:q} --results {params.results} --out {params.reports} "
        "> {log} 2>&1"
