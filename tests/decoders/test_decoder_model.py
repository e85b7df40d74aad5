"""Decoder backbones (tiny GPT-2 / Llama / Qwen2): pooling under either padding side, the pad token, position ids,
defaults per architecture, LoRA targets, and the linear probe head against scikit-learn."""

from __future__ import annotations

import pytest
import torch

from lpft.config import ConfigError
from lpft.methods.config import RunConfig
from lpft.methods.lora import apply_lora
from lpft.model import Classifier, default_dropout, default_pooling, is_decoder, load_tokenizer, pool, pool_weights
from tiny_models import DECODER_ARCHS, decoder_tokenizer, tiny_config, tiny_decoder_config

TEXTS = ["good great fine item 1", "bad item", "the movie was not very good 12 13", "poor"]


def tiny_decoder(arch: str, pooling: str | None = None, seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    return Classifier.from_config(tiny_decoder_config(arch), num_labels=2, pooling=pooling).eval()


def test_pool_picks_the_right_positions_under_both_padding_sides():
    torch.manual_seed(0)
    H = torch.randn(3, 5, 4)
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    left = right.flip(-1)
    for b, n in enumerate([3, 5, 1]):
        assert torch.equal(pool(H, right, "last")[b], H[b, n - 1])
        assert torch.equal(pool(H, left, "last")[b], H[b, 4])
        assert torch.equal(pool(H, right, "first")[b], H[b, 0])
        assert torch.equal(pool(H, left, "first")[b], H[b, 5 - n])
        torch.testing.assert_close(pool(H, right, "mean")[b], H[b, :n].mean(0))
        torch.testing.assert_close(pool(H, left, "mean")[b], H[b, 5 - n:].mean(0))
    for pooling in ("first", "last", "mean"):  # the eNTK's top cotangent: pool is linear with these weights
        for mask in (right, left):
            w = pool_weights(mask, pooling, torch.float32)
            torch.testing.assert_close(torch.einsum("bt,bth->bh", w, H), pool(H, mask, pooling))
    with pytest.raises(ValueError, match="pooling 'cls' is unknown"):
        pool(H, right, "cls")


def test_architecture_defaults():
    assert [is_decoder(tiny_decoder_config(a)) for a in DECODER_ARCHS] == [True] * 3
    assert not is_decoder(tiny_config("bert")) and not is_decoder(tiny_config("roberta"))
    assert default_pooling(tiny_decoder_config("gpt2")) == "last" and default_pooling(tiny_config()) == "first"
    assert default_dropout(tiny_decoder_config("gpt2")) == pytest.approx(0.1)  # resid_pdrop
    assert default_dropout(tiny_decoder_config("llama")) == 0.0  # trained without dropout
    assert default_dropout(tiny_config("bert")) == pytest.approx(0.1)  # hidden_dropout_prob
    clf = tiny_decoder("llama")
    assert clf.pooling == "last" and clf.causal and clf.backbone.config.use_cache is False
    assert Classifier.from_config(tiny_config("bert"), 2).pooling == "first"


def test_load_tokenizer_sets_a_pad_token(decoder_dirs):
    assert decoder_tokenizer().pad_token is None
    tok = load_tokenizer(str(decoder_dirs["llama"]))
    assert tok.pad_token == "</s>" and tok.pad_token_id == 2


@pytest.mark.parametrize("arch", DECODER_ARCHS)
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_left_and_right_padding_give_the_same_features(arch, pooling):
    # float32 as in use (in float64, transformers' eager Llama mask turns fully masked left-pad rows into NaN)
    clf = tiny_decoder(arch, pooling)
    feats = {}
    for side in ("right", "left"):
        tokenizer = decoder_tokenizer(side)
        tokenizer.pad_token = tokenizer.eos_token
        batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
        assert (batch["attention_mask"][:, 0 if side == "left" else -1] == 0).any()  # really padded
        with torch.no_grad():
            feats[side] = clf.features(**batch)
    alone = torch.cat([clf.features(**decoder_tokenizer()([t], return_tensors="pt")) for t in TEXTS]).detach()
    torch.testing.assert_close(feats["left"], feats["right"], rtol=0, atol=1e-5)
    torch.testing.assert_close(feats["right"], alone, rtol=0, atol=1e-5)
    if pooling == "last":  # and it is the last real token's hidden state
        batch = decoder_tokenizer()(TEXTS[:1], return_tensors="pt")
        hidden = clf.backbone(**batch).last_hidden_state[0, -1]
        torch.testing.assert_close(feats["right"][0], hidden.detach(), rtol=0, atol=1e-6)


def test_without_position_ids_left_padding_would_change_gpt2_features():
    """Why features() passes position ids: GPT-2 alone counts its absolute positions from the left edge."""
    clf = tiny_decoder("gpt2")
    tokenizer = decoder_tokenizer("left")
    tokenizer.pad_token = tokenizer.eos_token
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        raw = pool(clf.backbone(**batch).last_hidden_state, batch["attention_mask"], "last")
        ours = clf.features(**batch)
    assert (raw - ours).abs().max() > 1e-4


@pytest.mark.parametrize("arch, expected", [("gpt2", {"c_attn"}), ("llama", {"q_proj", "v_proj"}),
                                            ("qwen2", {"q_proj", "v_proj"})])
def test_lora_wraps_peft_default_modules(arch, expected):
    clf = apply_lora(tiny_decoder(arch), r=4, alpha=8, seed=0)
    wrapped = {n.split(".")[-1] for n, m in clf.backbone.named_modules() if hasattr(m, "lora_A")}
    assert wrapped == expected
    trainable = [n for n, p in clf.backbone.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert len(trainable) == 2 * 2 * len(expected)  # A and B per adapted module per layer
    assert all(p.requires_grad for p in clf.head.parameters())


def test_lora_targets_override_and_bad_names():
    clf = apply_lora(tiny_decoder("llama"), r=4, seed=0, targets="q_proj, k_proj,o_proj")
    wrapped = {n.split(".")[-1] for n, m in clf.backbone.named_modules() if hasattr(m, "lora_A")}
    assert wrapped == {"q_proj", "k_proj", "o_proj"}
    with pytest.raises(ConfigError, match="--lora-targets query,value"):
        apply_lora(tiny_decoder("llama"), targets="query,value")


def test_lora_at_init_leaves_logits_unchanged():
    clf = tiny_decoder("gpt2")
    batch = decoder_tokenizer()(TEXTS[:1], return_tensors="pt")
    with torch.no_grad():
        before = clf(**batch)
        after = apply_lora(clf, seed=3)(**batch)
    torch.testing.assert_close(before, after, rtol=0, atol=1e-6)


def test_run_config_pooling_and_targets(decoder_dirs, tiny_bert_dir):
    dec = RunConfig(model=str(decoder_dirs["gpt2"]), method="lora")
    assert dec.resolved().pooling == "last"
    assert RunConfig(model=str(tiny_bert_dir)).resolved().pooling == "first"
    assert RunConfig(model=str(tiny_bert_dir), pooling="MEAN").resolved().pooling == "mean"
    with pytest.raises(ConfigError, match="--pooling 'cls' is unknown"):
        RunConfig(model=str(tiny_bert_dir), pooling="cls").resolved()
    assert RunConfig(lora_targets=" q_proj , v_proj").resolved().lora_targets == "q_proj,v_proj"
    with pytest.raises(ConfigError, match="--lora-targets"):
        RunConfig(lora_targets="q_proj,,v_proj").resolved()
    # the architecture's default pooling, given or not, is the same run; another pooling is another run
    r = dec.resolved()
    assert r.run_key() == RunConfig(model=str(decoder_dirs["gpt2"]), method="lora", pooling="last").resolved().run_key()
    assert r.run_key() != RunConfig(model=str(decoder_dirs["gpt2"]), method="lora", pooling="mean").resolved().run_key()


def test_encoder_run_keys_unchanged():
    """Options added for decoders stay out of the key at their defaults: earlier encoder runs keep their folders.
    (The protocol defaults changed since — normal head init, gradient clipping — so the earlier computation is the
    one with the legacy protocol, lpft.methods.config.LEGACY_PROTOCOL, and only it keeps the earlier key.)"""
    from lpft.methods.config import LEGACY_PROTOCOL

    # keys computed by the code before pooling / lora_targets existed
    assert RunConfig(**LEGACY_PROTOCOL).resolved().run_key() == "c7e2da0d52"
    assert RunConfig(method="lora", task="cb", seed=3, **LEGACY_PROTOCOL).resolved().run_key() == "2b95991105"
    assert RunConfig().resolved().run_key() != "c7e2da0d52"  # the new defaults are another computation


def test_bfloat16_checkpoints_load_in_float32(tmp_path):
    """Hub decoders are often stored in bfloat16 (Qwen2, Llama); the classifier trains in float32 like the paper."""
    from transformers import AutoModel

    torch.manual_seed(0)
    # (Llama: transformers 5 reads a qwen2 folder's tokenizer as Qwen2Tokenizer, whatever class saved it)
    AutoModel.from_config(tiny_decoder_config("llama")).to(torch.bfloat16).save_pretrained(tmp_path)
    decoder_tokenizer().save_pretrained(tmp_path)
    clf = Classifier.from_pretrained(str(tmp_path), 2)
    assert {p.dtype for p in clf.parameters()} == {torch.float32} and clf.pooling == "last"
    batch = load_tokenizer(str(tmp_path))(TEXTS, padding=True, return_tensors="pt")
    assert clf(**batch).dtype == torch.float32
