"""Every default of every registered id, checked against the paper or official file it comes from.

Issue 26: mutations of defaults (focal γ 2→1, GCE q 0.7→0.5, SupCon τ 0.07→0.1, …) survived the
suite because the other tests pass hyper-parameters explicitly. Here

* :data:`DEFAULTS` is written by hand from the sources (the papers, their official code, read
  in the repositories named in each row; /work/shared/REFERENCES.md, CATALOGUE.md and the
  parity manifests). It is **not** generated from the library: a row is what the source says,
  and the tests fail when the code says something else;
* the table must cover every registered id (``la.list()``: losses, weightings, samplers) and
  every defaulted constructor argument (except ``validate``, a switch for the input checks
  that no paper sets), so a new id or argument without a row fails;
* each default must be the same in the function's signature, the module's constructor, the
  registry's ``defaults`` and the object ``la.create`` builds;
* for every loss, a call with no keywords equals a call with the defaults spelled out, and
  differs from a call with another value of each hyper-parameter (so a default that the body
  ignores, or reads from elsewhere, fails too). Where another value cannot change the loss by
  definition, :data:`SAME_BY_DESIGN` says why and the test asserts the equality instead.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor

import lossatlas as la
from conformance import cases as K
from lossatlas._spec import spec_of

#: Constructor arguments with a default that the table leaves out, with the reason.
NOT_IN_TABLE = {"validate"}  # checks of the tensors' values (NaN/Inf, target range): no paper sets it

TORCH_II = "torch (ignore_index=-100)"
TORCH_RED = "torch losses ('mean')"
LIB = "lossatlas (no paper sets it)"
TILED = "lossatlas: 'auto' tiles only where it pays (large N); tiling gives the same value"
BLOCK = "lossatlas: None = automatic tile size"
DIST = "lossatlas: one process unless asked (open_clip gathers only when world_size > 1)"
GROUP = "torch.distributed: None = the default process group"
APL = "HanxunH/Active-Passive-Losses loss.py"
PML = "KevinMusgrave/pytorch-metric-learning src/pytorch_metric_learning/losses/"
LDR = "Optimization-AI/ICML2023_LDR"
SAMPLER = "torch DistributedSampler semantics"
LIBAUC_GCL = "Optimization-AI/LibAUC 2.0.1 libauc/losses/contrastive.py"
GCL_DIST = ("lossatlas: gathers the global batch when a process group of > 1 is initialised, so the per-sample state "
            "is the same on every process (LibAUC distributed=False); no effect in one process")
_GCL_IDS = ("sogclr", "isogclr", "sogclr_bimodal", "isogclr_bimodal")
KANG = "facebookresearch/classifier-balancing"
WB = "ShadeAlsha/LTR-weight-balancing"
LIBAUC_AUC = "Optimization-AI/LibAUC 2.0.1 libauc/losses/auc.py"
LIBAUC_RANKING = "Optimization-AI/LibAUC 2.0.1 libauc/losses/ranking.py"
MDISTILLER = "megvii-research/mdistiller mdistiller/"
ANCE = "microsoft/ANCE"
SIMANS = "microsoft/SimXNS SimANS/wiki/co_training_wiki_train.py"
NGAME = "Extreme-classification/ngame ngame/"
ST = "UKPLab/sentence-transformers sentence_transformers/losses/GISTEmbedLoss.py"
#: call keywords of the X-risk functions that hold the per-sample state their modules keep
_STATE_KEYWORDS = {"u_all", "u_pos", "threshold", "log_u", "log_w", "u", "lambda_q", "s_q", "u_a", "label_logits"}

#: {id: {argument: (default, source)}}: written by hand from the sources, never from the code.
DEFAULTS: dict[str, dict[str, tuple[Any, str]]] = {
    # --- D4. single-positive multi-label ---------------------------------------------------------------------
    "assume_negative": {
        "weighted": (False, "elijahcole/single-positive-multi-label losses.py loss_an (AN; loss_wan weights by 1/(C-1))"),
        "label_smoothing": (0.0, "elijahcole/single-positive-multi-label losses.py loss_an (AN-LS: train.py ls_coef 0.1)"),
        "ignore_index": (None, "torch's binary_cross_entropy_with_logits has no ignore value; opt in with e.g. -100"),
        "reduction": ("mean", "elijahcole/single-positive-multi-label losses.py compute_batch_loss: sum(loss / (N C))"),
    },
    "entropy_maximization": {
        "alpha": (0.2, "Correr-Zhou/SPML-AckTheUnknown main.py: P['alpha'] = 0.2 for the default dataset 'pascal'"),
        "ignore_index": (None, "torch's binary_cross_entropy_with_logits has no ignore value; opt in with e.g. -100"),
        "reduction": ("mean", "Correr-Zhou/SPML-AckTheUnknown losses.py compute_batch_loss: sum(loss / (N C))"),
    },
    # --- G15. non-negative contrastive learning -------------------------------------------------------------
    "non_negative_contrastive": {
        "temperature": (0.2, "PKU-ML/non_neg scripts/pretrain/cifar/ncl.yaml method_kwargs.temperature: 0.2"),
        "activation": ("rep_relu", "PKU-ML/non_neg scripts/pretrain/cifar/ncl.yaml method_kwargs.non_neg: rep_relu"),
        "reduction": ("mean", "PKU-ML/non_neg solo/losses/simclr.py: torch.mean over the 2N anchors"),
    },
    "attraction_repulsion": {
        "alpha": (1.0, "JegZheng/CACR-SSL small_scale_experiments/cifar10/main_ours.py --alpha default 1.0"),
        "beta": (1.0, "JegZheng/CACR-SSL small_scale_experiments/cifar10/main_ours.py --beta default 1.0"),
        "tau_neg": (1.0, "JegZheng/CACR-SSL small_scale_experiments/cifar10/main_ours.py --tau_neg default 1.0"),
        "normalize": (True, "JegZheng/CACR-SSL small_scale_experiments/cifar10/encoder.py: SmallAlexNet ends in L2Norm"),
        "reduction": ("mean", "JegZheng/CACR-SSL small_scale_experiments/losses/__init__.py: .mean() over the queries"),
    },
    # --- G14. ConR ----------------------------------------------------------------------------------------
    "conr": {
        "window": (1.0, "BorealisAI/ConR agedb-dir/train.py -w default 1"),
        "temperature": (0.07, "BorealisAI/ConR agedb-dir/loss.py ConR: t = 0.07 set inside the function"),
        "eta": (0.01, "BorealisAI/ConR agedb-dir/train.py -e default 0.01"),
        "reduction": ("mean", "BorealisAI/ConR agedb-dir/loss.py: .mean() over the anchors"),
    },
    # --- D4. ROLE (Cole et al. 2021) --------------------------------------------------------------------------
    "role": {
        "expected_num_pos": (1.5, "elijahcole/single-positive-multi-label train.py expected_num_pos['pascal'] = 1.5 "
                                  "(P['dataset'] = 'pascal')"),
        "seed": (0, "lossatlas: the estimate table's own generator (the official code draws it from the run's seed)"),
        "reduction": ("mean", "elijahcole/single-positive-multi-label losses.py compute_batch_loss: "
                              "sum(loss / (N·C)) + reg"),
    },
    # --- F11. SCoRe facility location (Majee et al. 2024) ---------------------------------------------------
    "score_facility_location": {
        "temperature": (0.07, "amajee11us/SCoRe train_stage1.py --temp default 0.07"),
        "base_temperature": (0.07, "amajee11us/SCoRe objectives/combinatorial/FL.py self.base_temperature = 0.07"),
        "lamda": (1.0, "amajee11us/SCoRe train_stage1.py --method fl: FacilityLocation(lamda=1.0)"),
        "reduction": ("mean", "amajee11us/SCoRe FL.py: loss.view(anchor_count, batch_size).mean()"),
    },
    "score_logdet": {
        "ridge": (0.5, "amajee11us/SCoRe objectives/combinatorial/logdet.py: torch.logdet(S + 0.5 * I)"),
        "reduction": ("mean", "amajee11us/SCoRe logdet.py: one number per batch"),
    },
    # --- G13. SBCL (Hou et al. 2023) ---------------------------------------------------------------------------
    "sbcl": {
        "temperature": (0.1, "JackHck/SBCL SimCLR/main.py --temperature default 0.1; loss.py SupConLoss_rank temperature=0.1"),
        "base_temperature": (0.07, "JackHck/SBCL SimCLR/loss.py SupConLoss_rank(base_temperature=0.07)"),
        "gamma": (0.25, "JackHck/SBCL SimCLR/loss.py SupConLoss_rank(grama=0.25)"),
        "reduction": ("mean", "JackHck/SBCL SimCLR/loss.py SupConLoss_rank: loss.mean() over every anchor"),
    },
    # --- F8. proto-triplet and ICNN (Mendez-Ruiz et al. 2023) ----------------------------------------------
    "proto_triplet": {
        "margin": (0.5, "maumruiz/FSL-Loss icnn module: proto_triplet_loss(..., margin=0.5)"),
        "reduction": ("mean", "maumruiz/FSL-Loss proto_triplet_loss: torch.mean over the queries"),
    },
    "icnn": {
        "k": (4, "maumruiz/FSL-Loss icnn module: modified_score(..., k=4)"),
        "neighbors": (None, "maumruiz/FSL-Loss modified_score(ipc=None): ipc = k + 1"),
        "reduction": ("mean", "maumruiz/FSL-Loss get_icnn_loss: -log(score), one number per batch"),
    },
    # --- F9. Metrix (Venkataramanan et al. 2022) -------------------------------------------------------------
    "metrix": {
        "pos_margin": (0.0, "billpsomas/Metrix_ICLR22 mixup/losses.py loss_posneg_mixup: relu(margin(pair_dist, 0.0))"),
        "neg_margin": (0.5, "billpsomas/Metrix_ICLR22 main.py ContrastiveLoss(neg_margin=0.5); losses.py margin(0.5, d)"),
        "average_nonzero": (True, "billpsomas/Metrix_ICLR22 main.py: AvgNonZeroReducer for pos_loss and neg_loss"),
        "reduction": ("mean", "billpsomas/Metrix_ICLR22 train.py: reducer_pos(...) + reducer_neg(...)"),
    },
    # --- F10. OrthoHash --------------------------------------------------------------------------------------
    "orthohash": {
        "scale": (8.0, "kamwoh/orthohash main.py --scale default 8"),
        "margin": (0.2, "kamwoh/orthohash main.py --margin default 0.2 (--margin-type cos)"),
        "quantization": (0.0, "kamwoh/orthohash main.py --quan default 0.0"),
        "seed": (0, "lossatlas: the codebook's own generator (the official code draws it from the run's seed)"),
        "reduction": ("mean", "kamwoh/orthohash functions/loss/orthohash.py: F.cross_entropy's mean"),
    },
    # --- K1. knowledge distillation (mdistiller's CIFAR-100 configuration; Hinton et al. fix no T) -----------
    "kd": {
        "temperature": (4.0, f"{MDISTILLER} engine/cfg.py CFG.KD.TEMPERATURE = 4"),
        "alpha": (0.9, f"{MDISTILLER} engine/cfg.py CFG.KD.LOSS.KD_WEIGHT = 0.9 (CE_WEIGHT = 0.1 = 1 - α)"),
        "reduction": ("mean", f"{MDISTILLER} distillers/KD.py: kl_div(...).sum(1).mean(); F.cross_entropy's mean"),
    },
    "dkd": {
        "alpha": (1.0, f"{MDISTILLER} engine/cfg.py CFG.DKD.ALPHA = 1.0"),
        "beta": (8.0, f"{MDISTILLER} engine/cfg.py CFG.DKD.BETA = 8.0"),
        "temperature": (4.0, f"{MDISTILLER} engine/cfg.py CFG.DKD.T = 4.0"),
        "ce_weight": (1.0, f"{MDISTILLER} engine/cfg.py CFG.DKD.CE_WEIGHT = 1.0"),
        "warmup": (20.0, f"{MDISTILLER} engine/cfg.py CFG.DKD.WARMUP = 20"),
        "reduction": ("mean", f"{MDISTILLER} distillers/DKD.py: kl_div(size_average=False) / target.shape[0]"),
    },
    "dual_head_kd": {
        "temperature": (2.0, "penghui-yang/DHKD train_student.py --BinaryKL_T default 2"),
        "alpha": (1.0, "penghui-yang/DHKD README.md CIFAR-100 command -a 1 (train_student.py -a has no default)"),
        "ce_weight": (1.0, "penghui-yang/DHKD train_student.py -r/--gamma default 1"),
        "reduction": ("mean", "penghui-yang/DHKD BinaryKLNorm.py loss.sum() / N; nn.CrossEntropyLoss's mean"),
    },
    # --- H3 / D5. stateful X-risk losses (LibAUC 2.0.1 code defaults) ----------------------------
    "ap_soap": {
        "gamma": (0.9, f"{LIBAUC_AUC} AveragePrecisionLoss(gamma=0.9)"),
        "margin": (1.0, f"{LIBAUC_AUC} AveragePrecisionLoss(margin=1.0)"),
        "surrogate": ("squared_hinge", f"{LIBAUC_AUC} AveragePrecisionLoss(surr_loss='squared_hinge')"),
        "reduction": ("mean", "LibAUC: torch.mean of the n_pos x N weighted pair matrix"),
    },
    "pauc_cvar": {
        "margin": (1.0, f"{LIBAUC_AUC} pAUC_CVaR_Loss(margin=1.0)"),
        "beta": (0.2, f"{LIBAUC_AUC} pAUC_CVaR_Loss(beta=0.2)"),
        "eta": (0.1, f"{LIBAUC_AUC} pAUC_CVaR_Loss(eta=0.1)"),
        "surrogate": ("squared_hinge", f"{LIBAUC_AUC} pAUC_CVaR_Loss(surr_loss='squared_hinge')"),
        "reduction": ("mean", "LibAUC: torch.mean of the n_pos x n_neg pair matrix, / beta"),
    },
    "pauc_dro": {
        "gamma": (0.9, f"{LIBAUC_AUC} pAUC_DRO_Loss(gamma=0.9)"),
        "margin": (1.0, f"{LIBAUC_AUC} pAUC_DRO_Loss(margin=1.0)"),
        "temperature": (1.0, f"{LIBAUC_AUC} pAUC_DRO_Loss(Lambda=1.0)"),
        "surrogate": ("squared_hinge", f"{LIBAUC_AUC} pAUC_DRO_Loss(surr_loss='squared_hinge')"),
        "reduction": ("mean", "LibAUC: torch.mean of the n_pos x n_neg weighted pair matrix"),
    },
    "tpauc_kl": {
        "gamma": (0.9, f"{LIBAUC_AUC} tpAUC_KL_Loss(gammas=(0.9, 0.9)), gammas[0]"),
        "gamma_outer": (0.9, f"{LIBAUC_AUC} tpAUC_KL_Loss(gammas=(0.9, 0.9)), gammas[1]"),
        "margin": (1.0, f"{LIBAUC_AUC} tpAUC_KL_Loss(margin=1.0)"),
        "temperature": (1.0, f"{LIBAUC_AUC} tpAUC_KL_Loss(Lambda=1.0)"),
        "temperature_pos": (1.0, f"{LIBAUC_AUC} tpAUC_KL_Loss(tau=1.0)"),
        "surrogate": ("squared_hinge", f"{LIBAUC_AUC} tpAUC_KL_Loss(surr_loss='squared_hinge')"),
        "reduction": ("mean", "LibAUC: torch.mean of the n_pos x n_neg weighted pair matrix"),
    },
    "multilabel_ap": {
        "margin": (1.0, f"{LIBAUC_AUC} meanAveragePrecisionLoss(margin=1.0)"),
        "gamma": (0.9, f"{LIBAUC_AUC} meanAveragePrecisionLoss(gamma=0.9)"),
        "top_k": (-1, f"{LIBAUC_AUC} meanAveragePrecisionLoss(top_k=-1)"),
        "surrogate": ("squared_hinge", f"{LIBAUC_AUC} meanAveragePrecisionLoss(surr_loss='squared_hinge')"),
        "reduction": ("mean", "LibAUC: total_loss / len(task_id), the mean over labels"),
    },
    "multilabel_pauc": {
        "mode": ("1w", f"{LIBAUC_AUC} MultiLabelpAUCLoss(mode='1w')"),
        "gamma": (0.9, f"{LIBAUC_AUC} pAUC_DRO_Loss(gamma=0.9) / tpAUC_KL_Loss(gammas[0]=0.9)"),
        "gamma_outer": (0.9, f"{LIBAUC_AUC} tpAUC_KL_Loss(gammas[1]=0.9)"),
        "margin": (1.0, f"{LIBAUC_AUC} pAUC_DRO_Loss / tpAUC_KL_Loss(margin=1.0)"),
        "temperature": (1.0, f"{LIBAUC_AUC} pAUC_DRO_Loss / tpAUC_KL_Loss(Lambda=1.0)"),
        "temperature_pos": (1.0, f"{LIBAUC_AUC} tpAUC_KL_Loss(tau=1.0)"),
        "surrogate": ("squared_hinge", f"{LIBAUC_AUC} pAUC_DRO_Loss / tpAUC_KL_Loss(surr_loss='squared_hinge')"),
        "reduction": ("mean", "LibAUC: total_loss / len(task_id), the mean over labels"),
    },
    "ndcg": {
        "gamma": (0.9, f"{LIBAUC_RANKING} NDCGLoss(gamma0=0.9)"),
        "gamma_lambda": (0.9, f"{LIBAUC_RANKING} NDCGLoss(gamma1=0.9)"),
        "eta": (0.01, f"{LIBAUC_RANKING} NDCGLoss(eta0=0.01)"),
        "margin": (1.0, f"{LIBAUC_RANKING} NDCGLoss(margin=1.0)"),
        "top_k": (-1, f"{LIBAUC_RANKING} NDCGLoss(topk=-1) in code (docstring: 1e-10)"),
        "top_k_version": ("theo", f"{LIBAUC_RANKING} NDCGLoss(topk_version='theo')"),
        "tau_1": (0.01, f"{LIBAUC_RANKING} NDCGLoss(tau_1=0.01)"),
        "tau_2": (0.0001, f"{LIBAUC_RANKING} NDCGLoss(tau_2=0.0001)"),
        "sigmoid_alpha": (2.0, f"{LIBAUC_RANKING} NDCGLoss(sigmoid_alpha=2.0) in code (docstring: 1.0)"),
        "surrogate": ("squared_hinge", f"{LIBAUC_RANKING} NDCGLoss(surrogate_loss='squared_hinge')"),
        "reduction": ("mean", "LibAUC: .mean() over the batch's queries"),
    },
    "listwise_ce": {
        "gamma": (0.9, "LibAUC's ListwiseCELoss has no default; ../shared/parity-auc README uses 0.9 (NDCGLoss's gamma0)"),
        "eps": (1e-10, f"{LIBAUC_RANKING} ListwiseCELoss(eps=1e-10)"),
        "reduction": ("mean", "LibAUC: the batch sum / batch_size, the mean over queries"),
    },
    # --- H1 / H2 / D5 / G12. AUC surrogates and AUC-M (LibAUC 2.0.1 code defaults) -------------------
    "pairwise_auc": {
        "surrogate": ("logistic", f"{LIBAUC_AUC} PairwiseAUCLoss(surr_loss='logistic') (its docstring: squared_hinge)"),
        "margin": (1.0, f"{LIBAUC_AUC} PairwiseAUCLoss(hparam=1.0): the margin of the hinge/squared surrogates"),
        "scale": (1.0, f"{LIBAUC_AUC} PairwiseAUCLoss(hparam=1.0): the scale of logistic"),
        "reduction": ("mean", "LibAUC: loss.mean() over the n_pos x n_neg pair matrix"),
    },
    "mw": {
        "scale": (1.0, "Sheikholeslami et al. 2025 (arXiv 2510.00137): BCE on the plain score difference"),
        "reduction": ("mean", "Sheikholeslami et al. 2025: the mean over the positive x negative pairs"),
    },
    "aucm": {
        "margin": (1.0, f"{LIBAUC_AUC} AUCMLoss(margin=1.0)"),
        "imratio": (None, f"{LIBAUC_AUC} AUCMLoss(imratio=None): the batch's positive fraction"),
        "version": ("v1", f"{LIBAUC_AUC} AUCMLoss(version='v1')"),
        "reduction": ("mean", "LibAUC: torch.mean over the batch rows"),
    },
    "compositional_auc": {
        "margin": (1.0, f"{LIBAUC_AUC} CompositionalAUCLoss(margin=1.0)"),
        "k": (1, f"{LIBAUC_AUC} CompositionalAUCLoss(k=1)"),
        "imratio": (None, f"{LIBAUC_AUC} CompositionalAUCLoss(imratio=None): the batch's positive fraction"),
        "version": ("v1", f"{LIBAUC_AUC} CompositionalAUCLoss(version='v1')"),
        "reduction": ("mean", "LibAUC: F.binary_cross_entropy's mean / torch.mean over the batch rows"),
    },
    "multilabel_aucm": {
        "margin": (1.0, f"{LIBAUC_AUC} MultiLabelAUCMLoss(margin=1.0)"),
        "imratio": (None, f"{LIBAUC_AUC} MultiLabelAUCMLoss(imratio=None): each label's batch positive fraction"),
        "version": ("v1", f"{LIBAUC_AUC} MultiLabelAUCMLoss(version='v1')"),
        "reduction": ("mean", "LibAUC: total_loss / len(task_id), each label's loss a torch.mean over the rows"),
    },
    # --- A. long-tailed / imbalanced classification -------------------------------------------
    "cross_entropy": {
        "weight": (None, "torch F.cross_entropy (no class weights)"),
        "ignore_index": (-100, TORCH_II),
        "label_smoothing": (0.0, "torch F.cross_entropy (label_smoothing=0.0)"),
        "reduction": ("mean", TORCH_RED),
    },
    "focal": {
        "gamma": (2.0, "Lin et al. 2017, Focal Loss for Dense Object Detection: γ = 2"),
        "alpha": (None, "kaidic/LDAM-DRW losses.py FocalLoss (softmax form, no α)"),
        "weight": (None, "kaidic/LDAM-DRW losses.py FocalLoss(weight=None)"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", "kaidic/LDAM-DRW FocalLoss (mean over the batch)"),
    },
    "sigmoid_focal": {
        "alpha": (0.25, "torchvision ops/focal_loss.py sigmoid_focal_loss(alpha=0.25); Lin et al. 2017"),
        "gamma": (2.0, "torchvision ops/focal_loss.py sigmoid_focal_loss(gamma=2); Lin et al. 2017"),
        "reduction": ("mean", "torch losses ('mean' over all N·C; torchvision's function defaults to 'none')"),
    },
    "ldam": {
        "max_margin": (0.5, "kaidic/LDAM-DRW losses.py LDAMLoss(max_m=0.5)"),
        "scale": (30.0, "kaidic/LDAM-DRW losses.py LDAMLoss(s=30)"),
        "weight": (None, "kaidic/LDAM-DRW losses.py LDAMLoss(weight=None)"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", TORCH_RED),
    },
    "logit_adjusted": {
        "tau": (1.0, "Menon et al. 2021, Long-tail learning via logit adjustment: τ = 1"),
        "weight": (None, "torch F.cross_entropy (no class weights)"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", TORCH_RED),
    },
    "balanced_softmax": {
        "weight": (None, "jiawei-ren/BalancedMetaSoftmax loss/BalancedSoftmaxLoss.py (no class weights)"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", "jiawei-ren/BalancedMetaSoftmax loss/BalancedSoftmaxLoss.py forward(reduction='mean')"),
    },
    "vs": {
        "gamma": (0.3, "orparask/VS-Loss class_imbalance/losses.py VSLoss(gamma=0.3)"),
        "tau": (1.0, "orparask/VS-Loss class_imbalance/losses.py VSLoss(tau=1.0)"),
        "weight": (None, "orparask/VS-Loss class_imbalance/losses.py VSLoss(weight=None)"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", TORCH_RED),
    },
    "gumbel": {
        "clamp_min": (-4.0, "kostas1515/GOL mmdet/models/losses/droploss.py: torch.clamp(cls_score, min=-4, max=10)"),
        "clamp_max": (10.0, "kostas1515/GOL mmdet/models/losses/droploss.py: torch.clamp(cls_score, min=-4, max=10)"),
        "weight": (None, "kostas1515/GOL droploss.py DropLoss(class_weight=None)"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", "kostas1515/GOL droploss.py: torch.sum(cls_loss * drop_w) / n_i (a mean over samples)"),
    },
    # --- B. label noise -----------------------------------------------------------------------
    "gce": {
        "q": (0.7, f"Zhang & Sabuncu 2018 (q = 0.7); {APL} GeneralizedCrossEntropy(q=0.7)"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", TORCH_RED),
    },
    "mae": {
        "scale": (1.0, f"{APL} MeanAbsoluteError(scale=1.0)"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", TORCH_RED),
    },
    "nce": {
        "scale": (1.0, f"{APL} NormalizedCrossEntropy(scale=1.0)"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", TORCH_RED),
    },
    "rce": {
        "scale": (1.0, f"{APL} ReverseCrossEntropy(scale=1.0)"),
        "log_zero": (math.log(1e-4), f"{APL} ReverseCrossEntropy: one-hot clamped to [1e-4, 1], so log 0 → log 1e-4"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", TORCH_RED),
    },
    "sce": {
        "alpha": (0.1, "Wang et al. 2019, Symmetric Cross Entropy, CIFAR-10: α = 0.1"),
        "beta": (1.0, "Wang et al. 2019, Symmetric Cross Entropy, CIFAR-10: β = 1.0"),
        "log_zero": (math.log(1e-4), f"{APL} SCELoss: one-hot clamped to [1e-4, 1], so log 0 → log 1e-4"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", TORCH_RED),
    },
    "nfl": {
        "gamma": (0.5, f"{APL} NFLandRCE / NFLandMAE(gamma=0.5) and the APL configs"),
        "scale": (1.0, f"{APL} NormalizedFocalLoss(scale=1.0)"),
        "detach": (True, f"{APL} NormalizedFocalLoss builds (1 − p)^γ from logpt.data"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", TORCH_RED),
    },
    "ngce": {
        "q": (0.7, f"{APL} NormalizedGeneralizedCrossEntropy(q=0.7)"),
        "scale": (1.0, f"{APL} NormalizedGeneralizedCrossEntropy(scale=1.0)"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", TORCH_RED),
    },
    "nce_rce": {
        "alpha": (1.0, f"{APL} NCEandRCE, CIFAR-10 config (α = 1)"),
        "beta": (1.0, f"{APL} NCEandRCE, CIFAR-10 config (β = 1)"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", TORCH_RED),
    },
    "nce_mae": {
        "alpha": (1.0, f"{APL} NCEandMAE, CIFAR-10 config (α = 1)"),
        "beta": (1.0, f"{APL} NCEandMAE, CIFAR-10 config (β = 1)"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", TORCH_RED),
    },
    "active_passive": {
        "active": ("nce", "Ma et al. 2020, Normalized Loss Functions: NCE+RCE, the headline pair"),
        "passive": ("rce", "Ma et al. 2020, Normalized Loss Functions: NCE+RCE, the headline pair"),
        "alpha": (1.0, f"{APL} NCEandRCE, CIFAR-10 config (α = 1)"),
        "beta": (1.0, f"{APL} NCEandRCE, CIFAR-10 config (β = 1)"),
        "active_kwargs": (None, "the active loss's own defaults"),
        "passive_kwargs": (None, "the passive loss's own defaults"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", TORCH_RED),
    },
    "logitclip": {
        "tau": (1.0, "hongxin001/LogitClip train.py --temp default 1.0"),
        "p": (2.0, "hongxin001/LogitClip train.py --lp default 2"),
        "eps": (1e-7, "hongxin001/LogitClip algorithms/clip.py: norm + 1e-7"),
        "base": (None, "Wei et al. 2023, Mitigating Memorization of Noisy Labels by Clipping the Model Prediction: CE"),
        "base_kwargs": (None, "the base loss's own defaults"),
        "reduction": ("mean", TORCH_RED),
    },
    "ldr": {
        "margin": (0.1, f"{LDR} experiment.py --margin default 0.1"),
        "temperature": (10.0, f"{LDR} experiment.py parameter_set = [10] for LDR / ALDR (λ)"),
        "softplus": (True, f"{LDR} loss.py LDRLoss_V1 always applies softplus"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", TORCH_RED),
    },
    "aldr": {
        "margin": (0.1, f"{LDR} experiment.py --margin default 0.1"),
        "temperature": (10.0, f"{LDR} experiment.py parameter_set = [10] for LDR / ALDR (λ)"),
        "alpha": (2.0, f"{LDR} experiment.py --alpha default 2"),
        "softplus": (False, f"{LDR} loss.py ALDRLoss_V1(softplus=False), as experiment.py builds it (not CIFAR-100)"),
        "reduction": ("mean", TORCH_RED),
    },
    "taylor_ce": {
        "order": (2, "lossatlas choice (Feng et al. 2020, Can Cross Entropy Loss Be Robust to Label Noise?, tune t)"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", TORCH_RED),
    },
    "alpha_loss": {
        "alpha": (2.0, "lossatlas choice (Sypherd et al. 2019, A Tunable Loss Function: α > 1 for noisy labels)"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", TORCH_RED),
    },
    "comp_sum": {
        "tau": (1.0, "lossatlas: τ = 1 is cross-entropy; Mao, Mohri & Zhong 2023 (arXiv 2304.07288) define Φ_τ "
                     "for every τ ≥ 0 and set no default"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", TORCH_RED),
    },
    "smooth_adversarial_comp_sum": {
        "tau": (1.0, "lossatlas: τ = 1 (cross-entropy), as comp_sum; Mao, Mohri & Zhong 2023 (arXiv 2304.07288) "
                     "define the smooth adversarial comp-sum losses for every τ ≥ 0 and set no default"),
        "nu": (1.0, "lossatlas: the paper tunes the smooth term's weight ν and sets no default (no official code)"),
        "vector": ("margins", "Mao, Mohri & Zhong 2023 section 6: the smooth term of the definition is "
                              "‖Δ_h(x', y) − Δ_h(x, y)‖₂ over the score differences"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", TORCH_RED),
    },
    "ensloss": {
        "lam": (0.0, "statmlben/ensLoss losses.py ensLoss.__init__ (self.lam = 0.0); main_image.py "
                     "'ensLoss_per_epochs': -1 never redraws it"),
        "seed": (None, "lossatlas: torch's global RNG draws the derivatives (the official torch.randn)"),
        "reduction": ("mean", "statmlben/ensLoss losses.py ensLoss.forward: loss.mean()"),
    },
    # --- C. calibration / well-posed classification --------------------------------------------
    "cals": {
        "margin": (20.0, "by-liu/CALS configs/lag/aug_lagrangian_class.yaml (margin: 20)"),
        "rho": (1.0, "by-liu/CALS configs/lag/aug_lagrangian_class.yaml (rho: 1, passed as rho_min: the start of rho)"),
        "normalize": (True, "by-liu/CALS configs/lag/aug_lagrangian_class.yaml (normalize: True)"),
        "lambd_min": (1e-6, "by-liu/CALS configs/lag/aug_lagrangian_class.yaml (lambd_min: 1e-6); AugLagrangianClass starts lambd at lambd_min"),
        "lambd_max": (1e6, "by-liu/CALS configs/lag/aug_lagrangian_class.yaml (lambd_max: 1e6)"),
        "rho_max": (10.0, "by-liu/CALS calibrate/lagrangian/aug_lagrangian_class.py AugLagrangianClass(rho_max=10)"),
        "gamma": (1.2, "by-liu/CALS configs/lag/aug_lagrangian_class.yaml (gamma: 1.2)"),
        "tao": (0.9, "by-liu/CALS configs/lag/aug_lagrangian_class.yaml (tao: 0.9)"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", "by-liu/CALS distributed_lagrangian_trainer.py: CE (mean) + penalty.sum(-1).mean()"),
    },
    "correctness_aware": {
        "balance": (True, "liuyvchi/Correctness-aware-calibration src/cal_metrics/temperature_scaling_CA.py: "
                          "weights[correctness] = 1 - weight_correct, weights[~correctness] = weight_correct"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", "liuyvchi/Correctness-aware-calibration temperature_scaling_CA.py: "
                              "loss.sum() / weights.sum()"),
    },
    "rankmixup_mrl": {
        "alpha": (0.1, "cvlab-yonsei/RankMixup configs/loss/mrl.yaml (alpha: 0.1)"),
        "margin": (2.0, "cvlab-yonsei/RankMixup configs/loss/mrl.yaml (margin: 2.0 # cifar 2.0/ tiny 1.0)"),
        "score": ("logit", "cvlab-yonsei/RankMixup calibrate/losses/rankmixup.py RankMixup_MRL.forward: "
                           "diff = self.get_logit_diff(inputs, mixup)"),
        "ignore_index": (-100, "cvlab-yonsei/RankMixup configs/loss/mrl.yaml (ignore_index: -100)"),
        "reduction": ("mean", "cvlab-yonsei/RankMixup rankmixup.py: nn.CrossEntropyLoss() and (...).mean()"),
    },
    "rankmixup_mndcg": {
        "alpha": (0.1, "cvlab-yonsei/RankMixup configs/loss/mndcg.yaml (alpha: 0.1)"),
        "ignore_index": (-100, "cvlab-yonsei/RankMixup configs/loss/mndcg.yaml (ignore_index: -100)"),
        "reduction": ("mean", "cvlab-yonsei/RankMixup rankmixup.py: nn.CrossEntropyLoss() and (1 - ndcg).mean()"),
    },
    "poly1": {
        "epsilon": (1.0, "Leng et al. 2022, PolyLoss: Poly-1 with ε = 1"),
        "label_smoothing": (0.0, "torch F.cross_entropy (label_smoothing=0.0)"),
        "weight": (None, "torch F.cross_entropy (no class weights)"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", TORCH_RED),
    },
    "encouraging": {
        "log_end": (0.75, "lancopku/well-classified-examples-are-underestimated EncouragingLoss.py (log_end=0.75)"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", "lancopku EncouragingLoss(reduction='mean')"),
    },
    "squentropy": {
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", TORCH_RED),
    },
    "spherical_z_loss": {
        "a": (1.0, "pascal20100/factored_output_layer example/timing_example.py z_loss: softplus((μ − z_y)/(σ+ε)), a = 1"),
        "b": (0.0, "pascal20100/factored_output_layer example/timing_example.py z_loss: no shift, b = 0"),
        "eps": (1e-12, "pascal20100/factored_output_layer example/timing_example.py z_loss(eps=1e-12)"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", TORCH_RED),
    },
    "log_z_squared": {
        "coefficient": (1e-4, "Chowdhery et al. 2022, PaLM: z_loss coefficient 1e-4 (T5X's z_loss)"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", TORCH_RED),
    },
    "anyloss": {
        "metric": ("f_beta", "lossatlas choice: F_β (Han et al. 2024, AnyLoss, also cover accuracy, G-mean, balanced acc.)"),
        "beta": (1.0, "F_1, the F_β the AnyLoss paper reports"),
        "amplifier": (73.0, "doheonhan/anyloss 'AnyLoss - Code.ipynb': L = 73"),
        "reduction": ("mean", TORCH_RED),
    },
    # --- D. multi-label --------------------------------------------------------------------------
    "bce": {
        "pos_weight": (None, "torch F.binary_cross_entropy_with_logits (pos_weight=None)"),
        "ignore_index": (None, "torch F.binary_cross_entropy_with_logits has no ignore value (opt in with -100)"),
        "reduction": ("mean", "torch F.binary_cross_entropy_with_logits ('mean')"),
    },
    "asymmetric": {
        "gamma_neg": (4.0, "Alibaba-MIIL/ASL src/loss_functions/losses.py AsymmetricLoss(gamma_neg=4)"),
        "gamma_pos": (1.0, "Alibaba-MIIL/ASL src/loss_functions/losses.py AsymmetricLoss(gamma_pos=1)"),
        "clip": (0.05, "Alibaba-MIIL/ASL src/loss_functions/losses.py AsymmetricLoss(clip=0.05)"),
        "eps": (1e-8, "Alibaba-MIIL/ASL src/loss_functions/losses.py AsymmetricLoss(eps=1e-8)"),
        "detach_weight": (True, "Alibaba-MIIL/ASL AsymmetricLoss(disable_torch_grad_focal_loss=True)"),
        "ignore_index": (None, "Alibaba-MIIL/ASL AsymmetricLoss has no ignore value (opt in with -100)"),
        "reduction": ("sum", "Alibaba-MIIL/ASL AsymmetricLoss returns -loss.sum()"),
    },
    "asymmetric_single_label": {
        "gamma_pos": (0.0, "Alibaba-MIIL/ASL src/loss_functions/losses.py ASLSingleLabel(gamma_pos=0)"),
        "gamma_neg": (4.0, "Alibaba-MIIL/ASL src/loss_functions/losses.py ASLSingleLabel(gamma_neg=4)"),
        "eps": (0.1, "Alibaba-MIIL/ASL src/loss_functions/losses.py ASLSingleLabel(eps=0.1)"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", "Alibaba-MIIL/ASL ASLSingleLabel(reduction='mean')"),
    },
    "dice": {
        "alpha": (0.01, "ShannonAI/dice_loss_for_NLP utils/get_parser.py --dice_alpha default 0.01"),
        "smooth": (1e-4, "ShannonAI/dice_loss_for_NLP utils/get_parser.py --dice_smooth 1e-4; DiceLoss(smooth=1e-4)"),
        "square_denominator": (False, "ShannonAI/dice_loss_for_NLP --dice_square (store_true: off); DiceLoss default"),
        "denominator": ("reference", "ShannonAI/dice_loss_for_NLP loss/dice_loss.py DiceLoss, as coded"),
        "activation": ("softmax", "ShannonAI DiceLoss(with_logits=True) with integer targets: softmax"),
        "ignore_index": (-100, TORCH_II),
        "reduction": ("mean", "ShannonAI DiceLoss(reduction='mean')"),
    },
    # --- E. sample / class re-weighting ----------------------------------------------------------
    "effective_number": {
        "beta": (0.9999, "Cui et al. 2019, Class-Balanced Loss; kaidic/LDAM-DRW cifar_train.py beta = 0.9999"),
    },
    "drw": {  # start_epoch is required: the switch belongs to the schedule (LDAM-DRW's CIFAR one: 160 of 200)
        "beta": (0.9999, "kaidic/LDAM-DRW cifar_train.py DRW: betas = [0, 0.9999]"),
    },
    "class_difficulty": {
        "tau": ("dynamic", "hitachi-rd-cv/CDB-loss CIFAR-LT/cifar_train.py --tau default 'dynamic'"),
        "num_classes": (None, "lossatlas: known at the first accuracy update"),
        "reduction": ("mean", "hitachi-rd-cv/CDB-loss cifar_train.py: torch.mean of CDB_loss(reduction='none')"),
    },
    "absgd": {
        "lam": (1.0, "qiqi-helloworld/ABSGD train.py --lamda default 1"),
        "gamma": (0.1, "qiqi-helloworld/ABSGD train.py --drogamma default 0.1"),
        "alpha": (1.0, "qiqi-helloworld/ABSGD mylosses.py ABSGD(abAlpha=1)"),
        "start_epoch": (0, "lossatlas: ABSGD from the first epoch (the paper's two-stage recipe switches later)"),
        "warmup_lam": (200.0, "qiqi-helloworld/ABSGD mylosses.py: myLambda >= 200 reduces to plain averaging"),
    },
    "group_dro": {  # group_counts is required (the adjustments C/sqrt(n_g) need them)
        "step_size": (0.01, "kohpangwei/group_DRO run_expt.py --robust_step_size default 0.01"),
        "adjustment": (0.0, "kohpangwei/group_DRO run_expt.py --generalization_adjustment default '0.0'"),
    },
    "subsample_sampler": {
        "seed": (0, f"{SAMPLER} (seed=0; the subset is drawn with seed, each epoch's order with seed + epoch)"),
        "num_replicas": (None, f"{SAMPLER} (None = the process group's world size)"),
        "rank": (None, f"{SAMPLER} (None = the process's rank)"),
    },
    "loss_based": {
        "strategy": ("linupper", "Sow et al. 2025, Dynamic Loss-Based Sample Reweighting: LinUpper, the best strategy"),
        "r": (1.0, "sowmaster/Sample-Level-Loss-Reweighting-ICLR-2025 src/trainer.py kl_reg default 1."),
        "delta": (1.0, "sowmaster/Sample-Level-Loss-Reweighting-ICLR-2025 src/trainer.py h_func / f_func delta=1."),
        "burnout_steps": (1000, "sowmaster/Sample-Level-Loss-Reweighting-ICLR-2025 src/trainer.py burnout_steps 1000"),
    },
    # --- F. metric learning ----------------------------------------------------------------------
    "contrastive": {
        "pos_margin": (0.0, PML + "contrastive_loss.py ContrastiveLoss(pos_margin=0)"),
        "neg_margin": (1.0, PML + "contrastive_loss.py ContrastiveLoss(neg_margin=1)"),
        "average_nonzero": (True, PML + "base_metric_loss_function.py: AvgNonZeroReducer by default"),
        "tiled": (False, "lossatlas: the dense form (the row-block form is exact but recomputes in backward)"),
        "block_size": (None, BLOCK),
        "distributed": (False, DIST),
        "group": (None, GROUP),
        "reduction": ("mean", TORCH_RED),
    },
    "triplet_margin": {
        "margin": (0.2, "Schroff et al. 2015, FaceNet: α = 0.2 (pytorch-metric-learning's is 0.05)"),
        "average_nonzero": (True, PML + "base_metric_loss_function.py: AvgNonZeroReducer by default"),
        "tiled": (False, "lossatlas: the dense form (the row-block form is exact but recomputes in backward)"),
        "block_size": (None, BLOCK),
        "distributed": (False, DIST),
        "group": (None, GROUP),
        "reduction": ("mean", TORCH_RED),
    },
    "multi_similarity": {
        "alpha": (2.0, PML + "multi_similarity_loss.py MultiSimilarityLoss(alpha=2); Wang et al. 2019"),
        "beta": (50.0, PML + "multi_similarity_loss.py MultiSimilarityLoss(beta=50); Wang et al. 2019"),
        "base": (0.5, PML + "multi_similarity_loss.py MultiSimilarityLoss(base=0.5); msight-tech code"),
        "miner_epsilon": (None, "no mining (pytorch-metric-learning's MultiSimilarityMiner is a separate object)"),
        "tiled": (False, "lossatlas: the dense form (the row-block form is exact but recomputes in backward)"),
        "block_size": (None, BLOCK),
        "distributed": (False, DIST),
        "group": (None, GROUP),
        "reduction": ("mean", TORCH_RED),
    },
    "ntxent": {
        "temperature": (0.07, PML + "ntxent_loss.py NTXentLoss(temperature=0.07)"),
        "tiled": (False, "lossatlas: the dense form (the row-block form is exact but recomputes in backward)"),
        "block_size": (None, BLOCK),
        "distributed": (False, DIST),
        "group": (None, GROUP),
        "reduction": ("mean", TORCH_RED),
    },
    "supcon": {
        "temperature": (0.07, "HobbitLong/SupContrast losses.py SupConLoss(temperature=0.07)"),
        "base_temperature": (0.07, "HobbitLong/SupContrast losses.py SupConLoss(base_temperature=0.07)"),
        "average_over": ("anchors_with_positives", PML + "supcon_loss.py (mean over the anchors with a positive)"),
        "tiled": ("auto", TILED),
        "block_size": (None, BLOCK),
        "distributed": (False, DIST),
        "group": (None, GROUP),
        "reduction": ("mean", TORCH_RED),
    },
    "threshold_consistent_margin": {
        "lambda_plus": (1.0, PML + "tcm_loss.py ThresholdConsistentMarginLoss(lambda_plus=1.0)"),
        "lambda_minus": (1.0, PML + "tcm_loss.py ThresholdConsistentMarginLoss(lambda_minus=1.0)"),
        "margin_plus": (0.9, PML + "tcm_loss.py ThresholdConsistentMarginLoss(margin_plus=0.9)"),
        "margin_minus": (0.5, PML + "tcm_loss.py ThresholdConsistentMarginLoss(margin_minus=0.5)"),
        "reduction": ("mean", TORCH_RED),
    },
    "normalized_softmax": {
        "temperature": (0.05, PML + "normalized_softmax_loss.py NormalizedSoftmaxLoss(temperature=0.05)"),
        "reduction": ("mean", TORCH_RED),
    },
    "cosface": {
        "margin": (0.35, PML + "cosface_loss.py CosFaceLoss(margin=0.35); Wang et al. 2018"),
        "scale": (64.0, PML + "cosface_loss.py CosFaceLoss(scale=64)"),
        "reduction": ("mean", TORCH_RED),
    },
    "arcface": {
        "margin": (0.5, "deepinsight/insightface arcface_torch configs/base.py margin_list (1.0, 0.5, 0.0): m = 0.5 rad"),
        "scale": (64.0, "deepinsight/insightface arcface_torch CombinedMarginLoss(64, ...)"),
        "reduction": ("mean", TORCH_RED),
    },
    "partial_fc": {
        "sample_rate": (0.1, "An et al. 2021, Partial FC (arXiv 2010.05222): 10% of the classes; insightface configs/wf12m_flip_pfc01_*"),
        "margin": (0.5, "deepinsight/insightface arcface_torch configs/base.py margin_list (1.0, 0.5, 0.0)"),
        "scale": (64.0, "deepinsight/insightface arcface_torch CombinedMarginLoss(64, ...)"),
        "margin_type": ("arcface", "deepinsight/insightface arcface_torch configs/base.py (ArcFace margins)"),
        "seed": (None, "lossatlas: torch's global RNG draws the sampled centres"),
        "reduction": ("mean", TORCH_RED),
    },
    "sface": {
        "scale": (64.0, "zhongyy/SFace SFace_torch/head/metrics.py SFaceLoss(s=64.0); train_SFace_torch.py --param_s"),
        "k": (80.0, "zhongyy/SFace SFace_torch/head/metrics.py SFaceLoss(k=80.0)"),
        "a": (0.8, "zhongyy/SFace SFace_torch/head/metrics.py SFaceLoss(a=0.80)"),
        "b": (1.23, "zhongyy/SFace SFace_torch/head/metrics.py SFaceLoss(b=1.23)"),
        "reduction": ("mean", TORCH_RED),
    },
    "unpg": {
        "margin": (0.5, "Jung-Jun-Uk/UNPG recognition/data/head.zoo.yaml arcface m: 0.5"),
        "scale": (64.0, "Jung-Jun-Uk/UNPG recognition/data/head.zoo.yaml arcface s: 64"),
        "margin_type": ("arcface", "Jung-Jun-Uk/UNPG: the ArcFace head (its best setting)"),
        "whisker": (1.5, "Jung-Jun-Uk/UNPG recognition/data/head.zoo.yaml unpg wisk: 1.5"),
        "reduction": ("mean", TORCH_RED),
    },
    # --- G. contrastive / self-supervised ----------------------------------------------------------
    "infonce": {
        "temperature": (0.07, "Radford et al. 2021, CLIP: logit scale initialised to 1/0.07 (open_clip log(1/0.07))"),
        "symmetric": (True, "mlfoundations/open_clip src/open_clip/loss.py ClipLoss: (image→text + text→image)/2"),
        "intra_view_negatives": (False, "mlfoundations/open_clip ClipLoss: negatives from the other view only"),
        "learnable": (False, "lossatlas: a fixed temperature (CLIP learns it: learnable=True)"),
        "max_scale": (100.0, "Radford et al. 2021, CLIP: the learned logit scale is clipped at 100"),
        "normalize": (True, "mlfoundations/open_clip: features are L2-normalised before ClipLoss"),
        "tiled": ("auto", TILED),
        "block_size": (None, BLOCK),
        "distributed": (False, DIST),
        "group": (None, GROUP),
        "reduction": ("mean", TORCH_RED),
    },
    "siglip": {
        "scale": (10.0, "Zhai et al. 2023, SigLIP: t = exp(t'), t' = log 10 at init (open_clip SigLipLoss)"),
        "bias": (-10.0, "Zhai et al. 2023, SigLIP: b = −10 at init (open_clip SigLipLoss)"),
        "learnable": (False, "lossatlas: fixed scale and bias (SigLIP learns them: learnable=True)"),
        "normalize": (True, "mlfoundations/open_clip: features are L2-normalised before SigLipLoss"),
        "tiled": ("auto", TILED),
        "block_size": (None, BLOCK),
        "distributed": (False, DIST),
        "group": (None, GROUP),
        "reduction": ("mean", TORCH_RED),
    },
    "debiased_contrastive": {
        "temperature": (0.5, "chingyaoc/DCL main.py --temperature default 0.5"),
        "tau_plus": (0.1, "chingyaoc/DCL main.py --tau_plus default 0.1"),
        "normalize": (True, "chingyaoc/DCL model.py: F.normalize on the projections"),
        "tiled": ("auto", TILED),
        "block_size": (None, BLOCK),
        "distributed": (False, DIST),
        "group": (None, GROUP),
        "reduction": ("mean", TORCH_RED),
    },
    "hard_negative_contrastive": {
        "temperature": (0.5, "joshr17/HCL image/main.py --temperature default 0.5"),
        "tau_plus": (0.1, "joshr17/HCL image/main.py --tau_plus default 0.1"),
        "beta": (1.0, "joshr17/HCL image/main.py --beta default 1.0"),
        "normalize": (True, "joshr17/HCL image/model.py: F.normalize on the projections"),
        "tiled": ("auto", TILED),
        "block_size": (None, BLOCK),
        "distributed": (False, DIST),
        "group": (None, GROUP),
        "reduction": ("mean", TORCH_RED),
    },
    "decoupled_contrastive": {
        "temperature": (0.1, "lightly-ai/lightly lightly/loss/dcl_loss.py DCLLoss(temperature=0.1); Yeh et al. 2022"),
        "symmetric": (True, "lightly-ai/lightly DCLLoss: 0.5·(loss0 + loss1), both views as anchors"),
        "weighted": (False, "Yeh et al. 2022, Decoupled Contrastive Learning: DCL (DCLW is the weighted variant)"),
        "sigma": (0.5, "lightly-ai/lightly lightly/loss/dcl_loss.py DCLWLoss(sigma=0.5); Yeh et al. 2022"),
        "normalize": (True, "lightly-ai/lightly DCLLoss: F.normalize on both views"),
        "tiled": ("auto", TILED),
        "block_size": (None, BLOCK),
        "distributed": (False, DIST),
        "group": (None, GROUP),
        "reduction": ("mean", TORCH_RED),
    },
    "mochi": {
        "temperature": (0.2, "Chen et al. 2020, MoCo v2 (T = 0.2), the base of MoCHi's experiments"),
        "num_hard": (1024, "lossatlas choice of N (Kalantidis et al. 2020 ablate N with no single default)"),
        "num_mix": (1024, "lossatlas choice of s (Kalantidis et al. 2020 ablate s with no single default)"),
        "num_query_mix": (256, "lossatlas choice of s' (Kalantidis et al. 2020 ablate s' with no single default)"),
        "normalize": (True, "facebookresearch/moco: queries and keys are L2-normalised"),
        "tiled": ("auto", TILED),
        "block_size": (None, BLOCK),
        "reduction": ("mean", TORCH_RED),
    },
    "barlow_twins": {
        "lambd": (0.0051, "facebookresearch/barlowtwins main.py --lambd default 0.0051"),
        "eps": (1e-5, "torch nn.BatchNorm1d(eps=1e-5), the standardisation in barlowtwins main.py"),
        "distributed": (False, DIST),
        "group": (None, GROUP),
        "reduction": ("sum", "facebookresearch/barlowtwins main.py: on_diag + λ·off_diag (sums over D×D)"),
    },
    "wmse": {
        "w_size": (128, "htdt/self-supervised cfg.py --w_size default 128"),
        "w_iter": (1, "htdt/self-supervised cfg.py --w_iter default 1"),
        "eps": (0.0, "htdt/self-supervised cfg.py --w_eps default 0"),
        "reduction": ("mean", TORCH_RED),
    },
    # --- G16. SogCLR / iSogCLR (LibAUC 2.0.1 libauc/losses/contrastive.py code defaults) ------------
    "sogclr": {
        "temperature": (0.1, f"{LIBAUC_GCL} GCLoss_v1(tau=0.1)"),
        "gamma": (0.9, f"{LIBAUC_GCL} GCLoss_v1(gamma=0.9)"),
        "eps": (1e-8, f"{LIBAUC_GCL} GCLoss_v1(eps=1e-8)"),
        "normalize": (True, f"{LIBAUC_GCL} GCLoss_v1.forward: F.normalize(hidden1/hidden2, p=2, dim=1)"),
        "tiled": ("auto", TILED),
        "block_size": (None, BLOCK),
        "distributed": (True, GCL_DIST),
        "group": (None, GROUP),
        "reduction": ("mean", f"{LIBAUC_GCL} GCLoss_v1: (loss_a + loss_b).mean() over the anchors"),
    },
    "isogclr": {
        "temperature": (0.1, f"{LIBAUC_GCL} GCLoss_v1(tau=0.1): the initial per-sample temperature"),
        "gamma": (0.9, f"{LIBAUC_GCL} GCLoss_v1(gamma=0.9)"),
        "eps": (1e-8, f"{LIBAUC_GCL} GCLoss_v1(eps=1e-8)"),
        "tau_min": (0.05, f"{LIBAUC_GCL} GCLoss_v1(tau_min=0.05)"),
        "tau_max": (0.7, f"{LIBAUC_GCL} GCLoss_v1(tau_max=0.7)"),
        "rho": (0.3, f"{LIBAUC_GCL} GCLoss_v1(rho=0.3)"),
        "eta": (0.01, f"{LIBAUC_GCL} GCLoss_v1(eta=0.01)"),
        "beta": (0.9, f"{LIBAUC_GCL} GCLoss_v1(beta=0.9)"),
        "normalize": (True, f"{LIBAUC_GCL} GCLoss_v1.forward: F.normalize(hidden1/hidden2, p=2, dim=1)"),
        "tiled": ("auto", TILED),
        "block_size": (None, BLOCK),
        "distributed": (True, GCL_DIST),
        "group": (None, GROUP),
        "reduction": ("mean", f"{LIBAUC_GCL} GCLoss_v1: (loss_a + loss_b).mean() over the anchors"),
    },
    "sogclr_bimodal": {
        "temperature": (0.01, f"{LIBAUC_GCL} GCLoss_v2(tau=0.01)"),
        "gamma": (0.9, f"{LIBAUC_GCL} GCLoss_v2(gamma=0.9)"),
        "eps": (1e-20, f"{LIBAUC_GCL} GCLoss_v2: self.eps = 1e-20 (hard-coded)"),
        "normalize": (False, f"{LIBAUC_GCL} GCLoss_v2.forward uses image_features / text_features as given"),
        "tiled": ("auto", TILED),
        "block_size": (None, BLOCK),
        "distributed": (True, GCL_DIST),
        "group": (None, GROUP),
        "reduction": ("mean", f"{LIBAUC_GCL} GCLoss_v2: (img_loss + txt_loss) / 2, each a mean over the anchors"),
    },
    "isogclr_bimodal": {
        "temperature": (0.01, f"{LIBAUC_GCL} GCLoss_v2(tau=0.01): the initial per-sample temperatures"),
        "gamma": (0.9, f"{LIBAUC_GCL} GCLoss_v2(gamma=0.9)"),
        "eps": (1e-20, f"{LIBAUC_GCL} GCLoss_v2: self.eps = 1e-20 (hard-coded)"),
        "tau_min": (0.005, f"{LIBAUC_GCL} GCLoss_v2(tau_min=0.005)"),
        "tau_max": (0.05, f"{LIBAUC_GCL} GCLoss_v2(tau_max=0.05)"),
        "rho": (6.0, f"{LIBAUC_GCL} GCLoss_v2(rho=6.0)"),
        "eta": (0.01, f"{LIBAUC_GCL} GCLoss_v2(eta=0.01)"),
        "beta": (0.9, f"{LIBAUC_GCL} GCLoss_v2(beta=0.9)"),
        "normalize": (False, f"{LIBAUC_GCL} GCLoss_v2.forward uses image_features / text_features as given"),
        "tiled": ("auto", TILED),
        "block_size": (None, BLOCK),
        "distributed": (True, GCL_DIST),
        "group": (None, GROUP),
        "reduction": ("mean", f"{LIBAUC_GCL} GCLoss_v2: (img_loss + txt_loss) / 2, each a mean over the anchors"),
    },
    # --- A10 / A11. stage 2 of decoupled training (kind two_stage) ---------------------------------
    "crt": {
        "reinit": (True, f"{KANG} config/ImageNet_LT/cls_crt.yaml: classifier stage1_weights: false (a new classifier)"),
        "sampler": ("class_balanced_sampler", f"{KANG} config/ImageNet_LT/cls_crt.yaml sampler: ClassAwareSampler"),
        "epochs": (10, f"{KANG} config/ImageNet_LT/cls_crt.yaml num_epochs: 10"),
        "lr": (0.2, f"{KANG} config/ImageNet_LT/cls_crt.yaml classifier optim_params lr: 0.2"),
        "weight_decay": (5e-4, f"{KANG} config/ImageNet_LT/cls_crt.yaml classifier optim_params weight_decay: 0.0005"),
    },
    "lws": {
        "sampler": ("class_balanced_sampler", f"{KANG} config/ImageNet_LT/cls_lws.yaml sampler: ClassAwareSampler"),
        "epochs": (5, f"{KANG} config/ImageNet_LT/cls_lws.yaml num_epochs: 5"),
        "lr": (0.2, f"{KANG} config/ImageNet_LT/cls_lws.yaml classifier optim_params lr: 0.2"),
        "weight_decay": (5e-4, f"{KANG} config/ImageNet_LT/cls_lws.yaml classifier optim_params weight_decay: 0.0005"),
    },
    "tau_norm": {
        "tau": (1.0, "lossatlas (unit-norm rows): Kang et al. choose tau in [0, 2] on validation data, tau_norm.py "
                     "scans linspace(0, 2, 21)"),
        "keep_bias": (False, f"{KANG} tau_norm.py: the tau-normalised classifier has no bias"),
    },
    "weight_balancing": {
        "thresh": (0.1, f"{WB} demo notebook: thresh = 0.1; MaxNorm_via_PGD(thresh=thresh)"),
        "p": (2.0, f"{WB} MaxNorm_via_PGD(LpNorm=2)"),
        "sampler": (None, f"{WB} demo notebook: stage 2 reuses the instance-balanced loaders"),
        "epochs": (10, f"{WB} demo notebook: total_epoch_num = 10"),
        "lr": (0.01, f"{WB} demo notebook: base_lr = 0.01"),
        "weight_decay": (0.1, f"{WB} demo notebook: weight_decay = 0.1 (stage 2)"),
    },
    # --- I. samplers -------------------------------------------------------------------------------
    "class_balanced_sampler": {
        "num_samples": (None, "lossatlas: len(labels) per epoch (Kang et al. 2020's ClassAwareSampler draws n_max·C)"),
        "seed": (0, f"{SAMPLER} (seed=0; the epoch's draw uses seed + epoch)"),
        "num_replicas": (None, f"{SAMPLER} (None = the process group's world size)"),
        "rank": (None, f"{SAMPLER} (None = the process's rank)"),
    },
    "square_root_sampler": {
        "num_samples": (None, "lossatlas: len(labels) per epoch"),
        "seed": (0, f"{SAMPLER} (seed=0; the epoch's draw uses seed + epoch)"),
        "num_replicas": (None, f"{SAMPLER} (None = the process group's world size)"),
        "rank": (None, f"{SAMPLER} (None = the process's rank)"),
    },
    "progressively_balanced_sampler": {
        "num_samples": (None, "lossatlas: len(labels) per epoch"),
        "seed": (0, f"{SAMPLER} (seed=0; the epoch's draw uses seed + epoch)"),
        "num_replicas": (None, f"{SAMPLER} (None = the process group's world size)"),
        "rank": (None, f"{SAMPLER} (None = the process's rank)"),
    },
    "class_difficulty_sampler": {
        "tau": ("dynamic", "hitachi-rd-cv/CDB-loss CIFAR-LT/cifar_train.py --tau default 'dynamic'"),
        "num_samples": (None, "lossatlas: len(labels) per epoch"),
        "seed": (0, f"{SAMPLER} (seed=0; the epoch's draw uses seed + epoch)"),
        "num_replicas": (None, f"{SAMPLER} (None = the process group's world size)"),
        "rank": (None, f"{SAMPLER} (None = the process's rank)"),
    },
    "dual_sampler": {
        "sampling_rate": (0.5, "LibAUC 2.0.1 libauc/sampler/sampler.py DualSampler(sampling_rate=0.5)"),
        "num_pos": (None, "LibAUC 2.0.1 DualSampler(num_pos=None): max(1, int(sampling_rate * batch_size))"),
        "label": (None, "lossatlas: binary labels; a column index for multi-hot labels"),
        "shuffle": (True, "LibAUC 2.0.1 DualSampler(shuffle=True)"),
        "seed": (0, f"{SAMPLER} (seed=0; the epoch's draw uses seed + epoch)"),
        "num_replicas": (None, f"{SAMPLER} (None = the process group's world size)"),
        "rank": (None, f"{SAMPLER} (None = the process's rank)"),
    },
    "pk_sampler": {
        "num_batches": (None, "lossatlas: len(labels) // (p·k) batches per epoch"),
        "seed": (0, f"{SAMPLER} (seed=0; the epoch's draw uses seed + epoch)"),
        "num_replicas": (None, f"{SAMPLER} (None = the process group's world size)"),
        "rank": (None, f"{SAMPLER} (None = the process's rank)"),
    },
    # --- G11. retrieval negatives (kind negatives) -------------------------------------------------
    "ance": {
        "num": (20, f"{ANCE} commands/run_train.sh: run_ann_data_gen.py --negative_sample 20"),
        "depth": (200, f"{ANCE} commands/run_train.sh: --topk_training 200; Xiong et al. 2021: the top 200 of the ANN index"),
        "refresh_every": (10000, f"{ANCE} commands/run_train.sh: run_ann.py --save_steps 10000 (new ANN data per checkpoint)"),
        "margin": (None, "Xiong et al. 2021: ANCE samples the top 200 unfiltered"),
        "ratio": (None, "Xiong et al. 2021: ANCE samples the top 200 unfiltered"),
        "seed": (0, LIB),
    },
    "simans": {
        "num": (20, f"{SIMANS} argparse --number_neg default=20"),
        "depth": (200, "lossatlas: ANCE's top-200 candidate pool (SimANS samples from the retriever's top-k list)"),
        "a": (0.5, f"{SIMANS} argparse --a default=0.5"),
        "b": (0.0, f"{SIMANS} argparse --b default=0 (SimANS/train_NQ_AR2.sh passes --b 1.0)"),
        "refresh_every": (2000, "microsoft/SimXNS SimANS/train_NQ_AR2.sh Iteration_step=2000 (negatives re-generated)"),
        "margin": (None, "Zhou et al. 2022: the distribution itself down-weights likely false negatives"),
        "ratio": (None, "Zhou et al. 2022: the distribution itself down-weights likely false negatives"),
        "seed": (0, LIB),
    },
    "hard_negatives": {
        "margin": (None, "Moreira et al. 2024 (NV-Retriever): the naive top-k baseline has no filter"),
        "ratio": (None, "Moreira et al. 2024 (NV-Retriever): the naive top-k baseline has no filter"),
        "refresh_every": (None, "static hard negatives are mined once, before training (DPR, RocketQA, NV-Retriever)"),
    },
    "positive_aware_negatives": {
        "ratio": (0.95, "Moreira et al. 2024 (NV-Retriever): TopK-PercPos at 95 % of the positive score"),
        "margin": (None, "Moreira et al. 2024: TopK-MarginPos is the alternative, not combined"),
        "refresh_every": (None, "Moreira et al. 2024: negatives mined once with a teacher embedding model"),
    },
    "random_negatives": {
        "seed": (0, LIB),
    },
    "ngame": {
        "cluster_size": (1, f"{NGAME} configs/NGAME/LF-AmazonTitles-131K.json siamese sampling_init_cluster_size: 1"),
        "doubling_epochs": ((10, 20, 25, 50, 75, 100, 125, 150, 200),
                            f"{NGAME} configs/NGAME/LF-AmazonTitles-131K.json siamese sampling_curr_epochs; "
                            "libs/shortlist.py ClusteringIndex.update_state halves num_clusters at each"),
        "drop_last": (False, "torch DataLoader(drop_last=False); NGAME's MySampler yields every index of its order"),
        "seed": (0, f"{SAMPLER} (seed=0; the epoch's order uses seed + epoch)"),
        "num_replicas": (None, f"{SAMPLER} (None = the process group's world size)"),
        "rank": (None, f"{SAMPLER} (None = the process's rank)"),
    },
    "gistembed": {
        "margin": (0.0, f"{ST} GISTEmbedLoss(margin=0.0); Solatorio 2024 drops candidates above the positive"),
        "margin_strategy": ("absolute", f"{ST} GISTEmbedLoss(margin_strategy='absolute')"),
        "temperature": (0.01, f"{ST} GISTEmbedLoss(temperature=0.01)"),
    },
}

#: Arguments of a module that its function does not take, with the reason.
MODULE_ONLY = {
    ("infonce", "learnable"): "a learned temperature is module state (an nn.Parameter); the function takes a value",
    ("infonce", "max_scale"): "the clamp of the learned logit scale, module state",
    ("siglip", "learnable"): "learned scale and bias are module state (nn.Parameters); the function takes values",
    ("partial_fc", "seed"): "the module owns the torch.Generator; the function takes generator=",
    ("ensloss", "seed"): "the module owns the torch.Generator; the function takes generator=",
    ("orthohash", "seed"): "the module draws its codebook buffer from it; the function takes the codebook",
    ("role", "seed"): "the module draws its initial estimate table (a parameter) from it; the function takes the table",
    ("absgd", "start_epoch"): "the two-stage schedule is module state (epochs); the function computes one step",
    ("absgd", "warmup_lam"): "the first stage's λ belongs to the schedule, module state",
    ("class_difficulty", "num_classes"): "sizes the module's weight buffer before the first update",
    ("class_difficulty", "reduction"): "reduces the module's CDB-CE call; the function returns weights",
    **{("cals", n): "the augmented Lagrangian's clip and rho schedule are module state (update_multipliers, "
                    "update_rho); the function takes the multipliers and rho" for n in ("lambd_min", "lambd_max",
                                                                                          "rho_max", "gamma", "tao")},
    ("loss_based", "burnout_steps"): "the step counter is module state; the function weights one batch",
}

#: Defaulted arguments of a function (besides its inputs and call keywords) that its module
#: keeps as state instead, with the reason.
FUNCTION_ONLY = {
    ("group_dro", "log_q"): "the group weights q of group DRO (as log q), a buffer of the module",
    ("absgd", "log_u"): "the running average u of ABSGD, a buffer of the module",
}


def _entry(id_: str) -> Any:
    return la.info(id_)


def _same(a: Any, b: Any) -> bool:
    """Equal value and kind: True is not 1, 1e-4 is not '1e-4', None is only None."""
    if a is None or b is None or isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return isinstance(a, Tensor) and isinstance(b, Tensor) and a.tolist() == b.tolist()
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return bool(a == b)


_LABELS = [0, 0, 1, 1, 1, 2, 3, 3]


def _required(entry: Any) -> dict[str, Any]:
    """Required constructor arguments of any registered id."""
    if entry.kind in K.LOSS_KINDS:
        return K.constructor_kwargs(entry)
    fill = {"labels": _LABELS, "p": 2, "k": 2, "num_epochs": 10, "num": 2, "class_counts": K.COUNTS, "start_epoch": 160,
            "batch_size": 4, "group_counts": K.COUNTS, "embeddings": torch.randn(8, 3, generator=torch.Generator().manual_seed(0))}
    if entry.id == "dual_sampler":  # binary labels: 2 positives of 8
        fill["labels"] = [int(y == 2 or y == 3) for y in _LABELS[:6]] + [0, 0]
    missing = [n for n in entry.required if n not in fill]
    assert not missing, f"{entry.id}: this test cannot fill required argument(s) {missing}"
    return {n: fill[n] for n in entry.required}


def _function_params(entry: Any) -> dict[str, inspect.Parameter]:
    """The function's hyper-parameters: its arguments less its inputs and call keywords."""
    params = dict(inspect.signature(entry.function).parameters)
    try:
        spec = spec_of(entry.function)
    except TypeError:  # a weighting's function (not a loss function): its first argument is the input
        return dict(list(params.items())[1:])
    return {n: p for n, p in params.items() if n not in spec.inputs and n not in spec.call}


