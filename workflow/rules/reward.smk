rule train_reward:
    """Reward-model copies on disjoint data: `ft` steers fine-tuning, `eval` scores designs."""
    input:
        data="{results}/{domain}/data/manifest.json",
    output:
        model="{results}/{domain}/rewards/{role}/model.safetensors",
        metrics=report(
            "{results}/{domain}/rewards/{role}/metrics.json",
            caption="../report/reward.rst",
            category="Reward models",
        ),
    wildcard_constraints:
        role="ft|eval",
    params:
        cfg=lambda w: as_json(domain_cfg(w.domain, "reward")),
        data=lambda w: f"{w.results}/{w.domain}/data",
        out=lambda w: f"{w.results}/{w.domain}/rewards",
    threads: 1
    resources:
        gpu=lambda w: config.get("gpus_per_job", 0),
    log:
        "{results}/logs/{domain}/train_reward_{role}.log",
    benchmark:
        "{results}/benchmarks/{domain}/train_reward_{role}.tsv"
    shell:
        "rewarddiff train-reward --domain {wildcards.domain} --copy {wildcards.role} "
        "--threads {threads} --params {params.cfg} --data-dir {params.data:q} "
        "--out-dir {params.out:q} > {log:q} 2>&1"
