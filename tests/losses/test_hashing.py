"""F10: OrthoHash: CosFace over a fixed ±1 codebook, the Hamming identity, the quantisation term, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lossatlas as la
from lossatlas.functional import bernoulli_codebook

G = torch.Generator().manual_seed(10)


def _batch(n: int = 6, k: int = 16, c: int = 4):
    v = torch.randn(n, k, generator=G, dtype=torch.float64)
    return v, torch.arange(n) % c, bernoulli_codebook(c, k, seed=3)


@pytest.mark.parametrize(("s", "m"), [(8.0, 0.2), (4.0, 0.5)])
def test_orthohash_is_the_official_cosface_over_the_codebook(s, m):
    v, y, cb = _batch()
    # kamwoh/orthohash: logits = cos(v, codebook) (the model's CosSim), margin_logits = s (logits - m onehot), CE
    cos = F.normalize(v, dim=1) @ F.normalize(cb, dim=1).T
    ref = F.cross_entropy(s * (cos - m * F.one_hot(y, 4).to(torch.float64)), y)
    torch.testing.assert_close(la.functional.orthohash(v, y, cb, scale=s, margin=m), ref, rtol=1e-12, atol=1e-12)
    # and it is CosFace with the codebook as fixed class weights
    torch.testing.assert_close(la.functional.orthohash(v, y, cb, scale=s, margin=m),
                               la.functional.cosface(v, y, cb, scale=s, margin=m), rtol=1e-12, atol=1e-12)


def test_codebook_and_hamming_identity():
    cb = bernoulli_codebook(10, 64, seed=0)
    assert set(cb.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(cb, bernoulli_codebook(10, 64, seed=0)) and not torch.equal(cb, bernoulli_codebook(10, 64, seed=1))
    # for a binary code b, cos(b, c) = 1 - 2 d_H(b, c) / K: the cosine logits rank classes by Hamming distance
    b = torch.randn(5, 64, generator=G, dtype=torch.float64).sign()
    d_h = (b[:, None, :] != cb[None]).sum(-1).to(torch.float64)
    cos = F.normalize(b, dim=1) @ F.normalize(cb, dim=1).T
    torch.testing.assert_close(cos, 1 - 2 * d_h / 64)
    crit = la.create("orthohash", num_classes=10, embedding_size=64, seed=0)
    assert torch.equal(crit.codebook, cb)
    # a code equal to its class code has the smallest loss among codes of the same norm
    best = crit(cb[[2]].clone(), torch.tensor([2]))
    other = crit(cb[[5]].clone(), torch.tensor([2]))
    assert best < other


def test_quantization_term_and_gradients():
    v, y, cb = _batch()
    base = la.functional.orthohash(v, y, cb, reduction="none")
    q = la.functional.orthohash(v, y, cb, quantization=0.5, reduction="none")
    torch.testing.assert_close(q - base, 0.5 * (1 - F.cosine_similarity(v, v.sign(), dim=1)))
    # binary codes have no quantisation error
    torch.testing.assert_close(la.functional.orthohash(v.sign(), y, cb, quantization=1.0),
                               la.functional.orthohash(v.sign(), y, cb))
    assert torch.autograd.gradcheck(lambda x: la.functional.orthohash(x, y, cb, quantization=0.3, reduction="none"),
                                    [v.clone().requires_grad_(True)])


def test_bad_input():
    v, y, cb = _batch()
    with pytest.raises(ValueError, match="codebook must have shape"):
        la.functional.orthohash(v, y, cb[:, :5])
    with pytest.raises(ValueError, match="labels"):
        la.functional.orthohash(v, y + 4, cb)
    with pytest.raises(TypeError, match="labels"):
        la.functional.orthohash(v, y.double(), cb)
    with pytest.raises(ValueError, match="margin"):
        la.create("orthohash", num_classes=4, embedding_size=16, margin=-0.1)
    with pytest.raises(ValueError, match="num_classes"):
        la.create("orthohash", num_classes=0, embedding_size=16)
    with pytest.raises(ValueError, match="embeddings must have shape"):
        la.functional.orthohash(v[0], y, cb)
