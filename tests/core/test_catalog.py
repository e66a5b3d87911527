"""The method catalog: every method's options written once, parsed once, and a fourth method seen
by the command line without touching anything outside inspector/core/methods."""

from dataclasses import dataclass

import pytest

from inspector.cli import build_parser, main
from inspector.core.errors import InspectorError
from inspector.core.methods import catalog, get_method
from inspector.core.methods.catalog import MethodInfo, option


def test_the_built_in_methods_and_what_they_declare():
    assert catalog.names()[:3] == ["patchcore", "npad", "apc"]
    assert [m.name for m in catalog.methods() if m.needs_anomalies] == ["apc"]
    assert catalog.get("patchcore").main_options == ("coreset_ratio",)
    assert catalog.get("npad").main_options == ("k_channels", "shifts")
    assert catalog.get("apc").main_options == ("epochs", "coreset_ratio")
    # APC carries PatchCore's options (its own batch_size wins)
    apc = {s.name: s for s in catalog.get("apc").option_specs()}
    assert {"coreset_ratio", "index", "epochs"} <= set(apc) and apc["batch_size"].default == 8
    assert "labelled_anomalies" in catalog.get("apc").shared_settings
    assert "labelled_anomalies" not in catalog.get("npad").shared_settings
    with pytest.raises(InspectorError, match="unknown method 'nope'"):
        catalog.get("nope")


@pytest.mark.parametrize("name", ["patchcore", "npad", "apc"])
def test_defaults_pass_their_own_checks_and_build_the_method(name):
    info = catalog.get(name)
    for spec in info.option_specs():          # ranges and choices hold for every default
        assert spec.coerce(spec.default, info.label) == spec.default, spec.name
    built = info.options.from_dict({})
    assert catalog.options_dict(built) == {**{k: (list(v) if isinstance(v, tuple) else v)
                                              for k, v in info.defaults().items()},
                                           **({"batch_size": 8} if name == "apc" else {})}
    assert get_method(name).name == name      # the implementation the entry names registers it


def test_options_are_typed_and_checked_from_text():
    assert catalog.parse_options("patchcore", ["coreset_ratio=0.25", "strides=8,16", "nprobe=none",
                                               "reweight=false", "index=exact"]) == {
        "coreset_ratio": 0.25, "strides": (8, 16), "nprobe": None, "reweight": False, "index": "exact"}
    # aliases take their target's type; the radius reading adds one
    assert catalog.parse_options("npad", ["k=20", "r_train=1"]) == {"k": 20, "r_train": 1}
    assert catalog.get("npad").options.from_dict({"k": 20, "r_train": 1}).train_size == 2
    # the items win over the shared flags' values
    assert catalog.parse_options("apc", ["coreset_ratio=0.3"], {"coreset_ratio": 0.5}) == {"coreset_ratio": 0.3}


@pytest.mark.parametrize("method, items, message", [
    ("npad", ["k_chanels=3"], "unknown N-pad option(s): k_chanels; did you mean k_channels? (its options: "),
    ("npad", ["coreset_ratio=0.1"], "unknown N-pad option(s): coreset_ratio"),
    ("patchcore", ["coreset_ratio=7"], "PatchCore option coreset_ratio must be in (0, 1] (got 7)"),
    ("patchcore", ["index=kdtree"], "PatchCore option index must be one of ivf-refine, exact, ivf, hnsw"),
    ("patchcore", ["d=1.5"], "PatchCore option d must be a whole number (got 1.5)"),
    ("patchcore", ["reweight=maybe"], "PatchCore option reweight must be true or false"),
    ("npad", ["agg_size=4"], "N-pad option agg_size must be odd (got 4)"),
    ("npad", ["r_train=x"], "N-pad option r_train must be a whole number (got x)"),
    ("apc", ["anomalous_fraction=1"], "APC option anomalous_fraction must be in (0, 1) (got 1)"),
    ("apc", ["skips=3"], "APC option skips must be one of 2, 4 (got 3)"),
    ("apc", ["batch_size=1"], "APC option batch_size must be >= 2 (got 1)"),
    ("apc", ["epochs"], "--option needs KEY=VALUE, got 'epochs'"),
])
def test_a_bad_option_is_one_line_naming_it(method, items, message):
    with pytest.raises(InspectorError) as exc:
        catalog.parse_options(method, items)
    text = str(exc.value)
    assert message in text and "\n" not in text


