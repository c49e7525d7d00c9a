"""lossatlas.integrations.huggingface against the real transformers.Trainer.

Tiny BERT classifiers are built from a config (no download), tokens are torch.randint. The
expected losses are float64 closed forms written here from the papers' definitions (not the
lossatlas functions), and the expected gradient of one optimizer step with gradient
accumulation is the gradient of the closed-form mean over the accumulated batch.
"""

from __future__ import annotations

import copy
import doctest
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import lossatlas as la
from lossatlas.integrations import huggingface as hf
from lossatlas.integrations.huggingface import TrainerLoss, compute_loss_func

transformers = pytest.importorskip("transformers", reason="pip install 'lossatlas[hf]'")
pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate: pip install 'lossatlas[hf]'")

COUNTS = [10.0, 5.0, 2.0]
NUM_CLASSES = 3


# ---------- float64 references, from the papers' definitions ----------

def _ce(z, y):
    return -torch.log_softmax(z, dim=1).gather(1, y[:, None])[:, 0]


def _ref_cross_entropy(z, y):
    return _ce(z, y)


def _ref_focal(z, y, gamma=2.0):  # Lin et al. 2017: -(1 - p_t)^gamma log p_t
    logp = torch.log_softmax(z, dim=1).gather(1, y[:, None])[:, 0]
    return -((1 - logp.exp()) ** gamma) * logp


def _ref_ldam(z, y, max_margin=0.5, scale=30.0):  # Cao et al. 2019: m_j ∝ n_j^(-1/4), CE(s (z - m_y e_y))
    n = torch.tensor(COUNTS, dtype=torch.float64)
    m = n.pow(-0.25)
    m = m * (max_margin / m.max())
    shifted = z - F.one_hot(y, NUM_CLASSES).double() * m[y][:, None]
    return _ce(scale * shifted, y)


def _ref_logit_adjusted(z, y, tau=1.0):  # Menon et al. 2021: CE(z + tau log pi)
    n = torch.tensor(COUNTS, dtype=torch.float64)
    return _ce(z + tau * torch.log(n / n.sum()), y)


def _ref_balanced_softmax(z, y):  # Ren et al. 2020: CE(z + log n)
    return _ce(z + torch.log(torch.tensor(COUNTS, dtype=torch.float64)), y)


def _ref_vs(z, y, gamma=0.3, tau=1.0):  # Kini et al. 2021: CE(Delta z + iota), Delta_j = (n_j / n_max)^gamma
    n = torch.tensor(COUNTS, dtype=torch.float64)
    return _ce((n / n.max()).pow(gamma) * z + tau * torch.log(n / n.sum()), y)


CASES = {
    "cross_entropy": ({}, _ref_cross_entropy),
    "focal": ({"gamma": 2.0}, _ref_focal),
    "ldam": ({"class_counts": COUNTS}, _ref_ldam),
    "logit_adjusted": ({"class_counts": COUNTS}, _ref_logit_adjusted),
    "balanced_softmax": ({"class_counts": COUNTS}, _ref_balanced_softmax),
    "vs": ({"class_counts": COUNTS}, _ref_vs),
}


def _ref_mean(loss_id, logits, labels):
    """Mean of the closed form over the labels other than -100 (float64)."""
    keep = labels != -100
    return CASES[loss_id][1](logits.double()[keep], labels[keep]).mean()


# ---------- the Trainer run ----------

class _Dataset(torch.utils.data.Dataset):
    def __init__(self, input_ids, labels):
        self.input_ids, self.labels = input_ids, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.input_ids[i], "attention_mask": torch.ones_like(self.input_ids[i]), "labels": self.labels[i]}


def _tiny_bert(seed=0):
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16, num_labels=NUM_CLASSES, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(seed)
    return transformers.AutoModelForSequenceClassification.from_config(config)


class _GradsAtStep(transformers.TrainerCallback):
    """Copies the accumulated gradients just before each optimizer step (clipping is off)."""

    def __init__(self):
        self.grads = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads.append({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None})


