"""The extractor's fast CPU path (backbones.FastForward): BatchNorm folded, channels-last, the same
taps as the plain module, rebuilt when the weights change, never used where it would be wrong."""

import copy
import pickle

import numpy as np
import pytest
import torch

from inspector.core import backbones
from inspector.core.backbones import EAGER_ENV, load_extractor


@pytest.fixture(scope="module")
def extractor():
    ext, _ = load_extractor("mobilenet_v2", (8, 16), random_weights=True, seed=0, device=torch.device("cpu"))
    return ext


def _plain(ext, x):
    out = ext.body(x)                       # the fx graph as built: no folding, no channels-last
    return [out[n] for n in ext._names]


def _frames(shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


@pytest.mark.parametrize("shape", [(4, 3, 96, 96), (1, 3, 64, 80)])
def test_the_fast_path_gives_the_plain_modules_taps(extractor, shape):
    x = _frames(shape)
    with torch.inference_mode():
        fast, plain = extractor(x), _plain(extractor, x)
    assert extractor.__dict__["_fast"]._fast not in (None, False)        # the fast copy was used
    for a, b in zip(fast, plain):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_the_fast_copy_is_not_part_of_the_model(extractor):
    with torch.inference_mode():
        extractor(_frames((1, 3, 64, 64)))
    names = set(extractor.state_dict())
    assert not any("_fast" in n for n in names)
    assert any("running_mean" in n for n in names)       # BatchNorm still in the model's own weights
    clone = copy.deepcopy(extractor)
    assert "_fast" not in clone.__dict__
    assert "_fast" not in pickle.loads(pickle.dumps(extractor)).__dict__


def test_new_weights_loaded_in_place_are_used(extractor):
    ext = copy.deepcopy(extractor).eval()
    x = _frames((2, 3, 64, 64), 1)
    with torch.inference_mode():
        before = ext(x)[0].clone()
    other, _ = load_extractor("mobilenet_v2", (8, 16), random_weights=True, seed=5, device=torch.device("cpu"))
    ext.load_state_dict(other.state_dict())             # as an APC encoder is loaded into a model
    with torch.inference_mode():
        after, expected = ext(x)[0], _plain(ext, x)[0]
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected, rtol=1e-4, atol=1e-4)


def test_training_mode_and_gradients_use_the_module_itself(extractor, monkeypatch):
    calls = []
    real = backbones.FastForward._optimised
    monkeypatch.setattr(backbones.FastForward, "_optimised", lambda self: calls.append(1) or real(self))
    ext = copy.deepcopy(extractor).eval()
    x = _frames((2, 3, 64, 64), 2)
    ext.train()
    with torch.no_grad():
        ext(x)                              # batch statistics: must not be folded
    ext.eval()
    with torch.enable_grad():
        ext(x)
    monkeypatch.setenv(EAGER_ENV, "1")
    with torch.inference_mode():
        ext(x)
    assert calls == []
    monkeypatch.delenv(EAGER_ENV)
    with torch.inference_mode():
        ext(x)
    assert calls == [1]


def test_a_graph_that_cannot_be_folded_runs_as_it_is(extractor, monkeypatch):
    import torch.fx.experimental.optimization as fxo

    def broken(*a, **k):
        raise RuntimeError("unsupported pattern")

    monkeypatch.setattr(fxo, "fuse", broken)
    ext = copy.deepcopy(extractor).eval()
    x = _frames((1, 3, 64, 64), 3)
    with torch.inference_mode():
        out, plain = ext(x), _plain(ext, x)
    assert ext.__dict__["_fast"]._fast is False
    for a, b in zip(out, plain):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
