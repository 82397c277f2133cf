rule report:
    """Method × metric tables (CSV + Markdown), best designs and plots of every campaign run."""
    input:
        metrics=[f"{run_dir(*r)}/metrics.json" for r in campaign_runs()],
        logs=[f"{run_dir(*r)}/train_log.csv" for r in campaign_runs() if r[2] != "pretrained"],
        pretrain=sorted({f"{RESULTS}/{r[0]}/pretrained/train_log.csv" for r in campaign_runs()}),
        rewards=sorted({f"{RESULTS}/{r[0]}/rewards/{c}/metrics.json"
                        for r in campaign_runs() for c in ("ft", "eval")}),
    output:
        md=report(f"{RESULTS}/report/summary.md", caption="../report/summary.rst",
                  category="Summary"),
        csv=report(f"{RESULTS}/report/summary.csv", caption="../report/summary.rst",
                   category="Summary"),
        best=report(f"{RESULTS}/report/best_designs.csv", caption="../report/best_designs.rst",
                    category="Summary"),
        plots=report(directory(f"{RESULTS}/report/plots"), patterns=["{name}.png"],
                     caption="../report/plots.rst", category="Plots"),
    params:
        out=f"{RESULTS}/report",
        results=RESULTS,
    log:
        f"{LOGS}/report.log",
    shell:
        "rewarddiff report --results-dir {params.results:q} --metrics {input.metrics:q} "
        "--out-dir {params.out:q} > {log:q} 2>&1"
