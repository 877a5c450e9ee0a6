"""The KD method zoo: each loss against an independent computation, one distillation step per method and
pair, and registry/schema agreement."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from soteacher.methods import METHODS, InitStage, StagedMethod
from soteacher.methods.ab import ab_loss
from soteacher.methods.at import at_loss
from soteacher.methods.base import kd_loss
from soteacher.methods.cc import cc_loss
from soteacher.methods.crd import CRD, nce_loss
from soteacher.methods.dist import dist_loss
from soteacher.methods.dkd import DKD, dkd_loss
from soteacher.methods.features import HintRegressor
from soteacher.methods.fitnet import fitnet_loss
from soteacher.methods.fsp import fsp_loss
from soteacher.methods.ft import factor_loss
from soteacher.methods.logit_std import standardize
from soteacher.methods.nst import nst_loss
from soteacher.methods.pkt import pkt_loss
from soteacher.methods.rkd import rkd_loss
from soteacher.methods.soft_targets import SoftTargetMethod
from soteacher.methods.sp import sp_loss
from soteacher.methods.vid import VIDRegressor, vid_loss
from soteacher.models import MODELS, ModelOutput, build_model
from soteacher.study.config import ConfigError, load_schema, validate

torch.set_num_threads(1)

S = torch.tensor([[1.0, -0.5, 2.0], [0.3, 0.8, -1.2]], dtype=torch.float64)
T = torch.tensor([[0.5, 0.1, 1.5], [-0.7, 1.9, 0.4]], dtype=torch.float64)
Y = torch.tensor([2, 0])


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def _kl_rows(p: np.ndarray, q: np.ndarray) -> float:
    """mean over rows of KL(p_row ‖ q_row), by explicit sums."""
    return float(np.mean([sum(pi * math.log(pi / qi) for pi, qi in zip(pr, qr)) for pr, qr in zip(p, q)]))


def _cfg(name: str, **overrides) -> dict:
    # filter_kd needs its teachers to record the table
    cfg = validate({"teacher": {"filter_table": {}}, "distill": {"methods": {name: {}}}},
                   deep=False)["distill"]["methods"][name]
    return {**cfg, **overrides}


def _out(logits: torch.Tensor, feats: list[torch.Tensor] | None = None) -> ModelOutput:
    feats = feats or []
    return ModelOutput(logits, feats, feats)


def _with_targets(method: torch.nn.Module, num_samples: int, num_classes: int) -> torch.nn.Module:
    """A soft-target method (oracle, filter_kd) with a random table on the simplex, as its job would attach one."""
    if isinstance(method, SoftTargetMethod):
        method.set_targets(torch.softmax(torch.randn(num_samples, num_classes,
                                                     generator=torch.Generator().manual_seed(3)), dim=1))
    return method


# ---------------------------------------------------------------- 1. losses vs independent computations

def test_kd_loss_by_hand():
    temp = 2.0
    p_t = np.array([_softmax(r / temp) for r in T.numpy()])
    p_s = np.array([_softmax(r / temp) for r in S.numpy()])
    expected = _kl_rows(p_t, p_s) * temp**2
    assert kd_loss(S, T, temp).item() == pytest.approx(expected, rel=1e-9)
    cfg = _cfg("kd", kd_temperature=temp)
    losses = METHODS["kd"](cfg, _out(S), _out(T), 2)(_out(S), _out(T), Y, torch.arange(2))
    ce = np.mean([-math.log(_softmax(r)[y]) for r, y in zip(S.numpy(), Y.tolist())])
    assert set(losses) == {"ce", "kd"}
    assert losses["ce"].item() == pytest.approx(0.5 * ce)
    assert losses["kd"].item() == pytest.approx(0.5 * expected)


def test_vanilla_loss_is_cross_entropy_and_never_reads_the_teacher():
    cfg = _cfg("vanilla")
    assert cfg == {"ce_weight": 1.0}
    method = METHODS["vanilla"](cfg, _out(S), _out(T), 2)
    ce = F.cross_entropy(S, Y)
    losses = method(_out(S), _out(T), Y, torch.arange(2))
    assert set(losses) == {"ce"} and torch.equal(losses["ce"], ce)
    for teacher in (_out(5 * T + 1, [_rand(2, 3, 2, 2)]), _out(torch.full_like(T, float("nan"))), None):
        assert torch.equal(method(_out(S), teacher, Y, torch.arange(2))["ce"], ce)
    half = METHODS["vanilla"](_cfg("vanilla", ce_weight=0.5), _out(S), _out(T), 2)
    assert torch.equal(half(_out(S), None, Y, torch.arange(2))["ce"], 0.5 * ce)
    # no teacher term can be configured, and a zero CE weight (no loss at all) is refused
    for bad, key in (({"kd_weight": 0.5}, "kd_weight"), ({"weight": 1.0}, "weight"), ({"ce_weight": 0}, "ce_weight")):
        with pytest.raises(ConfigError, match=rf"distill\.methods\.vanilla\.{key}\b"):
            validate({"distill": {"methods": {"vanilla": bad}}}, deep=False)


def test_logit_standardization_by_hand():
    z = S.numpy()
    std = np.array([(r - r.mean()) / (np.std(r, ddof=1) + 1e-7) for r in z])
    assert np.allclose(standardize(S).numpy(), std)
    temp = 2.0
    zt = np.array([(r - r.mean()) / (np.std(r, ddof=1) + 1e-7) for r in T.numpy()])
    expected = _kl_rows(np.array([_softmax(r / temp) for r in zt]), np.array([_softmax(r / temp) for r in std]))
    cfg = _cfg("kd", logit_standardization=True, kd_temperature=temp, kd_weight=9.0, ce_weight=0.1)
    losses = METHODS["kd"](cfg, _out(S), _out(T), 2)(_out(S), _out(T), Y, torch.arange(2))
    assert losses["kd"].item() == pytest.approx(9.0 * expected * temp**2)
    # shifting and scaling a row changes nothing after standardisation
    assert torch.allclose(standardize(3 * S + 7), standardize(S))


def test_fitnet_loss_by_hand():
    a, b = _rand(2, 3, 2, 2), _rand(2, 3, 2, 2, seed=1)
    expected = sum((x - y) ** 2 for x, y in zip(a.flatten().tolist(), b.flatten().tolist())) / a.numel()
    assert fitnet_loss(a, b).item() == pytest.approx(expected)


def _bn_train(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """BatchNorm2d in training mode with γ = 1, β = 0: per channel, over batch and space, biased variance."""
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


def test_fitnet_regressor_and_loss_by_hand():
    """Same size: the reference regressor is a 1×1 conv + BN + ReLU; 2× apart: strided / transposed conv."""
    s_map, t_map = _rand(4, 3, 2, 2), _rand(4, 5, 2, 2, seed=1)
    feats = lambda m: [m, m, m, m.mean((2, 3))]  # noqa: E731 - the hint layer (2) is the one read
    fitnet = METHODS["fitnet"](_cfg("fitnet"), _out(S, feats(s_map)), _out(T, feats(t_map)), 4).double()
    conv = fitnet.connector.conv
    assert isinstance(conv, torch.nn.Conv2d) and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
    w = conv.weight.detach().numpy()[:, :, 0, 0]  # (5, 3)
    regressed = np.maximum(_bn_train(np.einsum("oc,bchw->bohw", w, s_map.numpy())), 0.0)
    expected = ((regressed - t_map.numpy()) ** 2).mean()
    loss = fitnet.method_loss(_out(S, feats(s_map)), _out(T, feats(t_map)), Y, torch.arange(2))
    assert loss.item() == pytest.approx(expected, rel=1e-9)

    down, up = HintRegressor((3, 8, 8), (5, 4, 4), relu=True), HintRegressor((3, 4, 4), (5, 8, 8), relu=True)
    assert down.conv.kernel_size == (3, 3) and down.conv.stride == (2, 2)
    assert isinstance(up.conv, torch.nn.ConvTranspose2d) and up.conv.kernel_size == (4, 4)
    assert down(torch.randn(2, 3, 8, 8)).shape == (2, 5, 4, 4) and up(torch.randn(2, 3, 4, 4)).shape == (2, 5, 8, 8)
    odd = HintRegressor((3, 6, 6), (5, 4, 4), relu=False)  # not a reference case: resized, then 1×1
    assert odd.conv.kernel_size == (1, 1) and odd(torch.randn(2, 3, 6, 6)).shape == (2, 5, 4, 4)


def test_ab_connects_matching_maps_directly():
    """RepDistiller's AB has no connector where the student's and teacher's maps have the same shape."""
    s_pre = [_rand(2, 4, 4, 4, seed=k) for k in range(3)]
    t_pre = [_rand(2, 4, 4, 4, seed=10 + k) for k in range(2)] + [_rand(2, 6, 4, 4, seed=12)]
    student = ModelOutput(S, [s.relu() for s in s_pre] + [S], [*s_pre, S])
    teacher = ModelOutput(T, [t.relu() for t in t_pre] + [T], [*t_pre, T])
    ab = METHODS["ab"](_cfg("ab"), student, teacher, 4).double()
    assert isinstance(ab.connectors[0], torch.nn.Identity)  # stage 1: (4, 4, 4) both
    assert isinstance(ab.connectors[1], HintRegressor) and not ab.connectors[1].relu  # stage 2: 4 vs 6 channels
    loss = ab.init_loss(student, teacher, Y, torch.arange(2))
    expected = ab_loss([s_pre[1], ab.connectors[1](s_pre[2])], [t_pre[1], t_pre[2]], margin=1.0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)


