"""lossatlas.integrations.sentence_transformers against the real sentence-transformers.

The model is a tiny SentenceTransformer built here with no download: a one-layer BERT made
from a config and a word-level tokenizer made from a vocabulary of this file, saved to
tmp_path and loaded by sentence-transformers' own Transformer and Pooling modules. The
references are sentence-transformers' MultipleNegativesRankingLoss and
CachedMultipleNegativesRankingLoss on the same batch (values and every parameter's gradient),
float64 closed forms written here (SimCLR's NT-Xent), and a from-scratch MAP@R.
"""

from __future__ import annotations

import copy
import doctest
import math

import pytest
import torch
import torch.nn.functional as F

import lossatlas as la
from lossatlas.integrations import sentence_transformers as stmod
from lossatlas.integrations.sentence_transformers import SentenceTransformerLoss, retrieval_evaluator

st = pytest.importorskip("sentence_transformers", reason="pip install 'lossatlas[st]'")
transformers = pytest.importorskip("transformers", reason="pip install 'lossatlas[st]'")
tokenizers = pytest.importorskip("tokenizers", reason="pip install 'lossatlas[st]'")

try:  # sentence-transformers >= 6 (the top-level `losses` is a deprecated alias)
    from sentence_transformers.sentence_transformer import losses as st_losses
    from sentence_transformers.sentence_transformer import modules as st_modules
except ImportError:  # pragma: no cover - sentence-transformers 3.x - 5.x
    from sentence_transformers import losses as st_losses
    from sentence_transformers import models as st_modules

