"""Point-cloud shapes: procedural data, point diffusion, metrics and geometric rewards."""

DESIGN_SUFFIX = ".npz"  # of design files (entry point rewarddiff.design_suffixes)
