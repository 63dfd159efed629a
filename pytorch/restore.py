"""A model rebuilt from a checkpoint file: a training checkpoint through the RunConfig it
carries, or an official PANNs tagger through what its tensors say it is (pytorch/published.py).
Evaluation, inference and anything else that runs a saved model starts here."""
from pytorch.checkpoints import (checkpoint_state_dict, is_training_checkpoint,
                                 load_checkpoint_file, load_state_dict_checked,
                                 training_run_config)
from pytorch.models import create_model
from pytorch.published import audioset_tagger_config, identify


def load_trained_model(path, device, flag="--checkpoint_path", trusted=False,
                       audioset_tagger=False, model_type=None):
    """(model in eval mode on `device`, checkpoint dict, RunConfig) from a training checkpoint,
    or, with `audioset_tagger`, also from an official PANNs checkpoint: its architecture and
    settings found from its tensors (`model_type` chooses among models of the same tensors),
    its labels AudioSet's 527."""
    checkpoint = load_checkpoint_file(path, flag, trusted)
    if audioset_tagger and not is_training_checkpoint(checkpoint):
        state_dict = checkpoint_state_dict(checkpoint, path)
        config = audioset_tagger_config(identify(state_dict, path, flag, model_type), path,
                                        flag)
        checkpoint = {"model": state_dict}
    else:
        config = training_run_config(checkpoint, path, flag)
    model = create_model(config.model_type, **config.audio.front_end(),
                         classes_num=len(config.labels), task=config.task)
    load_state_dict_checked(model, checkpoint["model"], path)
    return model.to(device).eval(), checkpoint, config