WORDS = "cat dog sun moon car road tree leaf red blue green small big fast slow old new".split()
ANCHORS = ["cat dog", "sun moon car", "red blue", "tree leaf road", "small big fast", "slow old new", "green cat", "road car"]
POSITIVES = ["dog cat red", "moon sun", "blue red green", "leaf tree", "fast big", "new old slow sun", "cat green", "car road big"]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """A saved one-layer BERT and its word-level tokenizer (both made here, nothing fetched)."""
    from tokenizers import models as tok_models
    from tokenizers import pre_tokenizers

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    tok = tokenizers.Tokenizer(tok_models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                                cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    path = tmp_path_factory.mktemp("tiny_bert")
    for dropout in (0.0, 0.1):
        config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=32, max_position_embeddings=32,
                                         hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
        torch.manual_seed(0)
        transformers.BertModel(config).save_pretrained(path / f"dropout{dropout}")
        fast.save_pretrained(path / f"dropout{dropout}")
    return path


def _model(bert_dir, dropout=0.0, dtype=torch.float64):
    model = st.SentenceTransformer(modules=[st_modules.Transformer(str(bert_dir / f"dropout{dropout}")),
                                            st_modules.Pooling(16, "mean")], device="cpu")
    return model.to(dtype)


def _features(model, *columns):
    prep = model.preprocess if hasattr(model, "preprocess") else model.tokenize
    return [prep(list(c)) for c in columns]


def _value_and_grads(model, loss, features, labels=None, seed=0):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    value = loss(features, labels)
    value.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return value.detach(), grads


def _assert_same(ours, theirs, rtol=1e-9, atol=1e-11):
    (v, g), (pv, pg) = ours, theirs
    torch.testing.assert_close(v, pv, rtol=rtol, atol=atol)
    assert g.keys() == pg.keys() and len(g) > 10  # every BERT parameter got a gradient
    for name in g:
        torch.testing.assert_close(g[name], pg[name], rtol=rtol, atol=atol, msg=lambda m: f"{name}: {m}")


# ---------------------------------------------------------------- equal to MNRL and CachedMNRL

MNRL_FORMS = {
    # sentence-transformers keywords -> lossatlas infonce keywords
    "one_way": ({}, {"symmetric": False}),
    "symmetric": ({"directions": ("query_to_doc", "doc_to_query"), "partition_mode": "per_direction"}, {"symmetric": True}),
}


@pytest.mark.parametrize("form", sorted(MNRL_FORMS))
@pytest.mark.parametrize("scale", [20.0, 5.0])
def test_infonce_equals_mnrl_and_cached_mnrl(bert_dir, form, scale):
    st_kw, la_kw = MNRL_FORMS[form]
    model = _model(bert_dir)
    feats = _features(model, ANCHORS, POSITIVES)
    mnrl = _value_and_grads(model, st_losses.MultipleNegativesRankingLoss(model, scale=scale, **st_kw), feats)
    cached = _value_and_grads(model, st_losses.CachedMultipleNegativesRankingLoss(model, scale=scale, mini_batch_size=3, **st_kw), feats)
    _assert_same(cached, mnrl)  # the two peers agree with each other
    for mini_batch_size in (None, 1, 3, 100):
        ours = SentenceTransformerLoss(model, "infonce", temperature=1 / scale, mini_batch_size=mini_batch_size, **la_kw)
        got = _value_and_grads(model, ours, feats)
        _assert_same(got, mnrl)
        _assert_same(got, cached)
    assert math.isfinite(float(mnrl[0])) and float(mnrl[0]) > 0


def test_other_temperature_or_direction_differs(bert_dir):
    """The equality above can fail: lossatlas's own defaults (T = 0.07, symmetric) are not MNRL's."""
    model = _model(bert_dir)
    feats = _features(model, ANCHORS, POSITIVES)
    mnrl, _ = _value_and_grads(model, st_losses.MultipleNegativesRankingLoss(model), feats)
    for kw in ({}, {"temperature": 0.05}, {"symmetric": False}):
        ours, _ = _value_and_grads(model, SentenceTransformerLoss(model, "infonce", **kw), feats)
        assert abs(float(ours) - float(mnrl)) > 1e-4, kw


def test_float32_model_matches_mnrl(bert_dir):
    model = _model(bert_dir, dtype=torch.float32)
    feats = _features(model, ANCHORS, POSITIVES)
    mnrl = _value_and_grads(model, st_losses.MultipleNegativesRankingLoss(model), feats)
    for mbs in (None, 2):
        ours = _value_and_grads(model, SentenceTransformerLoss(model, "infonce", temperature=0.05, symmetric=False, mini_batch_size=mbs), feats)
        _assert_same(ours, mnrl, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- GradCache details

def test_cached_replays_dropout_and_scales_by_grad_output(bert_dir):
    """With dropout on, the cached path's loss and gradients are those of the same mini-batches
    embedded with a graph under the same RNG stream (the second pass replays each mini-batch's
    RNG state; without the replay other dropout masks would give other gradients), and a
    backward of ``c · loss`` (gradient accumulation's scaling) gives ``c`` times the gradients."""
    model = _model(bert_dir, dropout=0.1).train()
    feats = _features(model, ANCHORS, POSITIVES)
    ours = SentenceTransformerLoss(model, "infonce", temperature=0.05, mini_batch_size=3)
    got = _value_and_grads(model, ours, feats, seed=7)

    model.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    n = len(ANCHORS)
    emb = [torch.cat([model({k: v[b:b + 3] if isinstance(v, torch.Tensor) else v for k, v in f.items()})["sentence_embedding"]
                      for b in range(0, n, 3)]) for f in feats]
    ref = _ref_infonce(emb[0], emb[1], 0.05, symmetric=True)
    ref.backward()
    ref_grads = {n_: p.grad.detach().clone() for n_, p in model.named_parameters() if p.grad is not None}
    _assert_same(got, (ref.detach(), ref_grads))

    # the same batch without a mini-batch split draws other masks: the check above is not vacuous
    plain = _value_and_grads(model, SentenceTransformerLoss(model, "infonce", temperature=0.05), feats, seed=7)
    assert abs(float(plain[0]) - float(got[0])) > 1e-6

    model.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    (0.25 * ours(feats, None)).backward()
    for name, g in got[1].items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, 0.25 * g, rtol=1e-9, atol=1e-12)


def test_cached_trains_the_loss_parameters(bert_dir):
    """A learnable temperature (CLIP's logit scale) gets the same gradient on both paths."""
    model = _model(bert_dir)
    feats = _features(model, ANCHORS, POSITIVES)
    grads = []
    for mbs in (None, 2):
        loss = SentenceTransformerLoss(model, "infonce", learnable=True, mini_batch_size=mbs).double()
        model.zero_grad(set_to_none=True)
        (3.0 * loss(feats, None)).backward()
        (param,) = list(loss.loss.parameters())
        grads.append(param.grad.clone())
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-9, atol=1e-12)


