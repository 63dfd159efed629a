"""The published PANNs audio taggers, all of them, and the transfer-learning head.

Every architecture released with PANNs (qiuqiangkong/audioset_tagging_cnn, zenodo record
3987831) is here under its published name, with the published module, parameter and buffer
names and shapes, so its official checkpoint ({'model': state_dict, ...}) loads strictly and
computes what the published model computes, layer for layer. metadata/panns_models.json lists
the published names, shapes, parameter counts and audio settings; tests hold the models to it.

They share one front end (front_end.logmel: torch.stft and a matmul with the checkpoint's own
mel matrix, equal to torchlibrosa's), one clip head (max + mean over time, fc1, fc_audioset),
the blocks of pytorch/blocks.py and one transfer head (TransferModel, `Transfer_<name>`).
Two deliberate differences, neither changing an evaluation-mode output:
- a given mixup_lambda is applied also in eval mode (a frozen base stays in eval mode), and
  SpecAugment follows its own module's mode;
- a clip too short for a network's pooling is a one-line error instead of a crash, and
  Wavegram_Logmel_Cnn14 crops its two branches to the shorter where lengths give them one
  frame apart (the published code fails there; at equal lengths nothing changes).
"""
import numbers

import torch
import torch.nn as nn
import torch.nn.functional as F

from pytorch.blocks import (AttBlock, BasicBlock, Bottleneck, Conv1dBlock, ConvBlock, ConvBlock5x5,
                            DaiNetResBlock, InvertedResidual, ResNetStack, depthwise_separable,
                            init_bn, init_layer, initialised, mobilenet_stem, repeat_frames,
                            sigmoid)
from pytorch.checkpoints import load_pretrained
from pytorch.front_end import SpecAugment, logmel, stft_window, torchlibrosa_extractors
from pytorch.pytorch_utils import do_mixup
from utils.config import AUDIOSET_CLASSES_NUM, MULTI_LABEL, SINGLE_LABEL, TASKS
from utils.utilities import UsageError


def mixup_weights(mixup_lambda, x):
    """mixup_lambda (array or tensor) as a tensor beside x, checked against x's batch size."""
    lam = torch.as_tensor(mixup_lambda, dtype=x.dtype, device=x.device)
    if x.shape[0] % 2 or lam.shape != (x.shape[0],):
        raise ValueError(f"mixup needs an even batch and one lambda per example; got batch "
                         f"{x.shape[0]} and mixup_lambda of shape {tuple(lam.shape)}")
    return lam


