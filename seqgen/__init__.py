"""seqgen: biological sequence design (DNA regulatory elements; proteins in a later issue) with
masked discrete diffusion. Importing ``seqgen.dna`` registers the ``dna`` domain and its oracles."""