def _train(tmp_path, loss_fn, steps=3):
    """4 samples, one labelled -100: per_device_train_batch_size=2 and gradient_accumulation_steps=2 make
    each optimizer step one pass over them, whose micro-batches hold 1 and 2 counted labels in some order."""
    torch.manual_seed(1)
    input_ids = torch.randint(0, 100, (4, 6))
    labels = torch.tensor([0, 2, -100, 1])
    model = _tiny_bert()
    initial = copy.deepcopy(model)
    seen_inputs, seen_calls = [], []
    model.register_forward_pre_hook(lambda m, a, kw: seen_inputs.append(kw["input_ids"].clone()), with_kwargs=True)

    def recording(outputs, labels, num_items_in_batch=None):
        seen_calls.append((labels.clone(), num_items_in_batch))
        return loss_fn(outputs, labels, num_items_in_batch=num_items_in_batch)

    grads = _GradsAtStep()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), use_cpu=True, report_to=[], save_strategy="no", per_device_train_batch_size=2,
        gradient_accumulation_steps=2, max_steps=steps, logging_steps=1, max_grad_norm=0.0, learning_rate=1e-2,
        disable_tqdm=True, seed=0,
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=_Dataset(input_ids, labels),
                                   compute_loss_func=recording, callbacks=[grads])
    trainer.train()
    return trainer, initial, seen_inputs, seen_calls, grads.grads


@pytest.mark.parametrize("loss_id", list(CASES))
def test_trainer_gradient_accumulation_matches_full_batch_mean(tmp_path, loss_id):
    kwargs, _ = CASES[loss_id]
    trainer, initial, seen_inputs, seen_calls, grads = _train(tmp_path, compute_loss_func(loss_id, **kwargs))

    # the Trainer really accumulated: 2 micro-batches per step, 3 counted labels per step, unequal micro-batches
    assert len(grads) == 3 and len(seen_calls) == 6 and len(seen_inputs) == 6
    for labels, n in seen_calls:
        assert float(n) == 3.0
    assert sorted(int((labels != -100).sum()) for labels, _ in seen_calls[:2]) == [1, 2]

    # reference: the initial model on the step's 4 samples, the closed-form mean over the 3 kept labels
    ref_model = initial.train()
    input_ids = torch.cat(seen_inputs[:2])
    labels = torch.cat([labels for labels, _ in seen_calls[:2]])
    logits = ref_model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits
    ref_loss = _ref_mean(loss_id, logits, labels)
    ref_loss.backward()

    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 3 and all(math.isfinite(v) for v in logged)
    assert logged[0] == pytest.approx(float(ref_loss.detach()), rel=1e-5, abs=5.1e-5)  # older Trainers round to 4 decimals
    for name, p in ref_model.named_parameters():
        torch.testing.assert_close(grads[0][name], p.grad, rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}")

    # training changed the weights
    changed = [not torch.equal(p, q) for p, q in zip(trainer.model.parameters(), initial.parameters())]
    assert all(changed)


def test_per_micro_batch_mean_would_not_match(tmp_path):
    """The check above can fail: the per-micro-batch mean (the loss's default, used when num_items_in_batch
    is dropped) gives another accumulated gradient on these batches."""
    inner = compute_loss_func("cross_entropy")
    _, initial, seen_inputs, seen_calls, grads = _train(tmp_path, lambda o, y, num_items_in_batch=None: inner(o, y), steps=1)
    input_ids = torch.cat(seen_inputs[:2])
    labels = torch.cat([labels for labels, _ in seen_calls[:2]])
    logits = initial.train()(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits
    _ref_mean("cross_entropy", logits, labels).backward()
    w = "classifier.weight"
    assert not torch.allclose(grads[0][w], dict(initial.named_parameters())[w].grad, rtol=1e-3, atol=1e-6)


# ---------- direct calls ----------

def _model_output(logits):
    from transformers.modeling_outputs import SequenceClassifierOutput

    return SequenceClassifierOutput(logits=logits)


@pytest.mark.parametrize("loss_id", list(CASES))
def test_call_matches_closed_form(loss_id):
    kwargs, _ = CASES[loss_id]
    f = compute_loss_func(loss_id, **kwargs)
    logits = torch.randn(6, NUM_CLASSES, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, -100, 2, 1, -100, 2])
    keep = labels != -100
    per_sample = CASES[loss_id][1](logits.detach()[keep], labels[keep])
    out = _model_output(logits)
    torch.testing.assert_close(f(out, labels), per_sample.mean())
    torch.testing.assert_close(f(out, labels, num_items_in_batch=torch.tensor(10.0)), per_sample.sum() / 10)
    torch.testing.assert_close(f(out, labels, num_items_in_batch=10), per_sample.sum() / 10)
    torch.testing.assert_close(f(out, labels, num_items_in_batch=10.0), per_sample.sum() / 10)  # older Trainers: .item()
    # the output can be scaled in place (the Trainer's `loss *= ...`) and back-propagated
    for n in (4, None):
        logits.grad = None
        loss = f(out, labels, num_items_in_batch=n)
        loss *= 2.0
        loss.backward()
        assert torch.isfinite(logits.grad).all() and (logits.grad[~keep] == 0).all() and (logits.grad[keep] != 0).any()


