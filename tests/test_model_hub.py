"""A hub model name while the hub cannot be reached: one line within seconds, not a minute of retries."""

import time

import pytest

from lpft.cli import main
from lpft.model import hub as model  # the hub module: the tests patch its globals


@pytest.fixture
def hub(monkeypatch):
    """Point the hub check at an endpoint of our choosing (``set(endpoint, offline)``); clear its cache around."""
    from huggingface_hub import constants

    def set_hub(endpoint: str, offline: bool = False):
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
        for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(var, raising=False)
        model.hub_unreachable.cache_clear()

    yield set_hub
    monkeypatch.undo()
    model.hub_unreachable.cache_clear()


# (endpoint, HF_HUB_OFFLINE, text of the reason)
UNREACHABLE = [
    ("https://huggingface.co", True, "HF_HUB_OFFLINE is set"),
    ("http://127.0.0.1:9", False, "no connection to 127.0.0.1:9"),  # discard port: refused at once
    ("http://no-such-host.invalid", False, "no connection to no-such-host.invalid:80"),  # name not resolved
]


@pytest.mark.parametrize("endpoint,offline,reason", UNREACHABLE, ids=[r for *_, r in UNREACHABLE])
def test_uncached_hub_model_fails_fast_in_one_line(hub, endpoint, offline, reason, polarity_csv, tmp_path, capsys):
    from transformers import AutoTokenizer  # noqa: F401  (its import time is not what we measure)

    hub(endpoint, offline)
    started = time.perf_counter()
    with pytest.raises(model.ModelError, match=reason):
        model.load_tokenizer("no-such-org/no-model")
    assert time.perf_counter() - started < model.HUB_TIMEOUT_S + 1.5

    model.hub_unreachable.cache_clear()
    code = main(["train", "--task", "files", "--train-file", str(polarity_csv), "--model", "no-such-org/no-model",
                 "--out", str(tmp_path / "runs"), "--cache-dir", "none"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("lpft: error: model 'no-such-org/no-model' is not a local folder nor in the Hugging Face")
    assert reason in err[0]
    assert not (tmp_path / "runs").exists()


def test_a_silent_host_is_given_up_after_the_timeout(hub, monkeypatch):
    import socket

    def hang(*args, **kwargs):  # a firewall that drops packets: the connection never answers
        time.sleep(60)

    monkeypatch.setattr(socket, "create_connection", hang)
    monkeypatch.setattr(model, "HUB_TIMEOUT_S", 0.5)
    hub("https://huggingface.co")
    started = time.perf_counter()
    assert "within 0.5 s: timed out" in model.hub_unreachable()
    assert time.perf_counter() - started < 1.5


def test_local_folders_and_a_reachable_hub_need_no_options(hub, monkeypatch, tmp_path):
    hub("https://huggingface.co", offline=True)
    assert model.hub_options(str(tmp_path), str(tmp_path)) == {}  # a folder never asks the hub
    monkeypatch.setattr(model, "hub_unreachable", lambda: None)
    assert model.hub_options("roberta-base", "roberta-base") == {}


def test_a_cached_hub_model_loads_from_the_cache_while_offline(hub, monkeypatch):
    import huggingface_hub

    hub("https://huggingface.co", offline=True)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache",
                        lambda repo, name: f"/cache/models--{repo}/snapshots/x/{name}")
    assert model.hub_options("roberta-base", "roberta-base") == {"local_files_only": True}
