"""The layers the published PANNs architectures are built from, shared between them.

Module names, their order inside nn.Sequential (pooling and activation layers included, since
they take up indices) and the initialisation follow the published code
(qiuqiangkong/audioset_tagging_cnn, pytorch/models.py), so that the official checkpoints load
strictly and every layer computes what the published one computes.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def sigmoid(x):
    """torch.sigmoid; traced for ONNX as 1 / (1 + exp(-x)). onnxruntime's Sigmoid kernel is an
    approximation within 1.5e-7 of the true value, so 10% off for a probability of 1e-6 and 0
    below a logit of -18 (every such label tied); the exp form is within float32 rounding
    (1.5e-7 relative) from logits of -40 to 40, so an export ranks unlikely labels as PyTorch.
    Logits below -80 count as -80 (probability 1.8e-35): exp stays finite, which int8
    calibration's histograms of every tensor need."""
    if torch.onnx.is_in_onnx_export():
        return torch.reciprocal(1 + torch.exp(torch.clamp(-x, max=80.0)))
    return torch.sigmoid(x)


def init_layer(layer):
    """Xavier-uniform weights and zero bias, as in PANNs."""
    nn.init.xavier_uniform_(layer.weight)
    if getattr(layer, "bias", None) is not None:
        layer.bias.data.fill_(0.)


def init_bn(bn, weight=1.):
    bn.bias.data.fill_(0.)
    bn.weight.data.fill_(weight)


def initialised(layers):
    """Initialise, in order, the convolutions and batch norms among `layers` (an nn.Sequential,
    or a block's children) as PANNs does; other modules are left alone. Returns `layers`."""
    for layer in layers:
        if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
            init_layer(layer)
        elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            init_bn(layer)
    return layers


def pool2d(x, pool_size, pool_type="avg"):
    if pool_type == "avg":
        return F.avg_pool2d(x, kernel_size=pool_size)
    if pool_type == "max":
        return F.max_pool2d(x, kernel_size=pool_size)
    return F.avg_pool2d(x, kernel_size=pool_size) + F.max_pool2d(x, kernel_size=pool_size)


# --- 2-D convolution blocks (CNN6/10/14, the ResNets' stem and tail, the Wavegram) --------------

class ConvBlock(nn.Module):
    """Two 3x3 conv + BN + ReLU layers, then pooling (Cnn10, Cnn14)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        # Attribute order fixes the state_dict order: conv1, conv2, bn1, bn2 as published.
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        initialised(self.children())

    def forward(self, x, pool_size=(2, 2), pool_type="avg"):
        x = F.relu_(self.bn1(self.conv1(x)))
        x = F.relu_(self.bn2(self.conv2(x)))
        return pool2d(x, pool_size, pool_type)


class ConvBlock5x5(nn.Module):
    """One 5x5 conv + BN + ReLU layer, then pooling (Cnn6)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 5, 1, 2, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        initialised(self.children())

    def forward(self, x, pool_size=(2, 2), pool_type="avg"):
        return pool2d(F.relu_(self.bn1(self.conv1(x))), pool_size, pool_type)