ROWS = [(id_, name) for id_, row in DEFAULTS.items() for name in row]


# --- (a) the table covers every registered id and every defaulted argument ----------------------

def test_table_covers_every_registered_id():
    registered = {e.id for e in la.list()}
    assert len(registered) >= 60
    missing = sorted(registered - set(DEFAULTS))
    assert not missing, f"registered ids without a row in DEFAULTS: {missing}"
    stale = sorted(set(DEFAULTS) - registered)
    assert not stale, f"rows for ids that are not registered: {stale}"
    kinds = {e.kind for e in la.list()}
    assert {"classification", "multilabel", "embedding", "pair", "weighting", "sampler", "negatives"} <= kinds


@pytest.mark.parametrize("id_", sorted({e.id for e in la.list()}))
def test_table_covers_every_defaulted_argument(id_):
    entry = _entry(id_)
    defaulted = {n for n, p in inspect.signature(entry.cls).parameters.items()
                 if p.default is not inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    row = DEFAULTS.get(id_, {})
    assert not (set(row) & set(entry.required)), f"{id_}: the table gives a default to a required argument"
    missing = sorted(defaulted - set(row) - NOT_IN_TABLE)
    assert not missing, f"{id_}: defaulted argument(s) without a row in DEFAULTS: {missing}"
    stale = sorted(set(row) - defaulted)
    assert not stale, f"{id_}: rows for arguments that have no default (or do not exist): {stale}"
    for name, (_, source) in row.items():
        assert isinstance(source, str) and len(source) > 8, f"{id_}.{name}: name the paper or file of the default"


@pytest.mark.parametrize("id_", sorted({e.id for e in la.list() if e.function is not None}))
def test_function_and_module_take_the_same_arguments(id_):
    """Arguments only one side takes are listed (MODULE_ONLY / FUNCTION_ONLY) with a reason."""
    entry = _entry(id_)
    fn = {n for n, p in _function_params(entry).items() if p.default is not inspect.Parameter.empty}
    module_only = {n for (i, n) in MODULE_ONLY if i == id_}
    function_only = {n for (i, n) in FUNCTION_ONLY if i == id_}
    table = set(DEFAULTS[id_])
    assert sorted(table - fn - NOT_IN_TABLE) == sorted(module_only)
    assert sorted(fn - table - NOT_IN_TABLE) == sorted(function_only)


# --- (b) each default is the source's, everywhere it is written ---------------------------------

@pytest.mark.parametrize(("id_", "name"), ROWS, ids=[f"{i}.{n}" for i, n in ROWS])
def test_default_is_the_sources(id_, name):
    expected, source = DEFAULTS[id_][name]
    entry = _entry(id_)
    where = f"{id_}.{name} (source: {source})"
    module = inspect.signature(entry.cls).parameters[name].default
    assert _same(module, expected), f"{where}: the module's default is {module!r}, the source's {expected!r}"
    assert _same(entry.defaults[name], expected), f"{where}: la.info(id).defaults has {entry.defaults[name]!r}"
    if entry.function is not None and (id_, name) not in MODULE_ONLY:
        fn = _function_params(entry)[name].default
        assert _same(fn, expected), f"{where}: the function's default is {fn!r}, the source's {expected!r}"
        if entry.kind in K.LOSS_KINDS:
            assert _same(spec_of(entry.function).defaults[name], expected)


def _sampler_size(obj: Any) -> bool:
    return obj.num_samples == len(_LABELS)


#: Defaults that ``la.create`` resolves (None = work it out, a name = an object), with the check
#: that it resolved them as documented.
RESOLVED: dict[tuple[str, str], Callable[[Any], bool]] = {
    **{(s, "num_samples"): _sampler_size for s in ("class_balanced_sampler", "square_root_sampler",
                                                   "progressively_balanced_sampler", "class_difficulty_sampler")},
    **{(s, "num_replicas"): (lambda obj: obj.num_replicas == 1) for s in DEFAULTS if s.endswith("sampler")},
    **{(s, "rank"): (lambda obj: obj.rank == 0) for s in DEFAULTS if s.endswith("sampler")},
    ("ngame", "num_replicas"): lambda obj: obj.num_replicas == 1,
    ("ngame", "rank"): lambda obj: obj.rank == 0,
    ("pk_sampler", "num_batches"): lambda obj: obj.num_batches == len(_LABELS) // (2 * 2),
    ("dual_sampler", "num_pos"): lambda obj: obj.num_pos == max(1, int(0.5 * 4)),
    ("active_passive", "active"): lambda obj: isinstance(obj.active, la.info("nce").cls),
    ("active_passive", "passive"): lambda obj: isinstance(obj.passive, la.info("rce").cls),
    ("logitclip", "base"): lambda obj: isinstance(obj.base, la.info("cross_entropy").cls),
    ("class_difficulty", "num_classes"): lambda obj: obj.weights is None,
    ("group_dro", "adjustment"): lambda obj: obj.adjustment.tolist() == [0.0] * obj.num_groups,
}


@pytest.mark.parametrize("id_", sorted(DEFAULTS))
def test_created_object_holds_the_defaults(id_):
    entry = _entry(id_)
    torch.manual_seed(0)
    obj = la.create(id_, **_required(entry))
    for name, (expected, source) in DEFAULTS[id_].items():
        if (id_, name) in RESOLVED:
            assert RESOLVED[(id_, name)](obj), f"{id_}.{name}: the default {expected!r} did not resolve as documented"
            continue
        assert hasattr(obj, name), f"{id_}: la.create(...) keeps no attribute {name!r}"
        value = getattr(obj, name)
        if isinstance(value, Tensor) and not isinstance(expected, Tensor):
            value = value.item() if value.numel() == 1 else value
        assert _same(value, expected), f"{id_}.{name} = {value!r} after la.create, the source says {expected!r} ({source})"


# --- (c) behaviour: the defaults are the ones the loss uses ------------------------------------

LOSS_IDS = sorted(K.loss_ids())
assert set(LOSS_IDS) <= set(DEFAULTS)

#: Another value for each hyper-parameter, chosen so that the loss must change on the test
#: batch (its value or a gradient). Numbers without an entry get the generic one (:func:`_other`).
_W = [1.0, 2.0, 3.0, 4.0]  # per-class weights for the C = 4 classes of the test batches
OTHER: dict[tuple[str, str], Any] = {
    ("smooth_adversarial_comp_sum", "vector"): "scores",
    ("rankmixup_mrl", "score"): "confidence",
    **{(i, "weight"): _W for i in ("cross_entropy", "focal", "ldam", "logit_adjusted", "balanced_softmax", "vs", "gumbel",
                                   "poly1")},
    ("focal", "alpha"): [0.1, 0.2, 0.3, 0.4],
    ("proto_triplet", "margin"): 5.0,  # the conformance batch's queries all clear the default margin: a wide one acts
    ("icnn", "neighbors"): 1,  # search one neighbour: some samples then see no different-class one
    ("bce", "pos_weight"): [2.0, 2.0, 2.0, 2.0],
    ("asymmetric", "eps"): 0.1,
    ("cals", "margin"): 0.5,  # below the batch's logit gaps: the constraints become active
    ("cals", "lambd_min"): 0.5,  # the multipliers' start: with margin 0.5 (see _setup) a visible change
    ("gumbel", "clamp_min"): 0.0,  # the batch's logits reach below -2: a clamp at 0 moves them
    ("gumbel", "clamp_max"): 1.0,  # and above 2: a clamp at 1 moves them  # a log clamp: 1e-8 → 5e-9 moves no probability of the batch across it
    ("spherical_z_loss", "eps"): 1.0,  # added to σ ≈ 2: 1e-12 → 5e-13 is below float64's resolution there
    ("logitclip", "eps"): 1.0,  # added to ‖z‖: 1e-7 → 5e-8 moves the loss by ~1e-9 only
    ("barlow_twins", "eps"): 1.0,  # the standardisation's ε: a visible change, not a rounding one
    # learnable=True (infonce, siglip; the generic `not default`) adds a trained parameter, a gradient
    # leaf: the value at initialisation is the fixed one's (up to the float32 parameter's rounding)
    ("rce", "log_zero"): -4.0,  # the SCE paper's A = -4
    ("sce", "log_zero"): -4.0,
    ("infonce", "max_scale"): 10.0,  # with learnable=True (see _setup): clamps the scale 1/0.07 ≈ 14.3
    ("unpg", "whisker"): 0.0,  # keeps only the negatives inside [Q1, Q3]; 0.75 drops none more on 8 samples
    ("anyloss", "metric"): "accuracy",
    ("dice", "denominator"): "element",
    ("dice", "activation"): "sigmoid",
    ("non_negative_contrastive", "activation"): "relu",
    ("conr", "window"): 2.0,  # the batch's targets are 1.5 apart: ω = 2 makes neighbours positives (0.5 changes nothing)  # the same value, another gradient (GELU's vs ReLU's)
    ("active_passive", "active"): "gce",
    ("active_passive", "passive"): "mae",
    ("active_passive", "active_kwargs"): {"scale": 2.0},
    ("active_passive", "passive_kwargs"): {"scale": 2.0},
    ("logitclip", "base"): "focal",
    ("logitclip", "base_kwargs"): {"label_smoothing": 0.1},
    ("multi_similarity", "miner_epsilon"): 0.1,
    ("supcon", "average_over"): "all_anchors",  # on a batch with an anchor that has no positive (see _setup)
    ("partial_fc", "margin_type"): "cosface",
    ("partial_fc", "sample_rate"): 0.5,  # with 40 classes (see _setup): 4 sampled centres → 20
    ("ensloss", "seed"): 0,  # its own generator instead of the global RNG: other derivatives are drawn
    ("partial_fc", "seed"): 0,  # its own generator instead of the global RNG: other centres are sampled
    ("unpg", "margin_type"): "cosface",
    **{(i, "surrogate"): "hinge" for i in ("ap_soap", "pauc_cvar", "pauc_dro", "tpauc_kl", "multilabel_ap",
                                          "multilabel_pauc", "ndcg")},
    ("multilabel_pauc", "mode"): "2w",
    ("ndcg", "top_k"): 2,  # K-SONG; 0 is still SONG (LibAUC tests topk > 0)
    ("ndcg", "top_k_version"): "prac",  # with top_k = 2 (see _setup)
    ("listwise_ce", "eps"): 1.0,  # added to u ~ 0.1-1: 1e-10 -> 5e-11 is below float64's resolution there
    ("sogclr", "eps"): 1e6,  # a floor above every u_i = mean_k e^{l_ik/0.1} <= e^10 of the batch
    ("isogclr", "eps"): 1e6,
    ("sogclr_bimodal", "eps"): 10.0,  # u_i <= 1 (shifted by the running max): a floor above it
    ("isogclr_bimodal", "eps"): 10.0,
    # the conformance batch's raw dot products reach several units: at τ = 0.01 or 0.005 each row's weights sit on
    # its largest negative (the same loss, to 1e-88); τ = 1 spreads them
    ("sogclr_bimodal", "temperature"): 1.0,
    ("isogclr_bimodal", "temperature"): 1.0,
    ("pairwise_auc", "surrogate"): "squared_hinge",
    ("aucm", "imratio"): 0.3,  # the test batch's positive fraction is 3/8
    ("aucm", "version"): "v2",
    ("multilabel_aucm", "imratio"): 0.3,
    ("multilabel_aucm", "version"): "v2",
}

#: Arguments whose other values cannot change the loss by definition: the test checks that the
#: value and gradients stay the same (up to rounding). {(id, name): (other, reason)}
SAME_BY_DESIGN: dict[tuple[str, str], tuple[Any, str]] = {
    ("pairwise_auc", "margin"): (0.5, "the default surrogate 'logistic' reads the scale only (LibAUC's hparam is its "
                                      "scale there); tests/losses/test_auc.py checks margin with the hinge surrogates"),
    **{(i, "tiled"): (True, "the negative sums as a tiled log-sum-exp block by block (exact up to rounding)")
       for i in _GCL_IDS},
    **{(i, "block_size"): (3, "the tile size of the tiled path (forced by tiled=True): the same loss") for i in _GCL_IDS},
    **{(i, "tiled"): (True, "tiling computes the same loss block by block (exact up to rounding)")
       for i in ("infonce", "siglip", "debiased_contrastive", "hard_negative_contrastive", "decoupled_contrastive",
                 "mochi", "supcon")},
    **{(i, "block_size"): (3, "the tile size of the tiled path (forced by tiled=True): the same loss")
       for i in ("infonce", "siglip", "debiased_contrastive", "hard_negative_contrastive", "decoupled_contrastive",
                 "mochi", "supcon")},
    **{(i, "tiled"): (True, "the row-block form computes the same loss block by block (exact up to rounding)")
       for i in ("contrastive", "triplet_margin", "multi_similarity", "ntxent")},
    **{(i, "block_size"): (3, "the tile size of the row-block path (with tiled=True): the same loss")
       for i in ("contrastive", "triplet_margin", "multi_similarity", "ntxent")},
}

#: Arguments not exercised by the generic test, with the reason (and where they are).
NOT_BEHAVIOURAL: dict[tuple[str, str], str] = {
    ("dkd", "warmup"): "the warm-up acts only on a call given epoch=, which the generic batch has not: "
                       "tests/losses/test_distillation.py::test_dkd_is_ce_plus_weighted_parts_and_warmup_ramps",
    **{("compositional_auc", n): "the first call of compositional AUC is a cross-entropy call (LibAUC's schedule), "
                                 "which no AUC-M hyper-parameter changes: tests/losses/test_auc.py::"
                                 "test_compositional_hyperparameters_act_on_the_auc_calls checks the AUC calls"
       for n in ("margin", "k", "imratio", "version")},
    **{(i, n): "needs an initialised process group: tests/test_distributed_contrastive.py"
       for i in ("infonce", "siglip", "debiased_contrastive", "hard_negative_contrastive", "decoupled_contrastive",
                 "barlow_twins", "supcon", "ntxent") for n in ("distributed", "group")},
    **{(i, n): "needs an initialised process group: tests/test_distributed_metric.py"
       for i in ("contrastive", "triplet_margin", "multi_similarity") for n in ("distributed", "group")},
    **{(i, "ignore_index"): "an ignore_index absent from the batch cannot change it: test_ignore_index_default"
       for i in DEFAULTS if "ignore_index" in DEFAULTS[i]},
    **{("cals", n): "acts when the multipliers or rho are updated (update_multipliers / update_rho), not on a first "
                    "call: tests/losses/test_calibration.py::test_cals_module_multiplier_and_rho_updates_follow_the_official_rules"
       for n in ("lambd_max", "rho_max", "gamma", "tao")},
    ("pauc_cvar", "eta"): "SOPA's threshold step comes after the thresholds are read, so a first call cannot show it: "
                          "tests/losses/test_ranking.py checks the next call",
    ("ndcg", "eta"): "K-SONG's threshold step comes after ψ reads λ_q, so a first call cannot show it: "
                     "tests/losses/test_ranking.py checks the next call",
    **{(i, n): "needs an initialised process group: tests/test_sogclr_ddp.py"
       for i in _GCL_IDS for n in ("distributed", "group")},
    **{(i, n): "acts on the per-sample state (γ: on a visited sample; the iSogCLR rates and bounds: the temperature "
               "step after the loss), so a first call cannot show it: "
               "tests/losses/test_sogclr.py::test_state_hyperparameters_act_on_the_next_call checks the next call"
       for i in _GCL_IDS for n in ("gamma", "tau_min", "tau_max", "rho", "eta", "beta") if n in DEFAULTS[i]},
}


def _other(id_: str, name: str, default: Any) -> Any:
    if (id_, name) in OTHER:
        return OTHER[(id_, name)]
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default // 2 if default > 2 else default + 1
    if isinstance(default, float):
        return default / 2 if default != 0 else 0.1
    raise AssertionError(f"{id_}.{name}: give another value in OTHER (default {default!r})")


#: every argument of every loss but ``reduction`` (tests/conformance checks each reduction)
BEHAVIOUR_ROWS = [(i, n) for i in LOSS_IDS for n in DEFAULTS[i] if n != "reduction" and (i, n) not in NOT_BEHAVIOURAL]
IGNORE_IDS = [i for i in LOSS_IDS if "ignore_index" in DEFAULTS[i]]


def _setup(id_: str, name: str | None = None) -> tuple[Any, dict[str, Any], K.Case]:
    """The entry, extra constructor arguments and the batch for a loss (and the argument tested)."""
    entry = _entry(id_)
    extra: dict[str, Any] = {}
    case = K.make_case(entry, n=256 if id_ == "wmse" else K.N)  # W-MSE whitens sub-batches of w_size = 128 rows
    g = torch.Generator().manual_seed(7)
    if id_ == "mochi":  # a queue longer than num_hard / 2, so that N, s and s' all act
        case.call["queue"] = torch.randn(1536, K.D, generator=g, dtype=torch.float64)
    if id_ == "partial_fc" and name in ("sample_rate", "seed"):
        extra["num_classes"] = 40  # 4 classes in the batch: sample_rate 0.1 keeps 4 centres, 0.5 keeps 20
        if name == "seed":
            extra["sample_rate"] = 0.5  # at 0.1 only the 4 positive centres are kept: nothing is drawn
    if (id_, name) == ("multi_similarity", "miner_epsilon"):
        # classes half clustered: the MS miner drops easy pairs (on pure noise it keeps nearly all)
        emb, labels = case.inputs
        centres = torch.randn(int(labels.max()) + 1, K.D, generator=g, dtype=torch.float64)
        case.inputs[0] = (0.5 * centres[labels] + 0.5 * emb.detach()).requires_grad_(True)
    if (id_, name) == ("supcon", "average_over"):
        case.inputs[1] = torch.tensor([0, 0, 1, 1, 2, 2, 3, 4])  # anchors 6 and 7 have no positive
    if (id_, name) == ("decoupled_contrastive", "sigma"):
        extra["weighted"] = True  # σ is DCLW's (weighted=True) only
    if id_ == "cals" and name in ("rho", "normalize", "lambd_min"):
        extra["margin"] = 0.5  # at margin 20 no constraint of the batch is active, and these act through them
    if (id_, name) == ("infonce", "max_scale"):
        extra["learnable"] = True  # the clamp acts on the learned scale only
    if id_ == "ndcg" and name in ("gamma_lambda", "tau_1", "tau_2", "sigmoid_alpha", "top_k_version"):
        extra["top_k"] = 2  # K-SONG's hyper-parameters act with top_k > 0 only (SONG, top_k = -1, is the default)
    if id_ == "multilabel_pauc" and name in ("gamma_outer", "temperature_pos"):
        extra["mode"] = "2w"  # the two-way (SOTA-s) hyper-parameters
    if id_ == "metrix":  # pure positives (λ = 1) and negatives (λ = 0) among the mixes: some terms are exactly 0
        case.call["lam"] = torch.tensor([0.0, 1.0, 0.5, 0.5, 0.3, 0.7, 0.0, 1.0], dtype=torch.float64)
    if id_ == "sbcl":  # two subclasses in classes 0 and 1: SBCL's class term (γ) acts only between subclasses
        case.call["subclass"] = torch.tensor([0, 0, 0, 0, 1, 1, 0, 0])
    if name == "block_size" and (id_, name) in SAME_BY_DESIGN:
        extra["tiled"] = True
    return entry, extra, case


def _run(entry: Any, extra: dict[str, Any], case: K.Case, **kwargs: Any) -> tuple[Tensor, list[Tensor | None]]:
    crit = K.create(entry, **extra, **kwargs)
    return K.value_and_grads(crit, case.clone())


def _equal(a: tuple[Tensor, list[Tensor | None]], b: tuple[Tensor, list[Tensor | None]]) -> bool:
    if len(a[1]) != len(b[1]) or not torch.equal(a[0], b[0]):
        return False
    return all((x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))
               for x, y in zip(a[1], b[1]))


