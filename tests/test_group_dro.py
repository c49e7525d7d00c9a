"""E4: group DRO (weighting), worst-group accuracy (metric) and subsampling (sampler)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

import lossatlas as la
from lossatlas.metrics import GroupAccuracy, worst_group_accuracy
from lossatlas.samplers import SubsampleSampler
from lossatlas.weighting import GroupDRO, apply, group_dro_weights


def _reference_steps(loss_seq, group_seq, counts, eta, c):
    """Sagawa et al.'s Algorithm 1 as the official LossComputer runs it (probabilities, not logs):
    the per-group batch means (0 for an absent group), q <- q * exp(eta * (mean + C / sqrt(n_g))),
    normalised, then the robust loss sum_g q_g mean_g with the new q."""
    G = len(counts)
    q = [1.0 / G] * G
    out = []
    for losses, groups in zip(loss_seq, group_seq):
        means = []
        for g in range(G):
            mine = [x for x, h in zip(losses, groups) if h == g]
            means.append(sum(mine) / len(mine) if mine else 0.0)
        q = [qg * math.exp(eta * (m + c / math.sqrt(n))) for qg, m, n in zip(q, means, counts)]
        total = sum(q)
        q = [v / total for v in q]
        out.append((list(q), sum(v * m for v, m in zip(q, means))))
    return out


@pytest.mark.parametrize(("eta", "c"), [(0.01, 0.0), (0.5, 0.0), (0.3, 2.0)])
def test_group_dro_follows_the_papers_algorithm(eta, c):
    g = torch.Generator().manual_seed(4)
    counts = [50.0, 30.0, 10.0, 2.0]
    loss_seq = [torch.rand(12, generator=g, dtype=torch.float64) * 3 for _ in range(6)]
    group_seq = [torch.randint(0, 3, (12,), generator=g) for _ in range(6)]  # group 3 never in a batch
    group_seq[2][:4] = 3
    gdro = la.create("group_dro", group_counts=counts, step_size=eta, adjustment=c)
    ref = _reference_steps([x.tolist() for x in loss_seq], [y.tolist() for y in group_seq], counts, eta, c)
    for losses, groups, (q_ref, robust_ref) in zip(loss_seq, group_seq, ref):
        robust = apply(losses, gdro, groups, reduction="sum")
        torch.testing.assert_close(gdro.q, torch.tensor(q_ref, dtype=torch.float64), rtol=1e-12, atol=1e-14)
        assert robust.item() == pytest.approx(robust_ref, rel=1e-12)


def test_group_dro_gradient_is_q_over_the_groups_batch_count():
    logits = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    groups = torch.tensor([0, 0, 0, 0, 1, 1])
    gdro = GroupDRO(group_counts=[4, 2], step_size=1.0)
    per_sample = F.cross_entropy(logits, y, reduction="none")
    robust = apply(per_sample, gdro, groups, reduction="sum")
    (dl,) = torch.autograd.grad(robust, per_sample)
    q = gdro.q
    torch.testing.assert_close(dl, torch.stack([q[0] / 4] * 4 + [q[1] / 2] * 2))


def test_step_size_zero_keeps_uniform_weights_and_the_mean_of_group_means():
    gdro = GroupDRO(group_counts=[1, 1, 1], step_size=0.0)
    losses = torch.tensor([1.0, 2.0, 3.0, 10.0], dtype=torch.float64)
    groups = torch.tensor([0, 0, 1, 2])
    robust = apply(losses, gdro, groups, reduction="sum")
    torch.testing.assert_close(gdro.q, torch.full((3,), 1 / 3, dtype=torch.float64))
    assert robust.item() == pytest.approx((1.5 + 3 + 10) / 3)


def test_q_concentrates_on_the_worst_group_and_adjustment_favours_small_groups():
    gdro = GroupDRO(group_counts=[10, 10, 10], step_size=0.1)
    losses, groups = torch.tensor([1.0, 2.0, 1.5]), torch.tensor([0, 1, 2])
    for _ in range(500):
        gdro(losses, groups)
    assert gdro.q.argmax().item() == 1 and gdro.q[1].item() > 0.999
    # with equal losses only C / sqrt(n_g) moves q: the smaller group gains
    adj = GroupDRO(group_counts=[100, 4], step_size=1.0, adjustment=2.0)
    adj(torch.tensor([1.0, 1.0]), torch.tensor([0, 1]))
    expected = torch.softmax(torch.tensor([2 / 10, 2 / 2], dtype=torch.float64), 0)
    torch.testing.assert_close(adj.q, expected)
    # per-group adjustments: C = 0 for a group leaves it unadjusted
    per = GroupDRO(group_counts=[100, 4], step_size=1.0, adjustment=[0.0, 2.0])
    per(torch.tensor([1.0, 1.0]), torch.tensor([0, 1]))
    torch.testing.assert_close(per.q, torch.softmax(torch.tensor([0.0, 1.0], dtype=torch.float64), 0))


def test_function_and_module_agree_and_state_round_trips():
    losses, groups = torch.tensor([0.3, 2.0, 1.0]), torch.tensor([0, 1, 1])
    gdro = GroupDRO(group_counts=[3, 5], step_size=0.2, adjustment=1.0)
    w = gdro(losses, groups)
    w_fn, log_q = group_dro_weights(losses, groups, [3, 5], None, 0.2, 1.0)
    torch.testing.assert_close(w, w_fn)
    torch.testing.assert_close(gdro.log_q, log_q)
    fresh = GroupDRO(group_counts=[3, 5], step_size=0.2, adjustment=1.0)
    fresh.load_state_dict(gdro.state_dict())
    torch.testing.assert_close(fresh(losses, groups), gdro(losses, groups))
    gdro.reset()
    torch.testing.assert_close(gdro.q, torch.full((2,), 0.5, dtype=torch.float64))
    # a long run in log space keeps a losing group's weight positive (no underflow to 0)
    for _ in range(2000):
        gdro(torch.tensor([0.0, 50.0]), torch.tensor([0, 1]))
    assert gdro.log_q[0].item() > -math.inf and math.isfinite(gdro.log_q[0].item())


def test_group_dro_bad_input():
    gdro = GroupDRO(group_counts=[3, 5])
    with pytest.raises(ValueError, match="group values"):
        gdro(torch.ones(2), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="group must have shape"):
        gdro(torch.ones(2), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="losses must be per-sample"):
        gdro(torch.ones(2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="group ids"):
        apply(torch.ones(2), gdro)
    with pytest.raises(TypeError, match="group"):
        gdro(torch.ones(2), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="step_size"):
        GroupDRO(group_counts=[3, 5], step_size=-1.0)
    with pytest.raises(ValueError, match="adjustment"):
        GroupDRO(group_counts=[3, 5], adjustment=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="adjustment"):
        GroupDRO(group_counts=[3, 5], adjustment=-1.0)
    with pytest.raises(ValueError, match="group_counts"):
        GroupDRO(group_counts=[3, 0])
    with pytest.raises(ValueError, match="losses"):
        gdro(torch.tensor([1.0, float("nan")]), torch.tensor([0, 1]))


# ----------------------------------------------------------------------------- worst-group accuracy

def test_group_accuracy_counts_per_group_and_accumulates():
    m = GroupAccuracy(num_groups=3)
    preds = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])
    m.update(preds, torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 1, 1]))  # group 0: 1/2, group 1: 1/2
    m.update(torch.tensor([1, 1]), torch.tensor([1, 1]), torch.tensor([1, 1]))  # labels: group 1 -> 3/4
    out = m.compute()
    assert out["per_group_accuracy"][:2].tolist() == [0.5, 0.75]
    assert math.isnan(out["per_group_accuracy"][2].item())
    assert out["worst_group_accuracy"].item() == 0.5
    assert out["mean_group_accuracy"].item() == pytest.approx(0.625)
    assert out["average_accuracy"].item() == pytest.approx(4 / 6)
    with warnings.catch_warnings():  # torchmetrics warns about compute() before update()
        warnings.simplefilter("ignore")
        assert math.isnan(GroupAccuracy(num_groups=2).compute()["worst_group_accuracy"].item())


def test_worst_group_accuracy_function_and_bad_input():
    preds = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [2.0, 0.0]])
    assert worst_group_accuracy(preds, torch.tensor([0, 1, 1, 0]), torch.tensor([0, 0, 1, 1])) == 0.5
    m = GroupAccuracy(num_groups=2)
    with pytest.raises(ValueError, match="group values"):
        m.update(preds, torch.tensor([0, 1, 1, 0]), torch.tensor([0, 0, 2, 1]))
    with pytest.raises(ValueError, match="group must have shape"):
        m.update(preds, torch.tensor([0, 1, 1, 0]), torch.tensor([0, 0, 1]))
    with pytest.raises(TypeError, match="group"):
        m.update(preds, torch.tensor([0, 1, 1, 0]), torch.tensor([0.0, 0.0, 1.0, 1.0]))


# ----------------------------------------------------------------------------- subsampling

def test_subsample_keeps_the_smallest_group_size_of_every_group_fixed_across_epochs():
    labels = [0] * 10 + [1] * 3 + [3] * 7  # id 2 has no sample: not a group
    s = la.create("subsample_sampler", labels=labels, seed=5)
    assert isinstance(s, SubsampleSampler) and s.num_groups == 3 and s.group_size == 3 and len(s) == 9
    first = list(s)
    assert sorted(first) == s.subset.tolist()
    lab = torch.tensor(labels)
    assert torch.bincount(lab[torch.tensor(first)], minlength=4).tolist() == [3, 3, 0, 3]
    assert set(range(10, 13)) <= set(first)  # the smallest group is kept whole
    s.set_epoch(1)
    second = list(s)
    assert sorted(second) == sorted(first) and second != first  # same subset, new order
    other = SubsampleSampler(labels, seed=6)
    assert other.subset.tolist() != s.subset.tolist()  # the subset is the seed's draw
    assert SubsampleSampler(labels, seed=5).subset.tolist() == s.subset.tolist()


def test_subsample_replicas_partition_the_padded_epoch():
    labels = [0] * 5 + [1] * 5 + [2] * 5
    parts = [list(SubsampleSampler(labels, num_replicas=2, rank=r)) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == 8  # 15 padded to 16
    full = SubsampleSampler(labels, num_replicas=1, rank=0)
    assert sorted(parts[0] + parts[1]) == sorted(full.global_indices().tolist() + full.global_indices()[:1].tolist())
    with pytest.raises(ValueError, match="labels"):
        SubsampleSampler([])
    with pytest.raises(TypeError, match="labels"):
        SubsampleSampler([0.5, 1.0])
    with pytest.raises(ValueError, match="rank"):
        SubsampleSampler(labels, num_replicas=2, rank=2)
