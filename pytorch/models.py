"""PANNs audio taggers (Cnn14, Cnn6) and their transfer-learning heads.

The layer names, shapes and order follow the published PANNs code
(qiuqiangkong/audioset_tagging_cnn), so the official AudioSet checkpoints
(e.g. Cnn14_mAP=0.431.pth, Cnn6_mAP=0.343.pth: {'model': state_dict, ...}) load exactly.
"""
import numbers

import torch
import torch.nn as nn
import torch.nn.functional as F
from pytorch.front_end import SpecAugment, logmel, stft_window, torchlibrosa_extractors

from utils.config import AUDIOSET_CLASSES_NUM, MULTI_LABEL, SINGLE_LABEL, TASKS
from utils.utilities import UsageError
from pytorch.pytorch_utils import do_mixup


def init_layer(layer):
    """Xavier-uniform weights and zero bias, as in PANNs."""
    nn.init.xavier_uniform_(layer.weight)
    if getattr(layer, "bias", None) is not None:
        layer.bias.data.fill_(0.)


def init_bn(bn):
    bn.bias.data.fill_(0.)
    bn.weight.data.fill_(1.)


def mixup_weights(mixup_lambda, x):
    """mixup_lambda (array or tensor) as a tensor beside x, checked against x's batch size."""
    lam = torch.as_tensor(mixup_lambda, dtype=x.dtype, device=x.device)
    if x.shape[0] % 2 or lam.shape != (x.shape[0],):
        raise ValueError(f"mixup needs an even batch and one lambda per example; got batch "
                         f"{x.shape[0]} and mixup_lambda of shape {tuple(lam.shape)}")
    return lam


class ConvBlock(nn.Module):
    """Two 3x3 conv + BN + ReLU layers, then average pooling (Cnn14)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        # Attribute order fixes the state_dict order: conv1, conv2, bn1, bn2 as published.
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=(3, 3), stride=(1, 1),
                               padding=(1, 1), bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=(3, 3), stride=(1, 1),
                               padding=(1, 1), bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        init_layer(self.conv1)
        init_layer(self.conv2)
        init_bn(self.bn1)
        init_bn(self.bn2)

    def forward(self, x, pool_size=(2, 2)):
        x = F.relu_(self.bn1(self.conv1(x)))
        x = F.relu_(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=pool_size)


class ConvBlock5x5(nn.Module):
    """One 5x5 conv + BN + ReLU layer, then average pooling (Cnn6)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=(5, 5), stride=(1, 1),
                               padding=(2, 2), bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        init_layer(self.conv1)
        init_bn(self.bn1)

    def forward(self, x, pool_size=(2, 2)):
        x = F.relu_(self.bn1(self.conv1(x)))
        return F.avg_pool2d(x, kernel_size=pool_size)


def check_positive_int(name, value):
    if not isinstance(value, numbers.Integral) or value < 1:  # Integral admits numpy ints
        raise UsageError(f"{name}={value} must be a positive integer; fix --{name}")


def check_audio_settings(sample_rate, window_size, hop_size, mel_bins, fmin, fmax,
                         classes_num, min_mel_bins):
    """Reject settings that would fail later or silently produce empty mel bands."""
    for name, value in (("sample_rate", sample_rate), ("window_size", window_size),
                        ("hop_size", hop_size), ("mel_bins", mel_bins),
                        ("classes_num", classes_num)):
        check_positive_int(name, value)
    if hop_size > window_size:
        raise UsageError(f"hop_size={hop_size} is larger than window_size={window_size}, so "
                         f"samples between frames would be skipped; lower --hop_size")
    if mel_bins < min_mel_bins:
        raise UsageError(f"mel_bins={mel_bins} is too few: the network halves the mel axis "
                         f"down to at least 1 bin and needs mel_bins >= {min_mel_bins}; "
                         f"raise --mel_bins")
    nyquist = sample_rate / 2
    if fmax > nyquist:
        raise UsageError(f"fmax={fmax} is above the Nyquist frequency {nyquist:g} of "
                         f"sample_rate={sample_rate}; lower --fmax")
    if fmin < 0:
        raise UsageError(f"fmin={fmin} is negative; raise --fmin")
    if fmin >= fmax:
        raise UsageError(f"fmin={fmin} is not below fmax={fmax}; lower --fmin or raise --fmax")