def _close(a: tuple[Tensor, list[Tensor | None]], b: tuple[Tensor, list[Tensor | None]]) -> bool:
    def eq(x: Tensor | None, y: Tensor | None) -> bool:
        return (x is None and y is None) or (x is not None and y is not None
                                             and torch.allclose(x, y, rtol=1e-9, atol=1e-12))
    # a learnable hyper-parameter adds a leaf (a parameter with a gradient): that is a change
    return len(a[1]) == len(b[1]) and eq(a[0], b[0]) and all(eq(x, y) for x, y in zip(a[1], b[1]))


@pytest.mark.parametrize("id_", LOSS_IDS)
def test_module_with_no_keywords_equals_the_defaults_spelled_out(id_):
    entry, extra, case = _setup(id_)
    spelled = {n: v for n, (v, _) in DEFAULTS[id_].items()}
    assert _equal(_run(entry, extra, case), _run(entry, extra, case, **spelled))


@pytest.mark.parametrize("id_", LOSS_IDS)
def test_function_with_no_keywords_equals_the_defaults_spelled_out(id_):
    entry, extra, case = _setup(id_)
    crit = K.create(entry, **extra)
    spec = spec_of(entry.function)
    fn_params = _function_params(entry)
    required = {n: v for n, v in {**K.constructor_kwargs(entry), **extra}.items() if n in fn_params}
    spelled = {n: v for n, (v, _) in DEFAULTS[id_].items() if n in fn_params}

    def call(**kw: Any) -> tuple[Tensor, list[Tensor | None]]:
        c = case.clone()
        inputs = list(c.inputs) + [getattr(crit, n).detach() for n in spec.inputs[len(c.inputs):]]
        if "sample_temperature" in spec.call or _STATE_KEYWORDS & set(spec.call):
            # ALDR, the X-risk losses: without the per-sample state the module keeps, the function runs a first visit
            c.call.pop("index", None)
        torch.manual_seed(1234)
        out = entry.function(*inputs, **c.call, **required, **kw)
        leaves = [t for t in c.inputs if t.requires_grad]
        grads = torch.autograd.grad(out.sum(), leaves, allow_unused=True) if out.requires_grad else [None] * len(leaves)
        return out.detach(), list(grads)

    assert _equal(call(), call(**spelled))


