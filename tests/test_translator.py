"""anatomy-translator: the task's reference function against num2words, the data split, our
layers against torch.nn.Transformer, the ONNX graphs against torch, and the trained model's
held-out accuracy recomputed through the committed graphs."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from num2words import num2words

from models import numbers as N
from models.runtime import Engine, EngineError
from models.translation import open_translator, translate
from models.translator import Translator, TranslatorConfig
from models.translator_export import reference_parity
from models.translator_train import accuracy, batch, decoded_text, loss_of
from tests.conftest import STATIC


def oracle(n: int) -> str:
    """num2words' American English without its commas and its British "and"."""
    return num2words(n).replace(",", "").replace(" and ", " ")


# -- the task -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "text"),
    [
        (1204, "one thousand two hundred four"),
        (42, "forty-two"),
        (700010, "seven hundred thousand ten"),
        (0, "zero"),
        (999999, "nine hundred ninety-nine thousand nine hundred ninety-nine"),
        (100000, "one hundred thousand"),
    ],
)
def test_words_of_the_issue(n, text):
    assert N.words(n) == text


def test_words_equal_num2words():
    rng = np.random.default_rng(7)
    sample = [*range(0, 2101), *rng.integers(0, N.LIMIT + 1, size=20000).tolist(), N.LIMIT]
    bad = [(n, N.words(n), oracle(n)) for n in sample if N.words(n) != oracle(n)]
    assert not bad, bad[:5]


def test_tokens_are_the_vocabulary_and_fit():
    longest = max(len(N.word_tokens(n)) for n in range(N.LIMIT + 1))
    assert longest == N.MAX_WORDS == len(N.word_tokens(777777))
    for n in (42, 1204, 700010, 90):
        toks = N.word_tokens(n)
        assert all(t in N.TARGET_IDS for t in toks)
        assert N.join(toks) == N.words(n)
    assert N.word_tokens(42) == ["forty-", "two"]
    assert len(set(N.TARGET_TOKENS)) == len(N.TARGET_TOKENS)


@pytest.mark.parametrize("bad", [-1, N.LIMIT + 1, 1.5, True, "12"])
def test_words_refuse_what_is_out_of_range(bad):
    with pytest.raises(ValueError, match="0 to 999,999"):
        N.word_tokens(bad)


@pytest.mark.parametrize(
    ("typed", "digits"),
    [
        ("1204", "1204"),
        (" 12,345 ", "12345"),
        ("12 345", "12345"),
        ("999,999", "999999"),
        ("0042", "0042"),
    ],
)
def test_parse_accepts_digits_and_separators(typed, digits):
    assert N.parse(typed) == digits


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "Type a number"),
        ("   ", "Type a number"),
        ("12a", "not a number in digits"),
        ("-5", "not a number in digits"),
        ("1e5", "not a number in digits"),
        ("12,34", "not a number in digits"),
        ("١٢٣", "not a number in digits"),
        ("²", "not a number in digits"),
        ("1000000", "beyond what the translator was trained on"),
        ("1,000,000", "beyond what the translator was trained on"),
        ("0000000", "beyond"),
    ],
)
def test_parse_refuses_with_a_message(typed, message):
    with pytest.raises(ValueError, match=message):
        N.parse(typed)


def test_held_out_numbers_are_never_trained_on():
    held, rounded = N.held_out(), N.held_out_round()
    assert len(np.unique(held)) == 2000 and len(np.unique(rounded)) == 500
    assert (
        held.min() >= 1000 and rounded.min() >= 1000 and max(held.max(), rounded.max()) <= N.LIMIT
    )
    exclude = np.concatenate([held, rounded])
    train = N.training_numbers(np.random.default_rng(0), 200_000, exclude)
    assert not np.isin(train, exclude).any()
    assert np.array_equal(N.held_out(), held)  # deterministic
    lengths = np.bincount([len(str(n)) for n in train], minlength=7)[1:]
    assert (lengths > 0.12 * len(train)).all()  # every number of digits, about a sixth each
    assert (train % 1000 == 0).mean() > 0.05  # round numbers are there to learn from


# -- the model --------------------------------------------------------------------------------
def _padded_batch(count: int, seed: int = 0):
    ns = N.training_numbers(np.random.default_rng(seed), count, np.empty(0, dtype=np.int64))
    return ns, *batch(ns)


def test_our_layers_equal_torch_nn_transformer():
    torch.manual_seed(0)
    model = Translator(TranslatorConfig())
    # trained-looking weights: random biases and norms too, not their zero/one init
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert reference_parity(model, count=128) <= 1e-4


def test_padding_changes_nothing():
    """A number's logits are the same alone and in a padded batch of longer ones."""
    torch.manual_seed(1)
    model = Translator(TranslatorConfig()).eval()
    ns, src, tgt_in, _ = _padded_batch(32)
    i = int(np.argmin([len(str(n)) for n in ns]))
    with torch.no_grad():
        together = model(src, tgt_in)[i]
        alone_src = torch.tensor([N.source_ids(str(ns[i]))])
        alone_tgt = torch.tensor([N.target_ids(int(ns[i]))[:-1]])
        alone = model(alone_src, alone_tgt)[0]
    T = alone.shape[0]
    assert torch.allclose(together[:T], alone, atol=1e-5)


def test_loss_ignores_padding():
    torch.manual_seed(2)
    model = Translator(TranslatorConfig()).eval()
    _, src, tgt_in, tgt_out = _padded_batch(16)
    logits = model(src, tgt_in)
    real = tgt_out != 0
    want = torch.nn.functional.cross_entropy(logits[real], tgt_out[real])
    assert torch.allclose(loss_of(model, src, tgt_in, tgt_out), want)