def _attention(f: np.ndarray, p: float) -> np.ndarray:
    b, c, h, w = f.shape
    out = np.zeros((b, h * w))
    for i in range(b):
        for k in range(h * w):
            out[i, k] = sum(abs(f[i, ch].flat[k]) ** p for ch in range(c)) / c
        out[i] /= max(np.sqrt((out[i] ** 2).sum()), 1e-12)
    return out


def _avgpool2(f: np.ndarray) -> np.ndarray:
    b, c, h, w = f.shape
    return f.reshape(b, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))


def test_at_loss_by_hand():
    s, t = _rand(2, 3, 4, 4), _rand(2, 5, 2, 2, seed=1)  # student map pooled to the teacher's 2×2
    expected = ((_attention(_avgpool2(s.numpy()), 2) - _attention(t.numpy(), 2)) ** 2).mean()
    assert at_loss(s, t, 2).item() == pytest.approx(expected)


def test_student_loss_is_gamma_ce_plus_alpha_kd_plus_beta_method_by_hand():
    """The three named terms of a feature method (AT, two stages) with γ, α and β all non-zero."""
    stages_s, stages_t = [_rand(2, 3, 4, 4), _rand(2, 3, 2, 2, seed=1)], [_rand(2, 5, 2, 2, seed=2),
                                                                         _rand(2, 4, 2, 2, seed=3)]
    student = _out(S, [_rand(2, 3, 4, 4, seed=4), *stages_s, S])
    teacher = _out(T, [_rand(2, 3, 4, 4, seed=5), *stages_t, T])
    gamma, alpha, beta, temp = 0.3, 0.7, 250.0, 3.0
    cfg = _cfg("at", ce_weight=gamma, kd_weight=alpha, weight=beta, kd_temperature=temp)
    losses = METHODS["at"](cfg, student, teacher, 2)(student, teacher, Y, torch.arange(2))
    at_hand = sum(((_attention(_avgpool2(a.numpy()) if a.shape[-1] > b.shape[-1] else a.numpy(), 2)
                    - _attention(b.numpy(), 2)) ** 2).mean() for a, b in zip(stages_s, stages_t))
    ce = np.mean([-math.log(_softmax(r)[y]) for r, y in zip(S.numpy(), Y.tolist())])
    kd = _kl_rows(np.array([_softmax(r / temp) for r in T.numpy()]),
                  np.array([_softmax(r / temp) for r in S.numpy()])) * temp**2
    assert set(losses) == {"ce", "kd", "at"}
    assert losses["ce"].item() == pytest.approx(gamma * ce)
    assert losses["kd"].item() == pytest.approx(alpha * kd)
    assert losses["at"].item() == pytest.approx(beta * at_hand)