@pytest.mark.parametrize(("id_", "name"), BEHAVIOUR_ROWS, ids=[f"{i}.{n}" for i, n in BEHAVIOUR_ROWS])
def test_another_value_changes_the_loss(id_, name):
    entry, extra, case = _setup(id_, name)
    default = DEFAULTS[id_][name][0]
    base = _run(entry, extra, case)
    assert _equal(base, _run(entry, extra, case, **{name: default}))
    if (id_, name) in SAME_BY_DESIGN:
        other, _ = SAME_BY_DESIGN[(id_, name)]
        assert _close(base, _run(entry, extra, case, **{name: other}))
        return
    other = _other(id_, name, default)
    changed = _run(entry, extra, case, **{name: other})
    assert not _close(base, changed), f"{id_}: {name}={other!r} gives the same loss as the default {default!r}"


def _with_target(case: K.Case, value: int) -> K.Case:
    """The batch with one target entry set to ``value``: row 0's class, or the multi-label cell
    with the largest logit (ASL's clipped negatives with low logits contribute exactly 0)."""
    target = case.inputs[1].clone()
    cell = int(case.inputs[0].detach().argmax()) if target.is_floating_point() else 0
    target.view(-1)[cell] = value
    return K.Case([case.inputs[0], target, *case.inputs[2:]], dict(case.call), case.target_index)


