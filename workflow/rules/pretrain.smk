rule pretrain:
    """Pretrain the diffusion model; re-running after an interruption resumes."""
    input:
        data="{results}/{domain}/data/manifest.json",
        # pretrain.checkpoint: a model adopted instead of training (its change re-runs this)
        checkpoint=lambda w: pretrained_checkpoint(w.domain),
    output:
        model="{results}/{domain}/pretrained/model.safetensors",
        log_csv="{results}/{domain}/pretrained/train_log.csv",
    params:
        cfg=lambda w: as_json(domain_cfg(w.domain, "pretrain")),
        data=lambda w: f"{w.results}/{w.domain}/data",
        out=lambda w: f"{w.results}/{w.domain}/pretrained",
    threads: 1
    resources:
        gpu=lambda w: config.get("gpus_per_job", 0),
    log:
        "{results}/logs/{domain}/pretrain.log",
    benchmark:
        "{results}/benchmarks/{domain}/pretrain.tsv"
    shell:
        "rewarddiff pretrain --domain {wildcards.domain} --threads {threads} "
        "--params {params.cfg} --data-dir {params.data:q} --out-dir {params.out:q} "
        "> {log:q} 2>&1"