def mix(x, mixup_lambda):
    """Pairs mixed and the batch halved when a lambda is given; x unchanged otherwise."""
    return x if mixup_lambda is None else do_mixup(x, mixup_weights(mixup_lambda, x))


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
    """What every published tagger shares: its settings checks, the log-mel front end (for those
    that have one), the clip head (max + mean over time, fc1, fc_audioset) and the length check.

    A subclass builds its layers in the published order and implements
    `feature_map(input, mixup_lambda) -> (batch, channels, time)`.
    """
    embedding_size = None  # fc1's width: what `embedding` and the transfer head get
    time_pools = 0         # halvings of the log-mel's time (and mel) axis
    min_waveform_samples = 1  # the shortest waveform the network's own pooling takes
    fc1_dropout = True     # MobileNetV2 goes from pooling to fc1 without dropout

    def __init__(self, sample_rate, window_size, hop_size, mel_bins, fmin, fmax, classes_num):
        super().__init__()
        check_audio_settings(sample_rate, window_size, hop_size, mel_bins, fmin, fmax,
                             classes_num, min_mel_bins=2 ** self.time_pools)
        self.hop_size = hop_size
        self.window_size = window_size
        self.mel_bins = mel_bins

    # --- building --------------------------------------------------------------------------
    def add_logmel_front_end(self, sample_rate, fmin, fmax):
        """The published modules hold the checkpoints' STFT kernels and mel matrix; the log-mel
        itself is computed by front_end.logmel (torch.stft and one matmul), equal to theirs."""
        self.spectrogram_extractor, self.logmel_extractor = torchlibrosa_extractors(
            sample_rate, self.window_size, self.hop_size, self.mel_bins, fmin, fmax)
        self.register_buffer("stft_window", stft_window(self.window_size), persistent=False)
        self.add_spec_augment_and_bn0()

    def add_spec_augment_and_bn0(self):
        # Published: 8 frequency bins per 64 mel bins (4 for Cnn14_mel32, 16 for Cnn14_mel128).
        self.spec_augmenter = SpecAugment(time_drop_width=64, time_stripes_num=2,
                                          freq_drop_width=max(1, 8 * self.mel_bins // 64),
                                          freq_stripes_num=2)
        self.bn0 = nn.BatchNorm2d(self.mel_bins)  # published code: 64, the value all used
        init_bn(self.bn0)

    def add_conv_blocks(self, block, channels, first=1):
        for index, (c_in, c_out) in enumerate(zip(channels, channels[1:]), first):
            setattr(self, f"conv_block{index}", block(c_in, c_out))

    def add_head(self, in_features, classes_num):
        self.fc1 = nn.Linear(in_features, self.embedding_size, bias=True)
        self.fc_audioset = nn.Linear(self.embedding_size, classes_num, bias=True)
        init_layer(self.fc1)
        init_layer(self.fc_audioset)

    def audioset_classifier(self):
        """The AudioSet output layer: a transfer model never reads it."""
        return self.fc_audioset

    # --- computing ---------------------------------------------------------------------------
    def min_samples(self):
        needed = self.min_waveform_samples
        if hasattr(self, "spectrogram_extractor"):
            # center=True gives 1 + samples // hop frames; reflect padding needs > window/2.
            needed = max(needed, (2 ** self.time_pools - 1) * self.hop_size,
                         self.window_size // 2 + 1)
        return needed

    def check_clip_length(self, samples):
        if samples < self.min_samples():
            raise UsageError(f"audio of {samples} samples is too short for "
                             f"{type(self).__name__}: it needs at least {self.min_samples()} samples")

    def logmel(self, waveform):
        """(batch, samples) -> (batch, 1, frames, mel_bins), always computed in fp32."""
        return logmel(waveform, self.stft_window, self.hop_size, self.logmel_extractor.melW)

    def logmel_features(self, waveform, mixup_lambda):
        """Log-mel, each mel bin normalised by bn0, SpecAugment (following its own module's
        mode, so a frozen base in eval mode can still augment), then mixup when asked."""
        x = self.logmel(waveform).transpose(1, 3)
        x = self.bn0(x).transpose(1, 3)
        return mix(self.spec_augmenter(x), mixup_lambda)

    def run_conv_blocks(self, x, pools, first=1):
        """conv_block<first>, ... with their pool sizes, each followed by dropout 0.2."""
        for index, pool_size in enumerate(pools, first):
            x = getattr(self, f"conv_block{index}")(x, pool_size=pool_size)
            x = F.dropout(x, p=0.2, training=self.training)
        return x

    def feature_map(self, input, mixup_lambda):
        raise NotImplementedError

    def clip_head(self, x):
        """(batch, channels, time) -> clipwise AudioSet probabilities and the embedding."""
        x = torch.max(x, dim=2)[0] + torch.mean(x, dim=2)
        if self.fc1_dropout:
            x = F.dropout(x, p=0.5, training=self.training)
        x = F.relu_(self.fc1(x))
        embedding = F.dropout(x, p=0.5, training=self.training)
        # As published, the AudioSet head reads fc1's output before the second dropout.
        return {"clipwise_output": sigmoid(self.fc_audioset(x)), "embedding": embedding}

    def forward(self, input, mixup_lambda=None):
        """input: (batch, samples) waveform. Returns {'clipwise_output', 'embedding'} (and
        'framewise_output' for the decision-level models). With mixup_lambda (one weight per
        example) the batch is mixed in pairs and halved; callers pass one only for training."""
        self.check_clip_length(input.shape[-1])
        return self.clip_head(self.feature_map(input, mixup_lambda))


# --- log-mel CNNs ------------------------------------------------------------------------------

CNN14_CHANNELS = (1, 64, 128, 256, 512, 1024, 2048)
CNN14_POOLS = ((2, 2),) * 5 + ((1, 1),)


class Cnn14(PannsTagger):
    """Six double-conv blocks (the paper's CNN14). Also the body of the 16 kHz, 8 kHz, mel32,
    mel128, emb* and decision-level variants."""
    embedding_size = 2048
    time_pools = 5
    block, channels, pools = ConvBlock, CNN14_CHANNELS, CNN14_POOLS

    def __init__(self, sample_rate, window_size, hop_size, mel_bins, fmin, fmax,
                 classes_num=AUDIOSET_CLASSES_NUM):
        super().__init__(sample_rate, window_size, hop_size, mel_bins, fmin, fmax, classes_num)
        self.add_logmel_front_end(sample_rate, fmin, fmax)
        self.add_conv_blocks(self.block, self.channels)
        self.add_head(self.channels[-1], classes_num)

    def feature_map(self, input, mixup_lambda):
        x = self.run_conv_blocks(self.logmel_features(input, mixup_lambda), self.pools)
        return torch.mean(x, dim=3)  # over mel bins


class Cnn10(Cnn14):
    embedding_size = 512
    time_pools = 4
    channels, pools = CNN14_CHANNELS[:5], ((2, 2),) * 4


class Cnn6(Cnn14):
    embedding_size = 512
    time_pools = 4
    block, channels, pools = ConvBlock5x5, CNN14_CHANNELS[:5], ((2, 2),) * 4


class Cnn14_16k(Cnn14):
    """Cnn14 trained on 16 kHz audio (window 512, hop 160, 50-8000 Hz)."""


class Cnn14_8k(Cnn14):
    """Cnn14 trained on 8 kHz audio (window 256, hop 80, 50-4000 Hz)."""


class Cnn14_mel32(Cnn14):
    """Cnn14 on 32 mel bins."""


class Cnn14_mel128(Cnn14):
    """Cnn14 on 128 mel bins."""


class Cnn14_emb512(Cnn14):
    embedding_size = 512


class Cnn14_emb128(Cnn14):
    embedding_size = 128


class Cnn14_emb32(Cnn14):
    embedding_size = 32


class Cnn14_DecisionLevelMax(Cnn14):
    """Cnn14 classifying every segment (32 frames) and pooling the decisions over time; gives
    framewise_output (sound event detection) besides clipwise_output."""
    interpolate_ratio = 32  # the time downsampling of the five 2x2 poolings

    def decide(self, x):
        """(batch, segments, embedding) -> (clipwise, segmentwise (batch, segments, classes))."""
        segmentwise = sigmoid(self.fc_audioset(x))
        return torch.max(segmentwise, dim=1)[0], segmentwise

    def forward(self, input, mixup_lambda=None):
        self.check_clip_length(input.shape[-1])
        frames_num = input.shape[-1] // self.hop_size + 1
        x = self.feature_map(input, mixup_lambda)
        x = F.max_pool1d(x, kernel_size=3, stride=1, padding=1) \
            + F.avg_pool1d(x, kernel_size=3, stride=1, padding=1)
        x = F.dropout(x, p=0.5, training=self.training)
        x = F.relu_(self.fc1(x.transpose(1, 2)))
        x = F.dropout(x, p=0.5, training=self.training)  # (batch, segments, embedding)
        clipwise, segmentwise = self.decide(x)
        # Not published (these models have no clip embedding): the clip head's max + mean
        # over time of the segment embeddings, for the transfer head.
        embedding = torch.max(x, dim=1)[0] + torch.mean(x, dim=1)
        return {"clipwise_output": clipwise, "embedding": embedding,
                "framewise_output": repeat_frames(segmentwise, self.interpolate_ratio, frames_num)}


class Cnn14_DecisionLevelAvg(Cnn14_DecisionLevelMax):
    def decide(self, x):
        segmentwise = sigmoid(self.fc_audioset(x))
        return torch.mean(segmentwise, dim=1), segmentwise


class Cnn14_DecisionLevelAtt(Cnn14_DecisionLevelMax):
    def add_head(self, in_features, classes_num):
        self.fc1 = nn.Linear(in_features, self.embedding_size, bias=True)
        init_layer(self.fc1)
        self.att_block = AttBlock(self.embedding_size, classes_num)

    def audioset_classifier(self):
        return self.att_block

    def decide(self, x):
        clipwise, segmentwise = self.att_block(x.transpose(1, 2))
        return clipwise, segmentwise.transpose(1, 2)


class ResNet22(PannsTagger):
    """Log-mel ResNet: a ConvBlock stem, residual layers, a ConvBlock to 2048 channels."""
    embedding_size = 2048
    time_pools = 5
    block, layers = BasicBlock, (2, 2, 2, 2)

    def __init__(self, sample_rate, window_size, hop_size, mel_bins, fmin, fmax,
                 classes_num=AUDIOSET_CLASSES_NUM):
        super().__init__(sample_rate, window_size, hop_size, mel_bins, fmin, fmax, classes_num)
        self.add_logmel_front_end(sample_rate, fmin, fmax)
        self.conv_block1 = ConvBlock(1, 64)
        self.resnet = ResNetStack(self.block, list(zip((64, 128, 256, 512), self.layers,
                                                       (1, 2, 2, 2))))
        self.conv_block_after1 = ConvBlock(self.resnet.out_channels, 2048)
        self.add_head(2048, classes_num)

    def feature_map(self, input, mixup_lambda):
        x = self.run_conv_blocks(self.logmel_features(input, mixup_lambda), [(2, 2)])
        x = F.avg_pool2d(self.resnet(x), kernel_size=(2, 2))
        x = F.dropout(x, p=0.2, training=self.training)
        x = F.dropout(self.conv_block_after1(x, pool_size=(1, 1)), p=0.2, training=self.training)
        return torch.mean(x, dim=3)


class ResNet38(ResNet22):
    layers = (3, 4, 6, 3)


class ResNet54(ResNet22):
    block, layers = Bottleneck, (3, 4, 6, 3)


class MobileNetV1(PannsTagger):
    embedding_size = 1024
    time_pools = 5
    # (in, out, stride) of the depthwise-separable blocks after the 1 -> 32 stem
    blocks = ((32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1),
              (256, 512, 2)) + ((512, 512, 1),) * 5 + ((512, 1024, 2), (1024, 1024, 1))

    def __init__(self, sample_rate, window_size, hop_size, mel_bins, fmin, fmax,
                 classes_num=AUDIOSET_CLASSES_NUM):
        super().__init__(sample_rate, window_size, hop_size, mel_bins, fmin, fmax, classes_num)
        self.add_logmel_front_end(sample_rate, fmin, fmax)
        self.features = nn.Sequential(mobilenet_stem(1, 32, 2, nn.ReLU),
                                      *[depthwise_separable(*block) for block in self.blocks])
        self.add_head(1024, classes_num)

    def feature_map(self, input, mixup_lambda):
        return torch.mean(self.features(self.logmel_features(input, mixup_lambda)), dim=3)


class MobileNetV2(PannsTagger):
    embedding_size = 1024
    time_pools = 5
    fc1_dropout = False
    # (expansion t, channels c, repeats n, first stride s) of the inverted-residual stages
    stages = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 2),
              (6, 160, 3, 1), (6, 320, 1, 1))

    def __init__(self, sample_rate, window_size, hop_size, mel_bins, fmin, fmax,
                 classes_num=AUDIOSET_CLASSES_NUM):
        super().__init__(sample_rate, window_size, hop_size, mel_bins, fmin, fmax, classes_num)
        self.add_logmel_front_end(sample_rate, fmin, fmax)
        layers, channels = [mobilenet_stem(1, 32, 2, nn.ReLU6)], 32
        for expand, out_channels, repeats, stride in self.stages:
            for index in range(repeats):
                layers.append(InvertedResidual(channels, out_channels, stride if index == 0 else 1,
                                               expand_ratio=expand))
                channels = out_channels
        layers.append(initialised(nn.Sequential(nn.Conv2d(channels, 1280, 1, 1, 0, bias=False),
                                                nn.BatchNorm2d(1280), nn.ReLU6(inplace=True))))
        self.features = nn.Sequential(*layers)
        self.add_head(1280, classes_num)

    def feature_map(self, input, mixup_lambda):
        return torch.mean(self.features(self.logmel_features(input, mixup_lambda)), dim=3)