def test_sp_loss_by_hand():
    s, t = _rand(3, 2, 2, 2), _rand(3, 4, 1, 1, seed=1)

    def gram(f: np.ndarray) -> np.ndarray:
        f = f.reshape(len(f), -1)
        g = np.array([[float(np.dot(f[i], f[j])) for j in range(len(f))] for i in range(len(f))])
        return g / np.linalg.norm(g, axis=1, keepdims=True)

    expected = ((gram(s.numpy()) - gram(t.numpy())) ** 2).sum() / 9
    assert sp_loss(s, t).item() == pytest.approx(expected)


def test_cc_loss_by_hand():
    e_s, e_t = S, T  # three "samples" would need B=3; use B=2 (one consecutive pair)
    d = np.abs(e_s.numpy() - e_t.numpy())
    expected = sum(d[0, k] * d[1, k] for k in range(3)) / 1
    assert cc_loss(e_s, e_t).item() == pytest.approx(expected)
    e3_s, e3_t = _rand(3, 2), _rand(3, 2, seed=1)
    d3 = np.abs(e3_s.numpy() - e3_t.numpy())
    assert cc_loss(e3_s, e3_t).item() == pytest.approx((d3[0] @ d3[1] + d3[1] @ d3[2]) / 2)


def test_vid_loss_by_hand():
    mean, target = _rand(2, 3, 1, 2), _rand(2, 3, 1, 2, seed=1)
    var = torch.tensor([0.5, 2.0, 4.0], dtype=torch.float64)
    total = 0.0
    for idx in np.ndindex(*mean.shape):
        v = var[idx[1]].item()
        total += 0.5 * ((mean[idx].item() - target[idx].item()) ** 2 / v + math.log(v))
    assert vid_loss(mean, target, var).item() == pytest.approx(total / mean.numel())
    reg = VIDRegressor(4, 3, 3, init_var=5.0, eps=1e-5)
    assert torch.allclose(reg.variance(), torch.full((3,), 5.0))