@pytest.mark.parametrize("id_", IGNORE_IDS)
def test_ignore_index_default(id_):
    """ignore_index = -100 (torch's) on a batch where -100 occurs: that entry leaves the loss.

    Another ignore_index cannot change the loss of a batch without it, so the batch holds it:
    the default skips it exactly as ``ignore_index=-1`` skips a -1 there, and ``ignore_index=-1``
    refuses the -100 (then a class index out of range, or a multi-label target outside [0, 1]).
    """
    entry, extra, case = _setup(id_, "ignore_index")
    default, _ = DEFAULTS[id_]["ignore_index"]
    if default is None:  # ignoring is opt-in (multi-label, as torch's BCE): -100 is refused unless asked for
        with pytest.raises(ValueError):
            _run(entry, extra, _with_target(case, -100))
        opted = _run(entry, extra, _with_target(case, -100), ignore_index=-100)
        assert torch.isfinite(opted[0]).all() and not _close(opted, _run(entry, extra, case))
        return
    skipped = _run(entry, extra, _with_target(case, default))
    assert torch.isfinite(skipped[0]).all()
    assert _equal(skipped, _run(entry, extra, _with_target(case, -1), ignore_index=-1))
    assert not _close(skipped, _run(entry, extra, case)), f"{id_}: the entry with target {default} was not left out"
    with pytest.raises(ValueError):
        _run(entry, extra, _with_target(case, default), ignore_index=-1)