def test_cached_without_grad_is_the_loss_value(bert_dir):
    model = _model(bert_dir)
    feats = _features(model, ANCHORS, POSITIVES)
    with torch.no_grad():
        cached = SentenceTransformerLoss(model, "infonce", mini_batch_size=3)(feats, None)
        plain = SentenceTransformerLoss(model, "infonce")(feats, None)
    assert not cached.requires_grad
    torch.testing.assert_close(cached, plain, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- embedding losses: layouts

def _ref_infonce(a, b, t, symmetric):  # van den Oord 2018 / CLIP: CE over cosine similarities / t
    s = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / t
    y = torch.arange(len(a))
    row = F.cross_entropy(s, y)
    return 0.5 * (row + F.cross_entropy(s.T, y)) if symmetric else row


def _ref_ntxent_two_view(a, b, t):
    """SimCLR (Chen et al. 2020), float64: 2N anchors, positive = the other view, the anchor excluded."""
    z = F.normalize(torch.cat([a, b]).double(), dim=1)
    n = len(a)
    s = z @ z.T / t
    s.fill_diagonal_(-math.inf)
    pos = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(s, pos)


def _ref_supcon(z, y, t=0.07):
    """Khosla et al. 2020 (L_out), base temperature = temperature, float64: z [M, D], y [M]."""
    z = F.normalize(z.double(), dim=1)
    s = z @ z.T / t
    eye = torch.eye(len(z), dtype=torch.bool)
    s = s.masked_fill(eye, -math.inf)
    logp = s - torch.logsumexp(s, dim=1, keepdim=True)
    pos = (y[:, None] == y[None, :]) & ~eye
    return -(logp.masked_fill(~pos, 0).sum(1) / pos.sum(1)).mean()


def test_ntxent_two_columns_without_labels_is_simclr(bert_dir):
    model = _model(bert_dir)
    feats = _features(model, ANCHORS, POSITIVES)
    ours = SentenceTransformerLoss(model, "ntxent", temperature=0.1)(feats, None)
    a, b = (model(f)["sentence_embedding"] for f in _features(model, ANCHORS, POSITIVES))
    torch.testing.assert_close(ours, _ref_ntxent_two_view(a, b, 0.1), rtol=1e-9, atol=1e-12)


def test_supcon_one_column_with_labels_and_views_with_labels(bert_dir):
    model = _model(bert_dir)
    labels = torch.tensor([0, 1, 0, 2, 1, 2, 0, 1])
    (e,) = (model(f)["sentence_embedding"] for f in _features(model, ANCHORS))
    got = SentenceTransformerLoss(model, "supcon", temperature=0.07, base_temperature=0.07)(_features(model, ANCHORS), labels)
    torch.testing.assert_close(got, _ref_supcon(e, labels), rtol=1e-9, atol=1e-12)
    # two columns = two views of each sample: labels repeated view-major
    a, b = (model(f)["sentence_embedding"] for f in _features(model, ANCHORS, POSITIVES))
    got = SentenceTransformerLoss(model, "supcon", temperature=0.07, base_temperature=0.07)(_features(model, ANCHORS, POSITIVES), labels)
    torch.testing.assert_close(got, _ref_supcon(torch.cat([a, b]), labels.repeat(2)), rtol=1e-9, atol=1e-12)


def test_triplet_loss_with_views_and_no_labels_uses_sample_identity(bert_dir):
    model = _model(bert_dir)
    a, b = (model(f)["sentence_embedding"] for f in _features(model, ANCHORS, POSITIVES))
    got = SentenceTransformerLoss(model, "triplet_margin", margin=0.2)(_features(model, ANCHORS, POSITIVES), None)
    n = len(ANCHORS)
    want = la.functional.triplet_margin(torch.cat([a, b]), torch.arange(n).repeat(2), margin=0.2)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- errors name the argument

def test_errors(bert_dir):
    model = _model(bert_dir)
    with pytest.raises(TypeError, match="classification loss"):
        SentenceTransformerLoss(model, "focal")
    with pytest.raises(TypeError, match="loss id"):
        SentenceTransformerLoss(model, la.create("infonce"), temperature=0.1)
    with pytest.raises(TypeError, match="did you mean 'temperature'"):
        SentenceTransformerLoss(model, "infonce", temprature=0.1)
    with pytest.raises(ValueError, match="mini_batch_size"):
        SentenceTransformerLoss(model, "infonce", mini_batch_size=0)
    with pytest.raises(ValueError, match="exactly two text columns.*hard-negative"):
        SentenceTransformerLoss(model, "infonce")(_features(model, ANCHORS, POSITIVES, POSITIVES), None)
    with pytest.raises(ValueError, match="'label' column"):
        SentenceTransformerLoss(model, "supcon")(_features(model, ANCHORS), None)
    with pytest.raises(TypeError, match="labels .the dataset.s .label. column. must be integer class labels"):
        SentenceTransformerLoss(model, "supcon")(_features(model, ANCHORS), torch.zeros(len(ANCHORS)))
    with pytest.raises(ValueError, match="labels must be 2 integer labels"):
        retrieval_evaluator(["a", "b"], [0.5, 1.0])


def test_config_and_citation(bert_dir):
    loss = SentenceTransformerLoss(_model(bert_dir), "infonce", temperature=0.05)
    assert loss.get_config_dict() == {"loss": "infonce", "temperature": 0.05, "mini_batch_size": None}
    assert "Oord" in loss.citation or "Representation Learning" in loss.citation


def test_doctests():
    assert doctest.testmod(stmod, optionflags=doctest.ELLIPSIS).failed == 0


# ---------------------------------------------------------------- a real fit, logging a lossatlas metric

def _ref_map_at_r(emb, labels):
    """MAP@R (Musgrave et al. 2020), leave-one-out, cosine, float64, written from the definition."""
    z = F.normalize(emb.double(), dim=1)
    out = []
    for q in range(len(z)):
        others = [j for j in range(len(z)) if j != q]
        order = sorted(others, key=lambda j: (-float(z[q] @ z[j]), j))
        r = sum(int(labels[j] == labels[q]) for j in others)
        if r == 0:
            continue
        hits, ap = 0, 0.0
        for i, j in enumerate(order[:r], start=1):
            if labels[j] == labels[q]:
                hits += 1
                ap += hits / i
        out.append(ap / r)
    return sum(out) / len(out)


@pytest.mark.parametrize("cached", [False, True])
def test_trainer_fit_with_a_lossatlas_loss_logs_a_lossatlas_metric(bert_dir, tmp_path, cached):
    datasets = pytest.importorskip("datasets", reason="SentenceTransformerTrainer needs datasets: pip install 'lossatlas[st]'")
    model = _model(bert_dir, dtype=torch.float32)
    initial = copy.deepcopy(model)
    train = datasets.Dataset.from_dict({"anchor": ANCHORS * 2, "positive": POSITIVES * 2})
    texts = ANCHORS + POSITIVES
    labels = list(range(len(ANCHORS))) * 2  # a sentence and its positive share a label
    evaluator = retrieval_evaluator(texts, labels, ks=(1,), name="dev")
    loss = SentenceTransformerLoss(model, "infonce", temperature=0.05, symmetric=False, mini_batch_size=2 if cached else None)
    args = st.SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path), num_train_epochs=1, max_steps=8, per_device_train_batch_size=4, learning_rate=1e-2,
        logging_steps=1, eval_strategy="steps", eval_steps=8, save_strategy="no", report_to=[], use_cpu=True, seed=0,
        disable_tqdm=True,
    )
    trainer = st.SentenceTransformerTrainer(model=model, args=args, train_dataset=train, loss=loss, evaluator=evaluator)
    before = evaluator(initial)
    trainer.train()

    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) < sum(losses[:3])  # it learns the pairs
    logged = [h for h in trainer.state.log_history if "eval_dev_map@r" in h]
    assert logged and {"eval_dev_recall@1", "eval_dev_r_precision"} <= logged[-1].keys()
    # the logged metric is MAP@R of the trained model's embeddings (from-scratch reference)
    emb = torch.as_tensor(model.encode(texts, convert_to_tensor=True)).float()
    assert logged[-1]["eval_dev_map@r"] == pytest.approx(_ref_map_at_r(emb, labels), abs=1e-5)
    assert logged[-1]["eval_dev_map@r"] > before["dev_map@r"]
    assert evaluator.primary_metric == "dev_map@r"
    changed = [not torch.equal(p, q) for p, q in zip(model.parameters(), initial.parameters())]
    assert any(changed)