def _smooth_l1(a: np.ndarray, b: np.ndarray) -> float:
    d = np.abs(a - b).ravel()
    return float(np.mean([0.5 * x * x if x < 1 else x - 0.5 for x in d]))


def test_rkd_loss_by_hand():
    e_s, e_t = _rand(3, 2), _rand(3, 4, seed=1)

    def distances(e: np.ndarray) -> np.ndarray:
        n = len(e)
        d = np.array([[math.dist(e[i], e[j]) for j in range(n)] for i in range(n)])
        return d / d[~np.eye(n, dtype=bool)].mean()

    def angles(e: np.ndarray) -> np.ndarray:
        n = len(e)
        out = np.zeros((n, n, n))
        for j in range(n):
            for i in range(n):
                for k in range(n):
                    u, v = e[i] - e[j], e[k] - e[j]
                    nu, nv = max(np.linalg.norm(u), 1e-12), max(np.linalg.norm(v), 1e-12)
                    out[j, i, k] = float(np.dot(u / nu, v / nv))
        return out

    s, t = e_s.numpy(), e_t.numpy()
    expected = 25 * _smooth_l1(distances(s), distances(t)) + 50 * _smooth_l1(angles(s), angles(t))
    assert rkd_loss(e_s, e_t, 25.0, 50.0).item() == pytest.approx(expected, rel=1e-6)


def test_pkt_loss_by_hand():
    e_s, e_t = _rand(3, 2), _rand(3, 4, seed=1)
    eps = 1e-7

    def cond(e: np.ndarray) -> np.ndarray:
        n = len(e)
        # each embedding divided by its norm + ε, as the reference does: near cos = -1 (p ~ 1e-3 here) ε moves the
        # loss by 1e-5 of itself, so an exact cosine would need a tolerance fitted to that; with it, float64 agrees
        norm = [np.linalg.norm(v) + eps for v in e]
        k = np.array([[1 + np.dot(e[i], e[j]) / (norm[i] * norm[j]) for j in range(n)] for i in range(n)])
        return k / k.sum(1, keepdims=True)

    p_s, p_t = cond(e_s.numpy()), cond(e_t.numpy())
    expected = np.mean(p_t * np.log((p_t + eps) / (p_s + eps)))
    assert pkt_loss(e_s, e_t).item() == pytest.approx(expected, rel=1e-9)


def test_ab_loss_by_hand():
    s1, t1 = _rand(2, 2, 2, 2), _rand(2, 2, 2, 2, seed=1)
    s2, t2 = _rand(2, 3, 1, 1, seed=2), _rand(2, 3, 1, 1, seed=3)
    margin = 1.0

    def stage(s: np.ndarray, t: np.ndarray) -> float:
        total = 0.0
        for x, y in zip(s.ravel(), t.ravel()):
            if y > 0 and x <= margin:
                total += (x - margin) ** 2
            elif y <= 0 and x > -margin:
                total += (x + margin) ** 2
        return total

    expected = (0.5 * stage(s1.numpy(), t1.numpy()) + 1.0 * stage(s2.numpy(), t2.numpy())) / 2 * 3 / 1000
    assert ab_loss([s1, s2], [t1, t2], margin).item() == pytest.approx(expected)


def test_factor_loss_by_hand():
    s, t = _rand(2, 3, 2, 2), _rand(2, 4, 2, 2, seed=1)
    expected = np.abs(_attention(s.numpy(), 2) - _attention(t.numpy(), 2)).mean()
    assert factor_loss(s, t).item() == pytest.approx(expected)


