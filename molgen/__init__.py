"""3D molecules: QM9 data, EDM-style equivariant diffusion, EDM-protocol metrics and oracles."""