def test_every_command_parses_options_through_the_catalog(tmp_path, capsys):
    """train, evaluate, benchmark and ablation: a typo is one line with the valid options, exit 2,
    before anything is trained."""
    (tmp_path / "good").mkdir()
    for argv in (["train", str(tmp_path / "good"), "-o", str(tmp_path / "m.inspector"), "--method", "npad"],
                 ["evaluate", str(tmp_path), "--method", "npad"],
                 ["benchmark", "--method", "npad"],
                 ["ablation", str(tmp_path)]):
        assert main(argv + ["--option", "k_chanels=3"]) == 2, argv
        out, err = capsys.readouterr()
        assert out == "" and "Traceback" not in err, argv
        assert len(err.strip().splitlines()) == 1 and "did you mean k_channels?" in err, argv


def test_a_shared_flag_for_a_method_without_that_option_is_refused(tmp_path, capsys):
    (tmp_path / "good").mkdir()
    assert main(["train", str(tmp_path / "good"), "-o", str(tmp_path / "m.inspector"), "--method", "npad",
                 "--coreset", "0.2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "inspector: error: --coreset does not apply to N-pad (it is for PatchCore, APC)"


def test_methods_command_lists_a_methods_options(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "npad" in out and "APC: fine-tune on the labelled defects" in out
    assert main(["methods", "npad"]) == 0
    out = capsys.readouterr().out
    assert "k_channels * (default 150; >= 1)" in out and "aliases: r_train = train_size" in out


# -- a fourth method, registered here only --------------------------------------------------------

@dataclass
class DummyOptions:
    radius: int = option(2, "how far the dummy looks", minimum=1, maximum=9, label="Look radius")
    gain: float = option(1.0, "a number", above=0.0)


DUMMY = MethodInfo(name="dummy", label="Dummy", description="a test's own method", options=DummyOptions,
                   implementation="nowhere", main_options=("radius",))


@pytest.fixture
def dummy_method():
    catalog.register(DUMMY)
    yield DUMMY
    catalog.unregister(DUMMY.name)


def _subparser(parser, name):
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices[name]


def test_a_registered_method_reaches_the_command_line(dummy_method, capsys):
    parser = build_parser()
    for command in ("train", "evaluate", "benchmark"):
        sub = _subparser(parser, command)
        method = next(a for a in sub._actions if a.dest == "method")
        assert "dummy" in method.choices and "dummy: Dummy, a test's own method" in method.help
    assert catalog.parse_options("dummy", ["radius=3", "gain=2"]) == {"radius": 3, "gain": 2.0}
    with pytest.raises(InspectorError, match="Dummy option radius must be in \\[1, 9\\] \\(got 10\\)"):
        catalog.parse_options("dummy", ["radius=10"])
    assert main(["methods", "dummy"]) == 0
    assert "radius * (default 2; [1, 9])" in capsys.readouterr().out


def test_a_main_option_cannot_need_torch_to_list_its_choices():
    @dataclass
    class Lazy:
        mode: str = option("a", "x", choices=catalog.Choices("inspector.core.search", "INDEXES"))

    with pytest.raises(ValueError, match="main option mode"):
        catalog.register(MethodInfo("lazy", "Lazy", "", Lazy, "nowhere", main_options=("mode",)))
    assert "lazy" not in catalog.names()


def test_a_method_whose_implementation_is_missing_is_one_clear_error(dummy_method):
    with pytest.raises(InspectorError, match="Dummy cannot be used here: nowhere is missing"):
        get_method("dummy")