def test_fsp_loss_by_hand():
    fs = [_rand(2, 2, 4, 4), _rand(2, 3, 2, 2, seed=1)]
    ft = [_rand(2, 2, 4, 4, seed=2), _rand(2, 3, 2, 2, seed=3)]

    def fsp(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # a: bottom (pooled to b's size), b: top
        a = _avgpool2(a)
        g = np.zeros((a.shape[0], b.shape[1], a.shape[1]))
        for n in range(a.shape[0]):
            for i in range(b.shape[1]):
                for j in range(a.shape[1]):
                    g[n, i, j] = (b[n, i] * a[n, j]).mean()
        return g

    gs, gt = fsp(fs[0].numpy(), fs[1].numpy()), fsp(ft[0].numpy(), ft[1].numpy())
    assert fsp_loss(fs, ft).item() == pytest.approx(((gs - gt) ** 2).mean())


def test_nst_loss_by_hand():
    s, t = _rand(2, 2, 2, 2), _rand(2, 3, 2, 2, seed=1)

    def unit_rows(f: np.ndarray) -> np.ndarray:
        f = f.reshape(f.shape[0], f.shape[1], -1)
        return f / np.linalg.norm(f, axis=2, keepdims=True)

    a, b = unit_rows(s.numpy()), unit_rows(t.numpy())

    def kmean(x: np.ndarray, y: np.ndarray) -> float:
        vals = [float(np.dot(x[n, i], y[n, j])) ** 2 for n in range(len(x)) for i in range(x.shape[1])
                for j in range(y.shape[1])]
        return float(np.mean(vals))

    expected = kmean(b, b) + kmean(a, a) - 2 * kmean(a, b)
    assert nst_loss(s, t).item() == pytest.approx(expected)


def test_crd_nce_loss_and_memory_by_hand():
    scores = torch.tensor([[0.9, 0.2, 0.05], [0.3, 0.6, 0.01]], dtype=torch.float64)
    n, m, eps = 10, 2, 1e-7
    noise = m / n
    total = 0.0
    for row in scores.tolist():
        total += math.log(row[0] / (row[0] + noise + eps))
        total += sum(math.log(noise / (x + noise + eps)) for x in row[1:])
    assert nce_loss(scores, n).item() == pytest.approx(-total / 2)

    torch.manual_seed(0)
    cfg = _cfg("crd", feat_dim=4, nce_k=3)
    s_out, t_out = _out(S.float(), [_rand(2, 6).float()]), _out(T.float(), [_rand(2, 5, seed=1).float()])
    crd = CRD(cfg, s_out, t_out, num_samples=8)
    before_s, before_t = crd.memory_s.clone(), crd.memory_t.clone()
    idx = torch.tensor([5, 1])
    neg = crd.draw_negatives(2, torch.device("cpu"))
    crd.draws.zero_()  # replay the same negatives: draws are seeded by (seed, draw count)
    loss = crd.method_loss(s_out, t_out, Y, idx)
    assert torch.isfinite(loss) and crd.z_s > 0 and crd.z_t > 0
    # recompute the student-anchor scores by hand from the bank before the update
    v_s, v_t = crd.embed_s(s_out.feats[-1]).detach(), crd.embed_t(t_out.feats[-1]).detach()
    full = torch.cat([idx.view(-1, 1), neg], 1)
    raw = [[math.exp(float(before_t[j] @ v_s[i]) / 0.07) for j in full[i].tolist()] for i in range(2)]
    raw_t = [[math.exp(float(before_s[j] @ v_t[i]) / 0.07) for j in full[i].tolist()] for i in range(2)]
    # Z: fixed on the first batch to (mean of its exp-scores) × number of samples
    z_s, z_t = float(np.mean(raw)) * 8, float(np.mean(raw_t)) * 8
    # float32 dots of bank rows (uniform init: norm < 1.8) with unit embeddings err by ~2·eps32·1.8 ≈ 4.3e-7;
    # exp(·/0.07) makes that 6e-6 of each score, and of Z. The loss (≈ 27) averages 16 logs of score / Z over its
    # 2 rows, each off by ≤ 1.2e-5: ≤ 1e-4, 4e-6 of it
    assert crd.z_s.item() == pytest.approx(z_s, rel=1e-5) and crd.z_t.item() == pytest.approx(z_t, rel=1e-5)
    manual = [[v / z_s for v in row] for row in raw]
    manual_t = [[v / z_t for v in row] for row in raw_t]
    expected = nce_loss(torch.tensor(manual), 8) + nce_loss(torch.tensor(manual_t), 8)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    for k, i in enumerate(idx.tolist()):  # unit rows in float32: a few eps32 (1.2e-7) per entry
        row = before_s[i] * 0.5 + v_s[k] * 0.5
        assert torch.allclose(crd.memory_s[i], row / row.norm(), atol=1e-6)
        row_t = before_t[i] * 0.5 + v_t[k] * 0.5
        assert torch.allclose(crd.memory_t[i], row_t / row_t.norm(), atol=1e-6)
    untouched = [i for i in range(8) if i not in idx.tolist()]
    assert torch.equal(crd.memory_s[untouched], before_s[untouched])
    assert torch.equal(crd.memory_t[untouched], before_t[untouched])


def test_dkd_loss_by_hand():
    temp, a, b = 2.0, 1.0, 8.0
    tckd = nckd = 0.0
    for zs, zt, y in zip(S.numpy(), T.numpy(), Y.tolist()):
        ps, pt = _softmax(zs / temp), _softmax(zt / temp)
        bs, bt = [ps[y], 1 - ps[y]], [pt[y], 1 - pt[y]]
        tckd += sum(q * math.log(q / r) for q, r in zip(bt, bs))
        others = [c for c in range(3) if c != y]
        qs, qt = _softmax(zs[others] / temp), _softmax(zt[others] / temp)  # softmax over non-targets only
        nckd += sum(q * math.log(q / r) for q, r in zip(qt, qs))
    expected = (a * tckd + b * nckd) / 2 * temp**2
    assert dkd_loss(S, T, Y, a, b, temp).item() == pytest.approx(expected, rel=1e-6)

    cfg = _cfg("dkd", kd_temperature=temp, warmup_epochs=4)
    dkd = DKD(cfg, _out(S), _out(T), 2)
    assert dkd.method_loss(_out(S), _out(T), Y, Y).item() == pytest.approx(expected / 4, rel=1e-6)
    dkd.end_epoch(2)  # third epoch: 3/4 of the weight; the counter is saved with the method
    assert dkd.method_loss(_out(S), _out(T), Y, Y).item() == pytest.approx(expected * 3 / 4, rel=1e-6)
    assert dkd.state_dict()["epochs_done"].item() == 2
    dkd.end_epoch(10)
    assert dkd.method_loss(_out(S), _out(T), Y, Y).item() == pytest.approx(expected, rel=1e-6)
    std = DKD({**cfg, "logit_standardization": True}, _out(S), _out(T), 2)
    std.end_epoch(10)
    assert std.method_loss(_out(S), _out(T), Y, Y).item() == pytest.approx(
        dkd_loss(standardize(S), standardize(T), Y, a, b, temp).item())


def test_dist_loss_by_hand():
    temp = 2.0
    z_s, z_t = 3 * _rand(4, 3), 3 * _rand(4, 3, seed=1)  # 4 samples so the per-class correlations are not ±1
    ys = np.array([_softmax(r / temp) for r in z_s.numpy()])
    yt = np.array([_softmax(r / temp) for r in z_t.numpy()])

    def pearson(a: np.ndarray, b: np.ndarray) -> float:
        # with the reference's ε = 1e-8 under the norms' product (~0.1 here: ε moves the loss, a sum of 1 − ρ, by
        # ~1e-6 of itself, as much as the old rel=1e-6 allowed); float64 then agrees
        a, b = a - a.mean(), b - b.mean()
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-8))

    inter = 1 - np.mean([pearson(ys[i], yt[i]) for i in range(4)])
    intra = 1 - np.mean([pearson(ys[:, c], yt[:, c]) for c in range(3)])
    expected = temp**2 * (2 * inter + 3 * intra)
    assert dist_loss(z_s, z_t, 2.0, 3.0, temp).item() == pytest.approx(expected, rel=1e-9)