# --- the Wavegram: a learnt time-frequency representation from the waveform --------------------

class Wavegram_Cnn14(PannsTagger):
    """Cnn14 on the Wavegram: strided 1-D convolutions turn the waveform into 32 'frequency'
    bins x (samples / 640) frames, which conv_block2..6 read. No STFT. conv_block1, bn0 and
    the SpecAugment module exist in the published model (and its checkpoint) but are unused."""
    embedding_size = 2048
    min_waveform_samples = 10236  # 5 x 4^3 x 2 x 2^4 samples per final frame, from conv0's stride

    def __init__(self, sample_rate, window_size, hop_size, mel_bins, fmin, fmax,
                 classes_num=AUDIOSET_CLASSES_NUM):
        super().__init__(sample_rate, window_size, hop_size, mel_bins, fmin, fmax, classes_num)
        self.add_wavegram()
        self.add_spec_augment_and_bn0()
        self.add_conv_blocks(ConvBlock, CNN14_CHANNELS)
        self.add_head(2048, classes_num)

    def add_wavegram(self):
        self.pre_conv0 = nn.Conv1d(1, 64, kernel_size=11, stride=5, padding=5, bias=False)
        self.pre_bn0 = nn.BatchNorm1d(64)
        self.pre_block1 = Conv1dBlock(64, 64, convs=2, dilated=True)
        self.pre_block2 = Conv1dBlock(64, 128, convs=2, dilated=True)
        self.pre_block3 = Conv1dBlock(128, 128, convs=2, dilated=True)
        self.pre_block4 = ConvBlock(4, 64)
        init_layer(self.pre_conv0)
        init_bn(self.pre_bn0)

    def wavegram(self, waveform):
        """(batch, samples) -> (batch, 64, frames, 32)."""
        x = F.relu_(self.pre_bn0(self.pre_conv0(waveform[:, None, :])))
        for block in (self.pre_block1, self.pre_block2, self.pre_block3):
            x = block(x, pool_size=4)
        x = x.reshape((x.shape[0], -1, 32, x.shape[-1])).transpose(2, 3)
        return self.pre_block4(x, pool_size=(2, 1))

    def feature_map(self, input, mixup_lambda):
        x = F.dropout(mix(self.wavegram(input), mixup_lambda), p=0.2, training=self.training)
        x = self.run_conv_blocks(x, CNN14_POOLS[1:], first=2)
        return torch.mean(x, dim=3)


