"""Clip-level losses on the model's `clipwise_output`."""
import torch.nn.functional as F


def clip_nll(output_dict, target):
    """Cross-entropy of log-softmax outputs against (possibly mixed) one-hot targets, per clip.

    The original computed -mean(target * log_prob) over clips *and* classes, i.e. this value
    divided by classes_num. Adam is invariant to that constant, but the logged loss is now the
    usual per-clip cross-entropy (log(10) = 2.30 at chance for 10 classes).
    """
    return -(target * output_dict["clipwise_output"]).sum(dim=1).mean()


def clip_bce(output_dict, target):
    """Binary cross-entropy of sigmoid outputs, averaged over clips and labels (multi-label)."""
    output = output_dict["clipwise_output"].float().clamp(1e-7, 1 - 1e-7)
    return F.binary_cross_entropy(output, target)


LOSSES = {"clip_nll": clip_nll, "clip_bce": clip_bce}