# ---------------------------------------------------------------- 2. one distillation step per method and pair

HETERO = ("vgg8", "MobileNetV2") if {"vgg8", "MobileNetV2"} <= set(MODELS) else ("resnet32x4", "resnet8")
PAIRS = [("resnet20", "resnet8", 16), (*HETERO, 32)]
if {"resnet32x4", "ShuffleNetV2"} <= set(MODELS):
    PAIRS.append(("resnet32x4", "ShuffleNetV2", 16))
SMALL = {"crd": {"nce_k": 32}}  # keep the memory gather tiny


def _step(name: str, teacher_arch: str, student_arch: str, size: int) -> None:
    torch.manual_seed(0)
    teacher, student = build_model(teacher_arch, 10), build_model(student_arch, 10)
    teacher.eval()
    x = torch.randn(3, 3, size, size)
    labels, indices = torch.tensor([0, 3, 7]), torch.tensor([4, 0, 9])
    with torch.no_grad():
        t_sample, s_sample = teacher(x[:2], with_features=True), student.eval()(x[:2], with_features=True)
    student.train()
    cfg = _cfg(name, **SMALL.get(name, {}))
    try:
        method = _with_targets(METHODS[name](cfg, s_sample, t_sample, num_samples=16), 16, 10)
    except ValueError as err:
        assert name == "fsp" and teacher_arch != "resnet20", err  # FSP needs equal channel counts
        return
    teacher_state = copy.deepcopy(teacher.state_dict())
    params = [*student.parameters(), *method.parameters()]
    opt = torch.optim.SGD(params, lr=0.01)
    reached: set[str] = set()
    phases = [lambda s, t: method(s, t, labels, indices)]
    if isinstance(method, StagedMethod):
        init = InitStage(method)
        phases.insert(0, lambda s, t: init(s, t, labels, indices))
    for phase in phases:
        with torch.no_grad():
            t_out = teacher(x, with_features=method.needs_features)
        if not method.needs_features:
            t_out = ModelOutput(t_out, [], [])
        s_raw = student(x, with_features=method.needs_features)
        s_out = s_raw if method.needs_features else ModelOutput(s_raw, [], [])
        losses = phase(s_out, t_out)
        total = torch.stack(list(losses.values())).sum()
        assert torch.isfinite(total), (name, losses)
        opt.zero_grad(set_to_none=True)
        total.backward()
        reached |= {n for n, p in method.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        opt.step()
        if isinstance(method, StagedMethod) and phase is phases[0]:
            method.end_init()
    # main phase: CE reaches every student parameter
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in student.parameters()), name
    assert reached == {n for n, _ in method.named_parameters()}, (name, reached)
    assert all(torch.equal(v, teacher_state[k]) for k, v in teacher.state_dict().items()), name
    assert all(p.grad is None for p in teacher.parameters())