class Wavegram_Logmel_Cnn14(Wavegram_Cnn14):
    """The Wavegram and the log-mel after its first block, concatenated along the channels."""
    time_pools = 5

    def __init__(self, sample_rate, window_size, hop_size, mel_bins, fmin, fmax,
                 classes_num=AUDIOSET_CLASSES_NUM):
        PannsTagger.__init__(self, sample_rate, window_size, hop_size, mel_bins, fmin, fmax,
                             classes_num)
        self.add_wavegram()
        self.add_logmel_front_end(sample_rate, fmin, fmax)
        self.conv_block1 = ConvBlock(1, 64)
        self.add_conv_blocks(ConvBlock, (128,) + CNN14_CHANNELS[2:], first=2)
        self.add_head(2048, classes_num)

    def feature_map(self, input, mixup_lambda):
        wavegram = mix(self.wavegram(input), mixup_lambda)
        x = self.conv_block1(self.logmel_features(input, mixup_lambda), pool_size=(2, 2))
        frames = min(x.shape[2], wavegram.shape[2])  # equal for the published clip lengths
        x = torch.cat((x[:, :, :frames], wavegram[:, :, :frames]), dim=1)
        x = F.dropout(x, p=0.2, training=self.training)
        x = self.run_conv_blocks(x, CNN14_POOLS[1:], first=2)
        return torch.mean(x, dim=3)


