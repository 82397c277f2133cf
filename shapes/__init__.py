"""Point-cloud shapes: procedural data, point diffusion, metrics and geometric rewards."""