@pytest.mark.parametrize("teacher_arch,student_arch,size", PAIRS, ids=lambda v: str(v))
@pytest.mark.parametrize("name", sorted(METHODS))
def test_one_distillation_step(name: str, teacher_arch: str, student_arch: str, size: int):
    _step(name, teacher_arch, student_arch, size)


STAGES = {("feats", 1), ("feats", 2), ("feats", 3)}  # a CIFAR ResNet: stem, three stages, pooled (feats[1:-1])
# which outputs each method reads, per the reference code (RepDistiller's train_student.py / mdistiller)
READS = {
    "vanilla": set(),  # not even the logits: see test_vanilla_loss_is_cross_entropy_and_never_reads_the_teacher
    "kd": set(), "dkd": set(), "dist": set(),
    "fitnet": {("feats", 2)},  # hint_layer 2
    "at": STAGES, "nst": STAGES, "vid": STAGES,
    "ab": {("preact", 1), ("preact", 2), ("preact", 3)},  # the stages before their last ReLU
    "sp": {("feats", 3)}, "ft": {("feats", 3)},  # feats[-2], the last stage
    "fsp": {("feats", 0)} | STAGES,  # feats[:-1]
    "cc": {("pooled",)}, "rkd": {("pooled",)}, "pkt": {("pooled",)}, "crd": {("pooled",)},
    "oracle": set(), "filter_kd": set(),  # targets by index: see test_soft_target_methods_never_read_the_teacher
}


