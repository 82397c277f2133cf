rule prepare_data:
    """Prepared splits in the domain's format; the manifest is written last."""
    output:
        manifest="{results}/{domain}/data/manifest.json",
    params:
        cfg=lambda w: as_json(domain_cfg(w.domain, "data")),
        out=lambda w: f"{w.results}/{w.domain}/data",
    log:
        "{results}/logs/{domain}/prepare_data.log",
    benchmark:
        "{results}/benchmarks/{domain}/prepare_data.tsv"
    shell:
        "rewarddiff prepare --domain {wildcards.domain} --params {params.cfg} "
        "--out-dir {params.out:q} > {log:q} 2>&1"
