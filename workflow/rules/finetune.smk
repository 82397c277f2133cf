rule finetune:
    """One campaign row × seed: steer the pretrained model with the `ft` reward copy."""
    input:
        pretrained="{results}/{domain}/pretrained/model.safetensors",
        reward="{results}/{domain}/rewards/ft/model.safetensors",
    output:
        model="{results}/{domain}/campaigns/{campaign}/{method}/seed{seed}/model.safetensors",
        log_csv="{results}/{domain}/campaigns/{campaign}/{method}/seed{seed}/train_log.csv",
    wildcard_constraints:
        method="(?!pretrained)[a-z_]+",
        seed=r"\d+",
    params:
        method=lambda w: as_json(method_params(w.domain, w.campaign, w.method)),
        objective=lambda w: as_json(objective_of(w.campaign)),
        data=lambda w: f"{w.results}/{w.domain}/data",
        out=lambda w: f"{w.results}/{w.domain}/campaigns/{w.campaign}/{w.method}/seed{w.seed}",
    threads: 1
    resources:
        gpu=lambda w: config.get("gpus_per_job", 0),
    log:
        "{results}/logs/{domain}/finetune_{campaign}_{method}_seed{seed}.log",
    benchmark:
        "{results}/benchmarks/{domain}/finetune_{campaign}_{method}_seed{seed}.tsv"
    shell:
        "rewarddiff finetune --domain {wildcards.domain} --method {wildcards.method} "
        "--threads {threads} --params {params.method} --objective {params.objective} "
        "--pretrained {input.pretrained:q} --reward-model {input.reward:q} "
        "--data-dir {params.data:q} --seed {wildcards.seed} --out-dir {params.out:q} "
        "> {log:q} 2>&1"