class PannsTagger(nn.Module):
    """Shared PANNs body: log-mel front end, SpecAugment, mixup, conv blocks, fc1, fc_audioset.

    Subclasses set `embedding_size` and `pooled_blocks_num`, create conv_block1..N, and list
    them with their pool sizes in `conv_stack()`.
    """
    embedding_size = None
    pooled_blocks_num = None  # blocks with 2x2 pooling: the input needs 2**n frames and mel bins

    def __init__(self, sample_rate, window_size, hop_size, mel_bins, fmin, fmax, classes_num):
        super().__init__()
        check_audio_settings(sample_rate, window_size, hop_size, mel_bins, fmin, fmax,
                             classes_num, min_mel_bins=2 ** self.pooled_blocks_num)
        self.hop_size = hop_size
        self.window_size = window_size

        # The published modules hold the checkpoints' STFT kernels and mel matrix; the log-mel
        # itself is computed by front_end.logmel (torch.stft and one matmul), equal to theirs.
        self.spectrogram_extractor, self.logmel_extractor = torchlibrosa_extractors(
            sample_rate, window_size, hop_size, mel_bins, fmin, fmax)
        self.register_buffer("stft_window", stft_window(window_size), persistent=False)
        self.spec_augmenter = SpecAugment(time_drop_width=64, time_stripes_num=2,
                                          freq_drop_width=8, freq_stripes_num=2)
        # Published code hard-codes BatchNorm2d(64): the same as mel_bins=64, the value
        # every released checkpoint was trained with.
        self.bn0 = nn.BatchNorm2d(mel_bins)
        init_bn(self.bn0)

    def build_head(self, classes_num):
        self.fc1 = nn.Linear(self.embedding_size, self.embedding_size, bias=True)
        self.fc_audioset = nn.Linear(self.embedding_size, classes_num, bias=True)
        init_layer(self.fc1)
        init_layer(self.fc_audioset)

    def conv_stack(self):
        raise NotImplementedError

    def check_clip_length(self, samples):
        # center=True gives 1 + samples // hop frames; reflect padding needs > window/2 samples.
        min_samples = max((2 ** self.pooled_blocks_num - 1) * self.hop_size,
                          self.window_size // 2 + 1)
        if samples < min_samples:
            raise UsageError(f"audio of {samples} samples is too short for "
                             f"{type(self).__name__}: it needs at least {min_samples} samples")

    def logmel(self, waveform):
        """(batch, samples) -> (batch, 1, frames, mel_bins), always computed in fp32."""
        return logmel(waveform, self.stft_window, self.hop_size, self.logmel_extractor.melW)

    def forward(self, input, mixup_lambda=None):
        """input: (batch, samples) waveform. Returns {'clipwise_output', 'embedding'}.

        With mixup_lambda (one weight per example) the batch is mixed in pairs and halved.
        """
        self.check_clip_length(input.shape[-1])
        x = self.logmel(input)

        x = x.transpose(1, 3)  # normalise each mel bin
        x = self.bn0(x)
        x = x.transpose(1, 3)

        # SpecAugment follows its own module's mode, so a frozen base in eval mode can still
        # augment; see Transfer models.
        x = self.spec_augmenter(x)

        # Published code mixes only when self.training; here a given lambda is always applied,
        # so mixup also works with a frozen base kept in eval mode. Callers pass one only
        # for training batches.
        if mixup_lambda is not None:
            x = do_mixup(x, mixup_weights(mixup_lambda, x))  # pairs mixed, batch halved

        for block, pool_size in self.conv_stack():
            x = F.dropout(block(x, pool_size), p=0.2, training=self.training)

        x = torch.mean(x, dim=3)  # over mel bins
        x = torch.max(x, dim=2)[0] + torch.mean(x, dim=2)  # over time
        x = F.dropout(x, p=0.5, training=self.training)
        x = F.relu_(self.fc1(x))
        embedding = F.dropout(x, p=0.5, training=self.training)
        # As published, the AudioSet head reads fc1's output before the second dropout.
        clipwise_output = torch.sigmoid(self.fc_audioset(x))
        return {"clipwise_output": clipwise_output, "embedding": embedding}


class Cnn14(PannsTagger):
    embedding_size = 2048
    pooled_blocks_num = 5

    def __init__(self, sample_rate, window_size, hop_size, mel_bins, fmin, fmax,
                 classes_num=AUDIOSET_CLASSES_NUM):
        super().__init__(sample_rate, window_size, hop_size, mel_bins, fmin, fmax, classes_num)
        self.conv_block1 = ConvBlock(1, 64)
        self.conv_block2 = ConvBlock(64, 128)
        self.conv_block3 = ConvBlock(128, 256)
        self.conv_block4 = ConvBlock(256, 512)
        self.conv_block5 = ConvBlock(512, 1024)
        self.conv_block6 = ConvBlock(1024, 2048)
        self.build_head(classes_num)

    def conv_stack(self):
        return [(self.conv_block1, (2, 2)), (self.conv_block2, (2, 2)),
                (self.conv_block3, (2, 2)), (self.conv_block4, (2, 2)),
                (self.conv_block5, (2, 2)), (self.conv_block6, (1, 1))]


class Cnn6(PannsTagger):
    embedding_size = 512
    pooled_blocks_num = 4

    def __init__(self, sample_rate, window_size, hop_size, mel_bins, fmin, fmax,
                 classes_num=AUDIOSET_CLASSES_NUM):
        super().__init__(sample_rate, window_size, hop_size, mel_bins, fmin, fmax, classes_num)
        self.conv_block1 = ConvBlock5x5(1, 64)
        self.conv_block2 = ConvBlock5x5(64, 128)
        self.conv_block3 = ConvBlock5x5(128, 256)
        self.conv_block4 = ConvBlock5x5(256, 512)
        self.build_head(classes_num)

    def conv_stack(self):
        return [(self.conv_block1, (2, 2)), (self.conv_block2, (2, 2)),
                (self.conv_block3, (2, 2)), (self.conv_block4, (2, 2))]


class TransferModel(nn.Module):
    """A pretrained PANNs tagger as `base` plus a new linear head `fc_transfer`."""
    base_class = None

    def __init__(self, sample_rate, window_size, hop_size, mel_bins, fmin, fmax, classes_num,
                 freeze_base, task=SINGLE_LABEL):
        super().__init__()
        if task not in TASKS:
            raise UsageError(f"task={task!r} is unknown; choose one of {', '.join(TASKS)}")
        check_positive_int("classes_num", classes_num)
        self.task = task
        self.freeze_base = bool(freeze_base)
        self.base = self.base_class(sample_rate, window_size, hop_size, mel_bins, fmin, fmax,
                                    AUDIOSET_CLASSES_NUM)
        self.fc_transfer = nn.Linear(self.base.embedding_size, classes_num, bias=True)
        init_layer(self.fc_transfer)

        if self.freeze_base:
            for param in self.base.parameters():
                param.requires_grad = False
            self.train(self.training)

    def train(self, mode=True):
        """A frozen base stays in eval mode: BatchNorm statistics stay put and dropout is off.

        SpecAugment is kept following `mode`: it is a stateless input augmentation, and with
        a frozen base it still regularises the head being trained, as it did when the base
        was trained in the published recipe.
        """
        super().train(mode)
        if self.freeze_base:
            self.base.eval()
            self.base.spec_augmenter.train(mode)
        return self

    def forward(self, input, mixup_lambda=None):
        """input: (batch, samples). clipwise_output is log-probabilities for single_label,
        probabilities per class for multi_label."""
        output_dict = self.base(input, mixup_lambda)
        embedding = output_dict["embedding"]
        logits = self.fc_transfer(embedding)
        if self.task == MULTI_LABEL:
            clipwise_output = torch.sigmoid(logits)
        else:
            clipwise_output = torch.log_softmax(logits, dim=-1)
        return {"clipwise_output": clipwise_output, "embedding": embedding}


class Transfer_Cnn14(TransferModel):
    base_class = Cnn14


class Transfer_Cnn6(TransferModel):
    base_class = Cnn6


MODELS = {"Cnn14": Cnn14, "Cnn6": Cnn6,
          "Transfer_Cnn14": Transfer_Cnn14, "Transfer_Cnn6": Transfer_Cnn6}


def create_model(model_type, *, sample_rate, window_size, hop_size, mel_bins, fmin, fmax,
                 classes_num, freeze_base=False, task=SINGLE_LABEL,
                 pretrained_checkpoint_path=None, trust_checkpoint=False):
    """Build a model by name; load pretrained weights when a checkpoint path is given.

    Plain Cnn14/Cnn6 are the AudioSet taggers (527 sigmoid outputs) and load the checkpoint
    into the whole model; Transfer_* load it into their base.
    """
    if model_type not in MODELS:
        raise UsageError(f"--model_type={model_type} is unknown; choose one of "
                         f"{', '.join(MODELS)}")
    audio = dict(sample_rate=sample_rate, window_size=window_size, hop_size=hop_size,
                 mel_bins=mel_bins, fmin=fmin, fmax=fmax)
    model_class = MODELS[model_type]
    if issubclass(model_class, TransferModel):
        model = model_class(**audio, classes_num=classes_num, freeze_base=freeze_base, task=task)
        tagger = model.base
    elif classes_num != AUDIOSET_CLASSES_NUM:
        raise UsageError(f"{model_type} is the AudioSet tagger with {AUDIOSET_CLASSES_NUM} "
                         f"classes, not {classes_num}; use Transfer_{model_type} for a new "
                         f"label set")
    else:
        model = tagger = model_class(**audio, classes_num=classes_num)
    if pretrained_checkpoint_path:
        from pytorch.checkpoints import load_pretrained  # the one loader (it imports this module)
        load_pretrained(tagger, pretrained_checkpoint_path, trust_checkpoint)
    return model
