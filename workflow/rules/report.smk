rule report:
    """Method × metric tables (CSV + Markdown) and plots across every campaign run."""
    input:
        metrics=[f"{run_dir(*r)}/metrics.json" for r in campaign_runs()],
        logs=[f"{run_dir(*r)}/train_log.csv" for r in campaign_runs() if r[2] != "pretrained"],
        pretrain=sorted({f"{RESULTS}/{r[0]}/pretrained/train_log.csv" for r in campaign_runs()}),
        rewards=sorted({f"{RESULTS}/{r[0]}/rewards/{c}/metrics.json"
                        for r in campaign_runs() for c in ("ft", "eval")}),
    output:
        md=report(f"{RESULTS}/report/report.md", caption="../report/summary.rst",
                  category="Summary"),
        csv=f"{RESULTS}/report/summary.csv",
    params:
        out=f"{RESULTS}/report",
        results=RESULTS,
    log:
        f"{LOGS}/report.log",
    shell:
        "rewarddiff report --results-dir {params.results} --metrics {input.metrics} "
        "--out-dir {params.out} > {log} 2>&1"
