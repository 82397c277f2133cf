"""Diffusion maths shared by every domain: ``gaussian`` (VP) and ``masked`` (MDLM)."""

from torch import Tensor


def null_label(label: Tensor, num_labels: int) -> Tensor:
    """The "no condition" label of classifier-free guidance: index ``num_labels`` for class
    labels (long), NaN for scalar conditions (float); same shape as ``label``."""
    if label.dtype.is_floating_point:
        return label.new_full(label.shape, float("nan"))
    return label.new_full(label.shape, num_labels)