class AttBlock(nn.Module):
    """Attention pooling over time (Cnn14_DecisionLevelAtt): softmax(att) weights cla's outputs."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.att = nn.Conv1d(n_in, n_out, kernel_size=1, bias=True)
        self.cla = nn.Conv1d(n_in, n_out, kernel_size=1, bias=True)
        self.bn_att = nn.BatchNorm1d(n_out)  # in the checkpoints, unused by the published forward
        initialised(self.children())

    def forward(self, x):
        """x: (batch, n_in, time) -> (clipwise (batch, n_out), segmentwise (batch, n_out, time))."""
        norm_att = torch.softmax(torch.clamp(self.att(x), -10, 10), dim=-1)
        cla = sigmoid(self.cla(x))
        return torch.sum(norm_att * cla, dim=2), cla


# --- residual networks, 2-D (ResNet22/38/54) and 1-D (Res1dNet31/51) ---------------------------

class BasicBlock(nn.Module):
    """Two convolutions with a residual connection. 2-D: 3x3 convs, average-pooled by 2 first
    when striding. 1-D (`dims=1`): 3-tap convs, the second dilated by 2, max-pooled first."""
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, dims=2):
        super().__init__()
        conv, norm = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv1d, nn.BatchNorm1d)
        self.dims = dims
        self.stride = stride
        self.conv1 = conv(inplanes, planes, 3, 1, 1, bias=False)
        self.bn1 = norm(planes)
        self.relu = nn.ReLU(inplace=True)
        dilation = 1 if dims == 2 else 2
        self.conv2 = conv(planes, planes, 3, 1, dilation, dilation=dilation, bias=False)
        self.bn2 = norm(planes)
        self.downsample = downsample  # initialised by ResNetStack
        initialised([self.conv1, self.bn1, self.conv2])
        init_bn(self.bn2, weight=0.)  # each residual branch starts as the identity

    def forward(self, x):
        identity = x
        if self.stride != 1:
            out = (F.avg_pool2d(x, kernel_size=(2, 2)) if self.dims == 2
                   else F.max_pool1d(x, kernel_size=self.stride))
        else:
            out = x
        out = self.relu(self.bn1(self.conv1(out)))
        out = F.dropout(out, p=0.1, training=self.training)
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(identity)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 channels) with a residual connection (ResNet54)."""
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, dims=2):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        for conv in (self.conv1, self.conv2, self.conv3):
            init_layer(conv)
        initialised([self.bn1, self.bn2])
        init_bn(self.bn3, weight=0.)

    def forward(self, x):
        identity = x
        if self.stride == 2:
            x = F.avg_pool2d(x, kernel_size=(2, 2))
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = F.dropout(out, p=0.1, training=self.training)
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(identity)
        return self.relu(out + identity)


class ResNetStack(nn.Module):
    """layer1..layerN of residual blocks; `stages` lists (planes, blocks, stride) per layer.

    A layer that changes the channel count or strides gets a 1x1-conv shortcut
    ('downsample'), average-pooled by the stride first when it strides.
    """

    def __init__(self, block, stages, dims=2, inplanes=64):
        super().__init__()
        conv, norm, pool = ((nn.Conv2d, nn.BatchNorm2d, nn.AvgPool2d) if dims == 2
                            else (nn.Conv1d, nn.BatchNorm1d, nn.AvgPool1d))
        for index, (planes, blocks, stride) in enumerate(stages, 1):
            outplanes = planes * block.expansion
            downsample = None
            if stride != 1 or inplanes != outplanes:
                shortcut = [conv(inplanes, outplanes, 1, bias=False), norm(outplanes)]
                downsample = initialised(nn.Sequential(
                    *([pool(kernel_size=stride)] if stride != 1 else []), *shortcut))
            layers = [block(inplanes, planes, stride, downsample, dims=dims)]
            layers += [block(outplanes, planes, dims=dims) for _ in range(1, blocks)]
            setattr(self, f"layer{index}", nn.Sequential(*layers))
            inplanes = outplanes
        self.layers_num = len(stages)
        self.out_channels = inplanes

    def forward(self, x):
        for index in range(1, self.layers_num + 1):
            x = getattr(self, f"layer{index}")(x)
        return x


# --- MobileNets ---------------------------------------------------------------------------------

def mobilenet_stem(inp, oup, stride, activation):
    """3x3 conv, average pooling by `stride`, BN, activation."""
    return initialised(nn.Sequential(nn.Conv2d(inp, oup, 3, 1, 1, bias=False),
                                     nn.AvgPool2d(stride), nn.BatchNorm2d(oup),
                                     activation(inplace=True)))