# -- the build's graphs -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quick_translator(quick_build):
    entry = json.loads((quick_build / "manifest.json").read_text())["translator"]
    model = Translator(TranslatorConfig(**entry["config"]))
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(quick_build / entry["weights_file"])))
    return entry, model.eval()


def test_quick_build_records_how_to_call_the_graphs(quick_build, quick_translator):
    entry, model = quick_translator
    assert entry["encoder"]["inputs"] == ["src_ids"]
    assert entry["encoder"]["outputs"] == ["memory", "enc_attn"]
    assert entry["decoder"]["inputs"] == ["tgt_ids", "memory"]
    assert entry["decoder"]["outputs"] == ["logits", "self_attn", "cross_attn"]
    assert entry["source_vocab"] == {t: i for i, t in enumerate(N.SOURCE_TOKENS)}
    assert entry["target_vocab"]["<s>"] == entry["target_vocab"][entry["start_token"]]
    assert entry["end_token"] == "</s>" and entry["n_params"] == model.num_params()
    for part in ("encoder", "decoder"):
        session = ort.InferenceSession(str(quick_build / entry[part]["file"]))
        assert [i.name for i in session.get_inputs()] == entry[part]["inputs"]
        assert [o.name for o in session.get_outputs()] == entry[part]["outputs"]
    assert max(entry["parity_max_abs_error"].values()) <= 1e-4
    assert entry["reference_max_abs_error"] <= 1e-4


def test_onnx_greedy_equals_torch_greedy(quick_build, quick_translator):
    """The run-time path (ONNX Runtime, numpy) writes what the torch module writes, and
    reports the torch module's attention."""
    _, model = quick_translator
    runtime = open_translator(Engine(quick_build))
    for typed in ("7", "42", "1204", "700010", "999,999", "0042"):
        digits = N.parse(typed)
        src = torch.tensor([N.source_ids(digits)])
        want = decoded_text(model.greedy(src)[0].tolist())
        got = runtime.translate(typed)
        assert got.text == want
        assert translate(typed, quick_build) == want
        ids = torch.tensor([[N.TARGET_IDS[t] for t in (N.START, *got.tokens[:-1])]])
        with torch.no_grad():
            memory, enc_attn = model.encode(src)
            logits, self_attn, cross = model.decode(ids, memory)
        np.testing.assert_allclose(got.enc_attn, enc_attn[:, 0].numpy(), atol=1e-5)
        np.testing.assert_allclose(got.self_attn, self_attn[:, 0].numpy(), atol=1e-5)
        np.testing.assert_allclose(got.cross_attn, cross[:, 0].numpy(), atol=1e-5)
        p = torch.softmax(logits[0].double(), -1).max(-1).values.numpy()
        np.testing.assert_allclose(got.probs, p, atol=1e-5)


def test_teacher_forcing_feeds_the_reference(quick_build, quick_translator):
    _, model = quick_translator
    runtime = open_translator(Engine(quick_build))
    forced = runtime.teacher_forced("1204")
    assert forced.inputs == (N.START, "one", "thousand", "two", "hundred", "four")
    assert forced.targets == ("one", "thousand", "two", "hundred", "four", N.END)
    src, tgt_in, tgt_out = batch(np.array([1204]))
    with torch.no_grad():
        loss = loss_of(model, src, tgt_in, tgt_out)
    assert forced.loss == pytest.approx(float(loss), abs=1e-4)


def test_a_manifest_without_a_translator_says_so(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 1, "models": [{"name": "x"}]}))
    with pytest.raises(EngineError, match="no translator"):
        open_translator(Engine(tmp_path))


# -- the teaching model -----------------------------------------------------------------------
def test_the_committed_translator_is_right_on_held_out_numbers(static_manifest):
    """Greedy decoding through the committed ONNX graphs, in numpy, on all 2,000 held-out
    numbers at once: at least 95% exact, and what the build's torch evaluation said."""
    entry = static_manifest["translator"]
    enc = ort.InferenceSession(str(STATIC / entry["encoder"]["file"]))
    dec = ort.InferenceSession(str(STATIC / entry["decoder"]["file"]))
    held = N.held_out(entry["training"]["held_out"])
    wrong = 0
    for length in range(4, N.MAX_DIGITS + 1):  # one batch per number of digits: no padding
        ns = held[[len(str(n)) == length for n in held]]
        if not len(ns):
            continue
        src = np.array([N.source_ids(str(n)) for n in ns])
        memory = enc.run(["memory"], {"src_ids": src})[0]
        tgt = np.full((len(ns), 1), N.TARGET_IDS[N.START])
        for _ in range(entry["config"]["max_tgt"]):
            logits = dec.run(["logits"], {"tgt_ids": tgt, "memory": memory})[0]
            tgt = np.concatenate([tgt, logits[:, -1].argmax(-1)[:, None]], axis=1)
        got = [decoded_text(row[1:]) for row in tgt]
        wrong += sum(g != N.words(int(n)) for n, g in zip(ns, got, strict=True))
    acc = 1 - wrong / len(held)
    assert acc >= 0.95
    assert acc == pytest.approx(entry["training"]["held_out_accuracy"], abs=1 / len(held))


def test_torch_accuracy_counts_misses():
    """The build's judge is not lenient: an untrained model gets nothing right."""
    torch.manual_seed(3)
    acc, wrong = accuracy(Translator(TranslatorConfig()), N.held_out(50))
    assert acc == 0.0 and len(wrong) == 50 and all(w["got"] != w["want"] for w in wrong)
