"""3D molecules: QM9 data, EDM-style equivariant diffusion, EDM-protocol metrics and oracles."""

DESIGN_SUFFIX = ".sdf"  # of design files (entry point rewarddiff.design_suffixes)
