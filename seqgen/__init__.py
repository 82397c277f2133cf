"""seqgen: biological sequence design (DNA regulatory elements; proteins in a later issue) with
masked discrete diffusion. Importing ``seqgen.dna`` registers the ``dna`` domain and its oracles."""

DESIGN_SUFFIX = ".fasta"  # of DNA and protein design files (entry point rewarddiff.design_suffixes)