def depthwise_separable(inp, oup, stride):
    """MobileNetV1's block: 3x3 depthwise conv, pooling, BN, ReLU, 1x1 conv, BN, ReLU."""
    return initialised(nn.Sequential(
        nn.Conv2d(inp, inp, 3, 1, 1, groups=inp, bias=False), nn.AvgPool2d(stride),
        nn.BatchNorm2d(inp), nn.ReLU(inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup), nn.ReLU(inplace=True)))


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expansion (unless the ratio is 1), depthwise 3x3 with pooling,
    1x1 projection; residual when it neither strides nor changes channels."""

    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        expand = [] if expand_ratio == 1 else [nn.Conv2d(inp, hidden, 1, 1, 0, bias=False),
                                               nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        self.conv = initialised(nn.Sequential(
            *expand,
            nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden, bias=False), nn.AvgPool2d(stride),
            nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)))

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


# --- 1-D waveform blocks (LeeNet, DaiNet, the Wavegram) -------------------------------------------

class Conv1dBlock(nn.Module):
    """`convs` 1-D conv + BN + ReLU layers (the first with `stride`), then max pooling.

    convs=1: LeeNet11's block; convs=2: LeeNet24's. With `dilated` and pool padding 0 it is the
    Wavegram's ConvPreWavBlock (second conv dilated by 2, unpadded pooling)."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, convs=1, dilated=False):
        super().__init__()
        self.pad_pool = not dilated
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size, stride,
                               padding=kernel_size // 2, bias=False)
        if convs == 2:
            dilation = 2 if dilated else 1
            self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size, 1,
                                   padding=dilation * (kernel_size // 2), dilation=dilation,
                                   bias=False)
        self.bn1 = nn.BatchNorm1d(out_channels)
        if convs == 2:
            self.bn2 = nn.BatchNorm1d(out_channels)
        initialised(self.children())

    def forward(self, x, pool_size=1):
        x = F.relu_(self.bn1(self.conv1(x)))
        if hasattr(self, "conv2"):
            x = F.relu_(self.bn2(self.conv2(x)))
        if pool_size != 1:
            x = F.max_pool1d(x, kernel_size=pool_size,
                             padding=pool_size // 2 if self.pad_pool else 0)
        return x


class DaiNetResBlock(nn.Module):
    """Four 3-tap convs with a residual connection (DaiNet19). The 1x1 shortcut exists in every
    block, as published, but is used only where the shapes differ."""

    def __init__(self, in_channels, out_channels, kernel_size=3):
        super().__init__()
        for index in range(1, 5):
            setattr(self, f"conv{index}", nn.Conv1d(in_channels if index == 1 else out_channels,
                                                    out_channels, kernel_size, 1,
                                                    padding=kernel_size // 2, bias=False))
        self.downsample = nn.Conv1d(in_channels, out_channels, 1, 1, 0, bias=False)
        for index in range(1, 5):
            setattr(self, f"bn{index}", nn.BatchNorm1d(out_channels))
        self.bn_downsample = nn.BatchNorm1d(out_channels)
        initialised(self.children())
        init_bn(self.bn4, weight=0.)

    def forward(self, input):
        x = F.relu_(self.bn1(self.conv1(input)))
        x = F.relu_(self.bn2(self.conv2(x)))
        x = F.relu_(self.bn3(self.conv3(x)))
        x = self.bn4(self.conv4(x))
        if input.shape == x.shape:
            return F.relu_(x + input)
        return F.relu(x + self.bn_downsample(self.downsample(input)))


def repeat_frames(x, ratio, frames_num):
    """(batch, segments, classes) -> (batch, frames_num, classes): each segment repeated `ratio`
    times, then the last value repeated up to frames_num (the published framewise output)."""
    x = x.repeat_interleave(ratio, dim=1)[:, :frames_num]
    if x.shape[1] < frames_num:
        x = torch.cat([x, x[:, -1:].expand(-1, frames_num - x.shape[1], -1)], dim=1)
    return x