def test_token_classification_shapes_and_tuple_outputs():
    f = compute_loss_func("cross_entropy")
    logits = torch.randn(2, 5, NUM_CLASSES, dtype=torch.float64)
    labels = torch.tensor([[0, 1, 2, -100, -100], [2, -100, 1, 1, 0]])
    expected = F.cross_entropy(logits.reshape(-1, NUM_CLASSES), labels.reshape(-1), ignore_index=-100, reduction="sum") / 7
    torch.testing.assert_close(f((logits, None), labels, num_items_in_batch=7), expected)
    torch.testing.assert_close(f(logits, labels, num_items_in_batch=7), expected)
    g = compute_loss_func("cross_entropy", logits_key="scores")
    torch.testing.assert_close(g({"scores": logits}, labels, num_items_in_batch=7), expected)


def test_all_ignored_gives_zero_not_nan():
    f = compute_loss_func("focal")
    logits = torch.randn(3, NUM_CLASSES, requires_grad=True)
    labels = torch.full((3,), -100)
    for n in (None, 0, torch.tensor(0.0)):
        loss = f({"logits": logits}, labels, num_items_in_batch=n)
        assert float(loss.detach()) == 0.0
        loss.backward()
    assert (logits.grad == 0).all()


def test_low_precision_logits_are_upcast():
    f = compute_loss_func("cross_entropy")
    logits = torch.randn(4, NUM_CLASSES).to(torch.bfloat16)
    labels = torch.tensor([0, 1, 2, 0])
    out = f({"logits": logits}, labels, num_items_in_batch=4)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, F.cross_entropy(logits.float(), labels))


def test_other_ignore_index_and_none():
    logits = torch.randn(4, NUM_CLASSES, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0])
    f = compute_loss_func("cross_entropy", ignore_index=2)
    torch.testing.assert_close(f(logits, labels), F.cross_entropy(logits, labels, ignore_index=2))
    g = compute_loss_func("cross_entropy", ignore_index=None)
    torch.testing.assert_close(g(logits, labels, num_items_in_batch=4), F.cross_entropy(logits, labels))


def test_module_is_used_with_its_hyper_parameters():
    crit = la.create("focal", gamma=0.0, reduction="none")  # its reduction is not used; gamma 0 is cross-entropy
    f = compute_loss_func(crit)
    assert isinstance(f, TrainerLoss) and f.loss is crit
    logits, labels = torch.randn(5, NUM_CLASSES, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1])
    torch.testing.assert_close(f(logits, labels), F.cross_entropy(logits, labels))


def test_bad_arguments():
    with pytest.raises(TypeError, match="classification"):
        compute_loss_func("supcon")
    with pytest.raises(TypeError, match="classification"):
        compute_loss_func("bce")
    with pytest.raises(ValueError, match="unknown lossatlas id"):
        compute_loss_func("not_a_loss")
    with pytest.raises(TypeError, match="loss id"):
        compute_loss_func(la.create("focal"), gamma=1.0)
    with pytest.raises(TypeError, match="loss must be"):
        compute_loss_func(torch.nn.CrossEntropyLoss())
    with pytest.raises(TypeError, match="ignore_index"):
        compute_loss_func("focal", ignore_index=1.5)
    f = compute_loss_func("focal")
    logits = torch.randn(4, NUM_CLASSES)
    with pytest.raises(ValueError, match="labels is None"):
        f({"logits": logits}, None)
    with pytest.raises(ValueError, match="'logits'"):
        f({"scores": logits}, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="labels shape"):
        f(logits, torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        f(logits, torch.zeros(4))
    with pytest.raises(TypeError, match="num_items_in_batch"):
        f(logits, torch.zeros(4, dtype=torch.long), num_items_in_batch="4")


def test_doctests():
    assert doctest.testmod(hf, optionflags=doctest.ELLIPSIS).failed == 0


def test_import_lossatlas_does_not_import_frameworks():
    code = ("import sys, lossatlas, lossatlas.integrations, lossatlas.integrations.huggingface, lossatlas.integrations.lightning;"
            "print(sorted(m for m in ('transformers', 'lightning', 'pytorch_lightning') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
