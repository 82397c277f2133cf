def sample_model(w):
    if w.method == "pretrained":
        return f"{w.results}/{w.domain}/pretrained/model.safetensors"
    return f"{w.results}/{w.domain}/campaigns/{w.campaign}/{w.method}/seed{w.seed}/model.safetensors"


def n_samples(w):
    rows = CAMPAIGNS[CAMPAIGNS["campaign"] == w.campaign]
    return int(rows["n_samples"].astype(int).max())


rule sample:
    """Designs from a fine-tuned model (selection methods: made while fine-tuning)."""
    input:
        model=sample_model,
    output:
        designs="{results}/{domain}/campaigns/{campaign}/{method}/seed{seed}/designs.{ext}",
    wildcard_constraints:
        seed=r"\d+",
        ext=DESIGN_EXT,
    params:
        n=n_samples,
        # designs made during fine-tuning (a selection method's): the option and its path,
        # shell-quoted here (the option is absent for other methods)
        selected=lambda w, input: (
            shlex.join(["--selected", f"{os.path.dirname(input.model)}/selected.{w.ext}"])
            if makes_selection(w.method) else ""
        ),
        # distinct seeds for baseline sampling and fine-tuned sampling
        seed=lambda w: 1000 + int(w.seed),
    threads: 1
    log:
        "{results}/logs/{domain}/sample_{campaign}_{method}_seed{seed}_{ext}.log",
    benchmark:
        "{results}/benchmarks/{domain}/sample_{campaign}_{method}_seed{seed}_{ext}.tsv"
    shell:
        "rewarddiff sample --domain {wildcards.domain} --threads {threads} "
        "--model {input.model:q} {params.selected} --n {params.n} --seed {params.seed} "
        "--out {output.designs:q} > {log:q} 2>&1"
