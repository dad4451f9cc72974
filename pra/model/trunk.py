"""The causal AR trunk f_theta: K class-prefix tokens followed by pixel patches (paper appendix A.2)."""
from __future__ import annotations

import torch
from torch import nn

from pra.model.transformer import CausalTransformer, KVCache


class Trunk(nn.Module):
    """Maps the class label and the input patches x_1..x_M to hidden states h_1..h_{M+1}.

    h_i summarises the label and x_<i and conditions the head that generates token i. The label
    indexes a table of K learned prefix tokens; index `num_classes` is the null label used for
    classifier-free guidance.
    """

    def __init__(self, *, width: int, depth: int, heads: int, mlp_ratio: float, patch_dim: int, grid: int,
                 num_classes: int, prefix_tokens: int, rope_theta: float):
        super().__init__()
        self.num_classes = num_classes
        self.prefix_tokens = prefix_tokens
        self.width = width
        self.class_tokens = nn.Parameter(torch.randn(num_classes + 1, prefix_tokens, width) * 0.02)
        self.patch_in = nn.Linear(patch_dim, width)
        self.body = CausalTransformer(width, depth, heads, mlp_ratio, grid, prefix_tokens, rope_theta)

    @property
    def null_label(self) -> int:
        return self.num_classes

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """inputs [B, M, P] (M <= N-1), labels [B] -> hidden states [B, M+1, width]."""
        seq = torch.cat([self.class_tokens[labels], self.patch_in(inputs)], dim=1)
        return self.body(seq)[:, self.prefix_tokens - 1:]

    def layer_features(self, patches: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
        """Residual stream after each block, average-pooled over the N image tokens: depth x [B, width].

        All N patches are fed (teacher forcing on clean images), so the last patch is seen too.
        """
        collect: list[torch.Tensor] = []
        seq = torch.cat([self.class_tokens[labels], self.patch_in(patches)], dim=1)
        self.body(seq, collect=collect)
        return [h[:, self.prefix_tokens:].mean(dim=1) for h in collect]

    def new_cache(self, batch: int, device, dtype=torch.float32) -> KVCache:
        return self.body.new_cache(batch, device, dtype)

    def prefill(self, labels: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Run the prefix through an empty cache; returns h_1 [B, width]."""
        return self.body(self.class_tokens[labels], cache)[:, -1]

    def step(self, patch: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Append one generated patch [B, P]; returns the next hidden state [B, width]."""
        return self.body(self.patch_in(patch)[:, None], cache)[:, -1]