def _perturbed(out: ModelOutput, where: tuple) -> ModelOutput:
    feats, preacts = list(out.feats), list(out.preact_feats)
    noise = lambda t: t + torch.randn(t.shape, generator=torch.Generator().manual_seed(7))  # noqa: E731
    if where == ("pooled",):
        feats[-1] = preacts[-1] = noise(feats[-1])
    elif where[0] == "feats":
        feats[where[1]] = noise(feats[where[1]])
    else:
        preacts[where[1]] = noise(preacts[where[1]])
    return ModelOutput(out.logits, feats, preacts)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_method_reads_the_reference_features(name: str):
    """Perturb one feature map at a time, of the student and then of the teacher: a method's loss (init stage
    included) must change exactly for the maps the reference reads."""
    assert set(READS) == set(METHODS)
    torch.manual_seed(0)
    teacher, student = build_model("resnet20", 10).eval(), build_model("resnet8", 10)
    x, labels, indices = torch.randn(4, 3, 8, 8), torch.tensor([0, 3, 7, 1]), torch.tensor([4, 0, 9, 2])
    with torch.no_grad():
        t_out, s_out = teacher(x, with_features=True), student(x, with_features=True)
    method = METHODS[name](_cfg(name, **SMALL.get(name, {})), s_out, t_out, num_samples=16)

    def losses(s: ModelOutput, t: ModelOutput) -> list[torch.Tensor]:
        fresh = copy.deepcopy(method)  # memory banks and negative draws start from the same state each time
        with torch.no_grad():
            out = [fresh.method_loss(s, t, labels, indices)]
            if isinstance(fresh, StagedMethod):
                out.append(fresh.init_loss(s, t, labels, indices))
        return [v for v in out if v is not None]

    base = losses(s_out, t_out)
    places = [("feats", k) for k in range(len(s_out.feats) - 1)]
    places += [("preact", k) for k in range(len(s_out.feats) - 1)] + [("pooled",)]
    for side in ("student", "teacher"):
        read = set()
        for where in places:
            s, t = (_perturbed(s_out, where), t_out) if side == "student" else (s_out, _perturbed(t_out, where))
            if any(not torch.allclose(a, b, rtol=1e-6, atol=0) for a, b in zip(losses(s, t), base)):
                read.add(where)
        assert read == READS[name], (side, sorted(read))


def test_fitnet_hint_layer_out_of_range_is_named():
    with torch.no_grad():
        out = build_model("resnet8", 10).eval()(torch.zeros(2, 3, 8, 8), with_features=True)
    for layer in (4, 9):  # 4 is the pooled vector, not a map
        with pytest.raises(ValueError, match=f"fitnet.hint_layer={layer} is out of range: .* maps 0..3"):
            METHODS["fitnet"](_cfg("fitnet", hint_layer=layer), out, out, 16)


def test_fsp_rejects_mismatched_channels():
    with torch.no_grad():
        t = build_model("resnet32x4", 10).eval()(torch.zeros(2, 3, 16, 16), with_features=True)
        s = build_model("resnet8", 10).eval()(torch.zeros(2, 3, 16, 16), with_features=True)
    with pytest.raises(ValueError, match="channel"):
        METHODS["fsp"](_cfg("fsp"), s, t, 16)


# ---------------------------------------------------------------- 3. registry and schema

def test_registry_matches_schema_and_defaults_fill():
    methods = load_schema()["properties"]["distill"]["properties"]["methods"]
    assert set(METHODS) == set(methods["properties"])
    for name, cls in METHODS.items():
        assert cls.name == name == name.lower()
        cfg = _cfg(name)
        props = methods["properties"][name]["properties"]
        assert set(cfg) == set(props), name  # every key has a default
        assert all(props[k].get("description") for k in props), name
        if name == "vanilla":  # CE only: no KD or method weight that could add a teacher term
            assert cfg == {"ce_weight": 1.0}
            continue
        if issubclass(cls, SoftTargetMethod):  # CE + the KL to the targets: no method term to weigh
            assert set(cfg) == {"ce_weight", "kd_weight", "kd_temperature"}, name
            continue
        for key in ("ce_weight", "kd_weight", "kd_temperature", "weight"):
            assert key in cfg, (name, key)
    assert validate({"distill": {"methods": {"kd": {}}}}, deep=False)["distill"]["methods"]["kd"] == {
        "ce_weight": 0.5, "kd_weight": 0.5, "kd_temperature": 4.0, "weight": 0.0, "logit_standardization": False}


def test_pair_validation_instantiates_every_method():
    cfg = {"teacher": {"archs": ["resnet20"], "filter_table": {}},
           "distill": {"students": ["resnet8"], "methods": {name: {} for name in METHODS}}}
    validate(cfg)  # deep: every method on the pair
    bad = {"teacher": {"archs": ["resnet32x4"]}, "distill": {"students": ["resnet8"], "methods": {"fsp": {}}}}
    with pytest.raises(ValueError, match="distill.methods.fsp: cannot distil resnet32x4 -> resnet8"):
        validate(bad)
