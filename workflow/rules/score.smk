def eval_oracles(w):
    rows = CAMPAIGNS[CAMPAIGNS["campaign"] == w.campaign]
    return ",".join(sorted({o for cell in rows["eval_oracles"] for o in cell.split(",") if o}))


rule score:
    """Score designs with the evaluation oracles (the `eval` reward copy) and compute metrics."""
    input:
        designs=lambda w: f"{run_dir(w.domain, w.campaign, w.method, w.seed)}/designs{design_suffix(w.domain)}",
        eval_reward="{results}/{domain}/rewards/eval/model.safetensors",
        ft_reward="{results}/{domain}/rewards/ft/model.safetensors",
        pretrained="{results}/{domain}/pretrained/model.safetensors",
        model=sample_model,
    output:
        scores="{results}/{domain}/campaigns/{campaign}/{method}/seed{seed}/scores.csv",
        metrics="{results}/{domain}/campaigns/{campaign}/{method}/seed{seed}/metrics.json",
    wildcard_constraints:
        seed=r"\d+",
    params:
        oracles=eval_oracles,
        objective=lambda w: as_json(objective_of(w.campaign)),
        metrics=lambda w: as_json(
            domain_cfg(w.domain, "evaluation") | {"target": objective_of(w.campaign)["target"]}
        ),
        data=lambda w: f"{w.results}/{w.domain}/data",
        # the designs again with every score attached (SD properties / FASTA header fields)
        scored=lambda w: (
            f"{run_dir(w.domain, w.campaign, w.method, w.seed)}/scored{design_suffix(w.domain)}"
        ),
    threads: 1
    log:
        "{results}/logs/{domain}/score_{campaign}_{method}_seed{seed}.log",
    benchmark:
        "{results}/benchmarks/{domain}/score_{campaign}_{method}_seed{seed}.tsv"
    shell:
        "rewarddiff score --domain {wildcards.domain} --threads {threads} "
        "--input {input.designs:q} --oracles {params.oracles:q} "
        "--reward-model {input.eval_reward:q} --ft-reward-model {input.ft_reward:q} "
        "--objective {params.objective} --metrics-params {params.metrics} "
        "--data-dir {params.data:q} --pretrained {input.pretrained:q} --model {input.model:q} "
        "--out {output.scores:q} --designs-out {params.scored:q} "
        "--metrics-out {output.metrics:q} > {log:q} 2>&1"