# --- 1-D CNNs on the raw waveform --------------------------------------------------------------

class LeeNet11(PannsTagger):
    embedding_size = 512
    # (in, out, stride) of conv_block1..9; blocks 2..9 max-pool by 3
    blocks = ((1, 64, 3), (64, 64, 1), (64, 64, 1), (64, 128, 1)) + ((128, 128, 1),) * 4 \
        + ((128, 256, 1),)
    convs, dropout, last_pool = 1, 0.0, 3

    def __init__(self, sample_rate, window_size, hop_size, mel_bins, fmin, fmax,
                 classes_num=AUDIOSET_CLASSES_NUM):
        super().__init__(sample_rate, window_size, hop_size, mel_bins, fmin, fmax, classes_num)
        for index, (c_in, c_out, stride) in enumerate(self.blocks, 1):
            setattr(self, f"conv_block{index}",
                    Conv1dBlock(c_in, c_out, 3, stride, convs=self.convs))
        self.add_head(self.blocks[-1][1], classes_num)

    def feature_map(self, input, mixup_lambda):
        x = mix(input[:, None, :], mixup_lambda)
        for index in range(1, len(self.blocks) + 1):
            pool = 1 if index == 1 else (self.last_pool if index == len(self.blocks) else 3)
            x = getattr(self, f"conv_block{index}")(x, pool_size=pool)
            if self.dropout and index < len(self.blocks):
                x = F.dropout(x, p=self.dropout, training=self.training)
        return x


