"""Compact segmentation models for the osseg demo (PyTorch 1.13, CPU).

Both take a (1, 3, S, S) float tensor (image / 255, three identical
channels) and return (1, 29, S, S) logits, so the C pipeline treats them
exactly like the full-size UNet++ / SegFormer exports of the real project.
They are small on purpose: they must train on one CPU core in about an hour.

UNet++: a ResNet-style encoder (BasicBlocks, strided convolutions) with the
nested dense skip pathways of Zhou et al. (2018) as in
segmentation_models_pytorch's UnetPlusPlus: decoder node X[i][j] fuses
X[i][0..j-1] with the upsampled (nearest) X[i+1][j-1]; a last block brings
a 3x3 head predicts the classes at stride 2 and the logits are upsampled
bilinearly (align_corners=False) to S.

SegFormer: a small Mix Transformer (overlapping patch embeddings,
efficient self-attention with spatial reduction, Mix-FFN with a depthwise
3x3 convolution) and the all-MLP decoder of Xie et al. (2021); logits at
stride 4 are upsampled bilinearly (align_corners=False) to S.

Only ONNX opset-13 operators the osseg engine knows are produced: Conv,
BatchNormalization, Relu, Add, Concat, Resize, MatMul, Softmax, Transpose,
Reshape, and the decomposed forms of LayerNorm and GELU (Erf).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

NUM_CLASSES = 29


# ----------------------------------------------------------------- UNet++ --

def conv_bn_relu(cin, cout, k=3, stride=1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.down is None else self.down(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + idt)


class ResEncoder(nn.Module):
    """Features at strides 2, 4, 8, 16, 32."""

    def __init__(self, widths=(24, 32, 48, 80, 128), blocks=(1, 1, 2, 2)):
        super().__init__()
        self.stem = nn.Sequential(conv_bn_relu(3, widths[0], 3, 2),
                                  conv_bn_relu(widths[0], widths[0]))
        stages = []
        for i, n in enumerate(blocks):
            layers = [BasicBlock(widths[i], widths[i + 1], 2)]
            layers += [BasicBlock(widths[i + 1], widths[i + 1], 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.widths = widths

    def forward(self, x):
        feats = [self.stem(x)]
        for s in self.stages:
            feats.append(s(feats[-1]))
        return feats


class ConvBlock(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(conv_bn_relu(cin, cout), conv_bn_relu(cout, cout))


class UNetPlusPlus(nn.Module):
    def __init__(self, num_classes=NUM_CLASSES, enc_widths=(16, 32, 48, 80, 128),
                 dec_widths=(16, 32, 48, 64)):
        super().__init__()
        self.encoder = ResEncoder(enc_widths)
        E, D = enc_widths, dec_widths
        depth = len(E) - 1  # levels 0..depth
        self.depth = depth
        self.nodes = nn.ModuleDict()
        for j in range(1, depth + 1):
            for i in range(0, depth - j + 1):
                cin = E[i] + D[i] * (j - 1) + (E[i + 1] if j == 1 else D[i + 1])
                self.nodes["x_%d_%d" % (i, j)] = ConvBlock(cin, D[i])
        self.head = nn.Conv2d(D[0], num_classes, 3, 1, 1)

    def forward(self, x):
        feats = self.encoder(x)
        X = {(i, 0): f for i, f in enumerate(feats)}
        for j in range(1, self.depth + 1):
            for i in range(0, self.depth - j + 1):
                up = F.interpolate(X[(i + 1, j - 1)], scale_factor=2.0, mode="nearest")
                parts = [X[(i, k)] for k in range(j)] + [up]
                X[(i, j)] = self.nodes["x_%d_%d" % (i, j)](torch.cat(parts, 1))
        # The head works at stride 2; its logits are upsampled bilinearly,
        # which is what the pipeline does again to reach 2048 anyway.
        y = self.head(X[(0, self.depth)])
        return F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)


# -------------------------------------------------------------- SegFormer --

class OverlapPatchEmbed(nn.Module):
    def __init__(self, cin, cout, k, stride):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, k, stride, k // 2)
        self.norm = nn.LayerNorm(cout)

    def forward(self, x):
        x = self.proj(x)
        # Python ints, so that the export has constant shapes (fixed S).
        b, c, h, w = (int(v) for v in x.shape)
        x = x.reshape(b, c, h * w).transpose(1, 2)
        return self.norm(x), h, w


class EfficientAttention(nn.Module):
    def __init__(self, dim, heads, sr):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr
        if sr > 1:
            self.sr = nn.Conv2d(dim, dim, sr, sr)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x, h, w):
        b, n, c = (int(v) for v in x.shape)
        hd = c // self.heads
        q = self.q(x).reshape(b, n, self.heads, hd).permute(0, 2, 1, 3)
        if self.sr_ratio > 1:
            t = x.transpose(1, 2).reshape(b, c, h, w)
            t = self.sr(t)
            m = int(t.shape[2]) * int(t.shape[3])
            t = self.norm(t.reshape(b, c, m).transpose(1, 2))
        else:
            t, m = x, n
        k = self.k(t).reshape(b, m, self.heads, hd).permute(0, 2, 1, 3)
        v = self.v(t).reshape(b, m, self.heads, hd).permute(0, 2, 1, 3)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)


class MixFFN(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dw = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x, h, w):
        x = self.fc1(x)
        b, n, c = (int(v) for v in x.shape)
        x = self.dw(x.transpose(1, 2).reshape(b, c, h, w)).reshape(b, c, n).transpose(1, 2)
        return self.fc2(F.gelu(x))


class TransformerBlock(nn.Module):
    def __init__(self, dim, heads, sr, mlp_ratio=2):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = EfficientAttention(dim, heads, sr)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = MixFFN(dim, dim * mlp_ratio)

    def forward(self, x, h, w):
        x = x + self.attn(self.norm1(x), h, w)
        return x + self.ffn(self.norm2(x), h, w)


class MiT(nn.Module):
    """A small Mix Transformer: features at strides 4, 8, 16, 32."""

    def __init__(self, dims=(32, 64, 128, 192), depths=(2, 2, 2, 2), heads=(1, 2, 4, 6),
                 srs=(8, 4, 2, 1)):
        super().__init__()
        self.embeds = nn.ModuleList()
        self.blocks = nn.ModuleList()
        self.norms = nn.ModuleList()
        cin = 3
        for i in range(4):
            k, s = (7, 4) if i == 0 else (3, 2)
            self.embeds.append(OverlapPatchEmbed(cin, dims[i], k, s))
            self.blocks.append(nn.ModuleList(
                [TransformerBlock(dims[i], heads[i], srs[i]) for _ in range(depths[i])]))
            self.norms.append(nn.LayerNorm(dims[i]))
            cin = dims[i]
        self.dims = dims

    def forward(self, x):
        feats = []
        b = int(x.shape[0])
        for embed, blocks, norm, dim in zip(self.embeds, self.blocks, self.norms, self.dims):
            x, h, w = embed(x)
            for blk in blocks:
                x = blk(x, h, w)
            x = norm(x).transpose(1, 2).reshape(b, dim, h, w)
            feats.append(x)
        return feats


class SegFormer(nn.Module):
    def __init__(self, num_classes=NUM_CLASSES, dims=(24, 48, 96, 160), depths=(1, 1, 2, 1),
                 heads=(1, 2, 4, 5), decoder_dim=64):
        super().__init__()
        self.encoder = MiT(dims, depths, heads)
        self.proj = nn.ModuleList([nn.Conv2d(d, decoder_dim, 1) for d in dims])
        self.fuse = nn.Sequential(nn.Conv2d(4 * decoder_dim, decoder_dim, 1, bias=False),
                                  nn.BatchNorm2d(decoder_dim), nn.ReLU(inplace=True))
        self.head = nn.Conv2d(decoder_dim, num_classes, 1)

    def forward(self, x):
        size = (int(x.shape[2]), int(x.shape[3]))
        feats = self.encoder(x)
        s4 = (int(feats[0].shape[2]), int(feats[0].shape[3]))
        ups = []
        # Scale factors rather than sizes: with S a multiple of 32 they are
        # exact, and the export then has constant Resize scales (no Shape).
        for f, p in zip(feats, self.proj):
            y = p(f)
            factor = s4[0] // int(y.shape[2])
            if factor != 1:
                y = F.interpolate(y, scale_factor=float(factor), mode="bilinear",
                                  align_corners=False)
            ups.append(y)
        y = self.head(self.fuse(torch.cat(ups[::-1], 1)))
        return F.interpolate(y, scale_factor=float(size[0] // s4[0]), mode="bilinear",
                             align_corners=False)


def build(arch):
    if arch == "unetpp":
        return UNetPlusPlus()
    if arch == "segformer":
        return SegFormer()
    raise ValueError("unknown architecture %r (unetpp or segformer)" % arch)


def count_params(model):
    return sum(p.numel() for p in model.parameters())