class LeeNet24(LeeNet11):
    embedding_size = 1024
    blocks = ((1, 64, 3), (64, 96, 1), (96, 128, 1), (128, 128, 1), (128, 256, 1),
              (256, 256, 1), (256, 512, 1), (512, 512, 1), (512, 1024, 1))
    convs, dropout, last_pool = 2, 0.1, 1


class DaiNet19(PannsTagger):
    embedding_size = 512
    min_waveform_samples = 332  # conv0 (80 taps, stride 4) then three 4x poolings

    def __init__(self, sample_rate, window_size, hop_size, mel_bins, fmin, fmax,
                 classes_num=AUDIOSET_CLASSES_NUM):
        super().__init__(sample_rate, window_size, hop_size, mel_bins, fmin, fmax, classes_num)
        self.conv0 = nn.Conv1d(1, 64, kernel_size=80, stride=4, padding=0, bias=False)
        self.bn0 = nn.BatchNorm1d(64)
        self.add_conv_blocks(DaiNetResBlock, (64, 64, 128, 256, 512))
        self.add_head(512, classes_num)
        init_layer(self.conv0)
        init_bn(self.bn0)

    def feature_map(self, input, mixup_lambda):
        x = self.bn0(self.conv0(mix(input[:, None, :], mixup_lambda)))
        for index in range(1, 5):
            x = getattr(self, f"conv_block{index}")(x)
            if index < 4:
                x = F.max_pool1d(x, kernel_size=4)
        return x


class Res1dNet31(PannsTagger):
    embedding_size = 2048
    layers = (2, 2, 2, 2, 2, 2, 2)
    min_waveform_samples = 20476  # conv0's stride 5, then six 4x poolings

    def __init__(self, sample_rate, window_size, hop_size, mel_bins, fmin, fmax,
                 classes_num=AUDIOSET_CLASSES_NUM):
        super().__init__(sample_rate, window_size, hop_size, mel_bins, fmin, fmax, classes_num)
        self.conv0 = nn.Conv1d(1, 64, kernel_size=11, stride=5, padding=5, bias=False)
        self.bn0 = nn.BatchNorm1d(64)
        self.resnet = ResNetStack(BasicBlock, list(zip((64, 128, 256, 512, 1024, 1024, 2048),
                                                       self.layers, (1, 4, 4, 4, 4, 4, 4))),
                                  dims=1)
        self.add_head(2048, classes_num)
        init_layer(self.conv0)
        init_bn(self.bn0)

    def feature_map(self, input, mixup_lambda):
        return self.resnet(self.bn0(self.conv0(mix(input[:, None, :], mixup_lambda))))


class Res1dNet51(Res1dNet31):
    layers = (2, 3, 4, 6, 4, 3, 2)


TAGGERS = {model_class.__name__: model_class for model_class in (
    Cnn6, Cnn10, Cnn14, Cnn14_16k, Cnn14_8k, Cnn14_emb512, Cnn14_emb128, Cnn14_emb32,
    Cnn14_mel32, Cnn14_mel128, ResNet22, ResNet38, ResNet54, MobileNetV1, MobileNetV2,
    Wavegram_Cnn14, Wavegram_Logmel_Cnn14, Cnn14_DecisionLevelMax, Cnn14_DecisionLevelAvg,
    Cnn14_DecisionLevelAtt, Res1dNet31, Res1dNet51, LeeNet11, LeeNet24, DaiNet19)}


class TransferModel(nn.Module):
    """A pretrained PANNs tagger as `base` plus a new linear head `fc_transfer` on its embedding."""
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
            if hasattr(self.base, "spec_augmenter"):
                self.base.spec_augmenter.train(mode)
        return self

    def head(self, embedding):
        """Embeddings -> clipwise_output: log-probabilities for single_label, probabilities per
        class for multi_label. The linear probe fits this layer alone on cached embeddings."""
        logits = self.fc_transfer(embedding)
        if self.task == MULTI_LABEL:
            return sigmoid(logits)
        return torch.log_softmax(logits, dim=-1)

    def forward(self, input, mixup_lambda=None):
        embedding = self.base(input, mixup_lambda)["embedding"]
        return {"clipwise_output": self.head(embedding), "embedding": embedding}


def transfer_class(tagger_class):
    return type(f"Transfer_{tagger_class.__name__}", (TransferModel,),
                {"base_class": tagger_class, "__doc__": f"{tagger_class.__name__} + a new head."})


MODELS = dict(TAGGERS)
MODELS.update({f"Transfer_{name}": transfer_class(tagger) for name, tagger in TAGGERS.items()})
Transfer_Cnn14 = MODELS["Transfer_Cnn14"]
Transfer_Cnn6 = MODELS["Transfer_Cnn6"]


def tagger_of(model):
    """The AudioSet tagger inside a model (the base of a transfer model)."""
    return model.base if isinstance(model, TransferModel) else model


def create_model(model_type, *, sample_rate, window_size, hop_size, mel_bins, fmin, fmax,
                 classes_num, freeze_base=False, task=SINGLE_LABEL,
                 pretrained_checkpoint_path=None, trust_checkpoint=False):
    """Build a model by name; load pretrained weights when a checkpoint path is given.

    The plain taggers (Cnn14, ResNet38, ...) have the 527 AudioSet sigmoid outputs and load the
    checkpoint into the whole model; Transfer_* load it into their base.
    """
    if model_type not in MODELS:
        raise UsageError(f"--model_type={model_type} is unknown; choose one of "
                         f"{', '.join(TAGGERS)}, or Transfer_ followed by one of them")
    audio = dict(sample_rate=sample_rate, window_size=window_size, hop_size=hop_size,
                 mel_bins=mel_bins, fmin=fmin, fmax=fmax)
    model_class = MODELS[model_type]
    if issubclass(model_class, TransferModel):
        model = model_class(**audio, classes_num=classes_num, freeze_base=freeze_base, task=task)
    elif classes_num != AUDIOSET_CLASSES_NUM:
        raise UsageError(f"{model_type} is the AudioSet tagger with {AUDIOSET_CLASSES_NUM} "
                         f"classes, not {classes_num}; use Transfer_{model_type} for a new "
                         f"label set")
    else:
        model = model_class(**audio, classes_num=classes_num)
    if pretrained_checkpoint_path:
        load_pretrained(tagger_of(model), pretrained_checkpoint_path, trust_checkpoint,
                        keep_own_head=isinstance(model, TransferModel))
    return model
