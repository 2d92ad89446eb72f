"""Downstream metrics on planted ground truth: sae-probes sparse probing and SAEBench absorption, run through the
libraries' own functions with tiny local models, synthetic activations and SAEs built here."""

import numpy as np
import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig
from transformers import AutoModelForCausalLM, LlamaConfig

from l0eval.activations.llm.models import LoadedModel
from l0eval.downstream import absorption, probe_data, sae_probes_protocol, saebench_probing
from l0eval.downstream.probe_data import ProbeActivations
from l0eval.errors import L0EvalError

HOOK = "blocks.0.hook_resid_post"
DATASET = "119_us_state_TX"  # 1000 labelled prompts shipped with sae-probes; its labels, our activations
D_IN = 16


def sae_from(w_enc: torch.Tensor, b_enc: torch.Tensor, w_dec: torch.Tensor) -> StandardSAE:
    """A ReLU SAE (sae-lens) with the given weights: w_enc [d_in, d_sae], w_dec [d_sae, d_in]."""
    sae = StandardSAE(StandardSAEConfig(d_in=w_enc.shape[0], d_sae=w_enc.shape[1]))
    with torch.no_grad():
        sae.W_enc.copy_(w_enc)
        sae.b_enc.copy_(b_enc)
        sae.W_dec.copy_(w_dec)
        sae.b_dec.zero_()
    return sae


# ---------------------------------------------------------------------------------------------
# sparse probing (sae-probes protocol)


def planted_probe_activations(tmp_path, direction: torch.Tensor, seed: int = 0) -> ProbeActivations:
    """Activations for a real sae-probes dataset whose label is carried by ``direction`` only: x = noise + 3 y u."""
    from sae_probes.utils_data import get_yvals

    labels = torch.tensor(get_yvals(DATASET), dtype=torch.float32)
    noise = torch.randn(len(labels), D_IN, generator=torch.Generator().manual_seed(seed))
    target = ProbeActivations(tmp_path / "probe-acts", "tiny")
    target.path(DATASET, HOOK).parent.mkdir(parents=True)
    torch.save(noise + 3 * labels[:, None] * direction, target.path(DATASET, HOOK))
    return target


def random_sae_without(direction: torch.Tensor, d_sae: int = 32, seed: int = 1) -> StandardSAE:
    """Random unit latents with ``direction`` projected out of every encoder row: blind to it."""
    weights = torch.randn(D_IN, d_sae, generator=torch.Generator().manual_seed(seed))
    weights -= direction[:, None] * (direction @ weights)[None, :]
    weights /= weights.norm(dim=0, keepdim=True)
    return sae_from(weights, torch.zeros(d_sae), weights.T.clone())


def test_sparse_probing_finds_a_planted_direction_and_fails_without_it(tmp_path):
    direction = torch.nn.functional.normalize(torch.randn(D_IN, generator=torch.Generator().manual_seed(3)), dim=0)
    activations = planted_probe_activations(tmp_path, direction)
    blind = random_sae_without(direction)
    seeing = random_sae_without(direction)
    with torch.no_grad():  # latent 7 reads the planted direction
        seeing.W_enc[:, 7] = direction
        seeing.W_dec[7] = direction
    found = sae_probes_protocol.probe_scores(seeing, activations, HOOK, [DATASET], [1, 16], seed=0)[DATASET]
    missed = sae_probes_protocol.probe_scores(blind, activations, HOOK, [DATASET], [1, 16], seed=0)[DATASET]
    assert found["1"]["f1"] > 0.9 and found["1"]["auc"] > 0.95
    assert missed["1"]["f1"] < 0.65 and missed["16"]["auc"] < 0.7
    residual = sae_probes_protocol.probe_scores(sae_probes_protocol.ResidualChannels(), activations, HOOK,
                                                [DATASET], [16], seed=0)[DATASET]
    assert residual["16"]["f1"] > 0.9  # every channel is available to the residual baseline


def test_the_same_seed_gives_the_same_probing_scores(tmp_path):
    direction = torch.nn.functional.normalize(torch.ones(D_IN), dim=0)
    activations = planted_probe_activations(tmp_path, 0.3 * direction)
    sae = random_sae_without(torch.nn.functional.normalize(torch.arange(D_IN, dtype=torch.float32), dim=0))
    first = sae_probes_protocol.probe_scores(sae, activations, HOOK, [DATASET], [1, 16], seed=5)
    second = sae_probes_protocol.probe_scores(sae, activations, HOOK, [DATASET], [1, 16], seed=5)
    other = sae_probes_protocol.probe_scores(sae, activations, HOOK, [DATASET], [1, 16], seed=6)
    assert first == second
    assert first != other  # the seed reaches sae-probes' split, so it is not ignored
    means = sae_probes_protocol.family_means(first, [1, 16], "sparse_probing")
    assert means["sparse_probing_k1"] == first[DATASET]["1"]["f1"]
    assert set(means) == {f"sparse_probing_k{k}{s}" for k in (1, 16) for s in ("", "_acc", "_auc")}


def planted_token_activations(direction: torch.Tensor, n: int, seed: int) -> dict[str, torch.Tensor]:
    """Two classes of [n, 6, D_IN] token activations; class "1" carries ``direction`` at every position, and the
    last position is zero (padding, which the pooling must ignore)."""
    generator = torch.Generator().manual_seed(seed)
    acts = {label: torch.randn(n, 6, D_IN, generator=generator) + 2 * int(label) * direction for label in "01"}
    for tensor in acts.values():
        tensor[:, -1] = 0
    return acts


def test_saebench_probing_finds_a_planted_direction_and_is_seeded():
    direction = torch.nn.functional.normalize(torch.randn(D_IN, generator=torch.Generator().manual_seed(4)), dim=0)
    train, test = planted_token_activations(direction, 150, 0), planted_token_activations(direction, 60, 1)
    blind = random_sae_without(direction)
    seeing = random_sae_without(direction)
    with torch.no_grad():
        seeing.W_enc[:, 7] = direction
        seeing.W_dec[7] = direction

    def scores(sae, seed=0):
        return saebench_probing.top_k_accuracies(saebench_probing.meaned_sae(train, sae),
                                                 saebench_probing.meaned_sae(test, sae), (1, 5), seed)

    assert scores(seeing)["1"] > 0.9 and scores(blind)["1"] < 0.7 and scores(blind)["5"] < 0.7
    assert scores(blind, seed=3) == scores(blind, seed=3)
    residual = saebench_probing.top_k_accuracies(saebench_probing.meaned_residual(train),
                                                 saebench_probing.meaned_residual(test), (16,), 0)
    assert residual["16"] > 0.9


def test_saebench_probing_falls_back_to_sae_probes_datasets_offline():
    setting = saebench_probing.SAEBenchProbingSetting(train_per_class=30, test_per_class=10,
                                                      fallback_datasets=(DATASET, "156_athlete_sport_baseball"))
    texts, missing = saebench_probing.class_texts(setting, ["156_athlete_sport_baseball"], seed=0)
    assert missing == saebench_probing.hub_datasets()  # no SAEBench dataset is in this machine's HF cache
    train, test = texts[DATASET]
    assert list(texts) == [DATASET] and set(train) == {"0", "1"}
    assert all(len(v) == 30 for v in train.values()) and all(len(v) == 10 for v in test.values())
    assert not set(train["1"]) & set(test["1"])
    assert saebench_probing.class_texts(setting, [], seed=0)[0][DATASET] == texts[DATASET]  # seeded


def test_dataset_choice_excludes_the_sae_training_corpus_and_rejects_unknown_names():
    # 111_yelp_data ships with sae-probes but is not one of its binary probing datasets
    assert probe_data.datasets_in_corpus("100_news_fake.jsonl,111_yelp_data.jsonl") == ["100_news_fake"]
    assert probe_data.choose_datasets(None, "cpu", []) == list(probe_data.CPU_DATASETS)
    assert "100_news_fake" not in probe_data.choose_datasets(None, "cuda", ["100_news_fake"])
    assert len(probe_data.choose_datasets(None, "cuda", [])) == len(probe_data.all_datasets()) > 100
    with pytest.raises(L0EvalError, match="unknown sae-probes dataset"):
        probe_data.choose_datasets(["no_such_dataset"], "cpu", [])


def word_tokenizer(words):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(["<pad>", "<bos>", "<eos>", "<unk>", *words])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>")


def test_probe_activations_are_the_last_token_and_computed_once(monkeypatch):
    from sae_probes.utils_data import read_numbered_dataset_df

    prompts = read_numbered_dataset_df(DATASET)["prompt"].tolist()
    tokenizer = word_tokenizer(sorted({w for p in prompts[:200] for w in p.split()}))
    config = LlamaConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=64, vocab_size=len(tokenizer), bos_token_id=1, pad_token_id=0)
    torch.manual_seed(0)
    loaded = LoadedModel(AutoModelForCausalLM.from_config(config).eval(), tokenizer, "tiny-llama", "test")
    target = probe_data.ensure_probe_activations(loaded, HOOK, [DATASET], "cpu", progress=False)
    acts = torch.load(target.path(DATASET, HOOK))
    assert acts.shape == (len(prompts), 32)
    ids = torch.tensor([[1, *tokenizer(prompts[3], add_special_tokens=False)["input_ids"]]])
    with torch.no_grad():
        alone = loaded.model(input_ids=ids, output_hidden_states=True).hidden_states[1][0, -1]
    assert torch.allclose(acts[3], alone, atol=1e-4)  # batching with padding changes nothing
    monkeypatch.setattr(probe_data, "last_token_activations", lambda *a, **k: pytest.fail("recomputed"))
    assert probe_data.ensure_probe_activations(loaded, HOOK, [DATASET], "cpu", progress=False) == target


# ---------------------------------------------------------------------------------------------
# absorption (SAEBench first letter)

LETTERS = "abcdefghijklmnopqrstuvwxyz"
TEMPLATE_WORDS = ["has", "the", "first", "letter", ":", *LETTERS.upper()]


class AbsorptionWorld:
    """A one-layer Llama whose embeddings spell first letters: token w embeds as 4 d_L + (its own direction n_w
    if w is absorbed, else noise), with d_L, n_w orthonormal. The attention and MLP are initialised near zero,
    so the residual stream after layer 0 is the embedding."""

    def __init__(self, words_per_letter: int = 40, absorbed_per_letter: int = 10, seed: int = 0):
        rng = np.random.default_rng(seed)
        taken = set(w.lower() for w in TEMPLATE_WORDS)
        self.words: dict[str, list[str]] = {}
        for letter in LETTERS:
            chosen = []
            while len(chosen) < words_per_letter:
                word = letter + "".join(rng.choice(list(LETTERS), size=int(rng.integers(3, 6))))
                if word not in taken:
                    taken.add(word)
                    chosen.append(word)
            self.words[letter] = chosen
        self.absorbed = {letter: words[:absorbed_per_letter] for letter, words in self.words.items()}
        all_words = [w for words in self.words.values() for w in words]
        self.tokenizer = word_tokenizer(TEMPLATE_WORDS + all_words)
        n_absorbed = 26 * absorbed_per_letter
        self.d_model = 26 + n_absorbed + 34
        basis = torch.linalg.qr(torch.from_numpy(rng.normal(size=(self.d_model, self.d_model))).float())[0]
        self.letter_dir = {letter: basis[:, i] for i, letter in enumerate(LETTERS)}
        absorbed_words = [w for words in self.absorbed.values() for w in words]
        self.word_dir = {w: basis[:, 26 + i] for i, w in enumerate(absorbed_words)}
        rest = basis[:, 26 + n_absorbed:]
        embedding = torch.zeros(len(self.tokenizer), self.d_model)
        for token, index in self.tokenizer.get_vocab().items():
            noise = rest @ torch.from_numpy(rng.normal(size=rest.shape[1])).float()
            noise = 0.3 * noise / noise.norm()
            if token.isalpha():
                embedding[index] = 4 * self.letter_dir[token[0].lower()] + self.word_dir.get(token, noise)
            else:
                embedding[index] = noise
        config = LlamaConfig(num_hidden_layers=1, hidden_size=self.d_model, num_attention_heads=4,
                             num_key_value_heads=4, intermediate_size=32, vocab_size=len(self.tokenizer),
                             bos_token_id=1, pad_token_id=0, initializer_range=1e-5, max_position_embeddings=128)
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config).eval()
        with torch.no_grad():
            model.model.embed_tokens.weight.copy_(embedding)
        self.loaded = LoadedModel(model, self.tokenizer, "absorption-world", f"seed{seed}")

    def sae(self, planted: bool) -> StandardSAE:
        """26 letter latents (+ one latent per absorbed word). Planted: each absorbed word has its own latent whose
        decoder carries the letter, and the letter latent is switched off on it (it absorbs the letter)."""
        absorbed_words = list(self.word_dir)
        d_sae = 26 + len(absorbed_words)
        w_enc, b_enc, w_dec = torch.zeros(self.d_model, d_sae), torch.zeros(d_sae), torch.zeros(d_sae, self.d_model)
        for i, letter in enumerate(LETTERS):
            w_enc[:, i] = self.letter_dir[letter]
            if planted:
                w_enc[:, i] -= 8 * sum(self.word_dir[w] for w in self.absorbed[letter])
            b_enc[i] = -1.0
            w_dec[i] = self.letter_dir[letter]
        for j, word in enumerate(absorbed_words, start=26):
            w_dec[j] = torch.nn.functional.normalize(4 * self.letter_dir[word[0]] + self.word_dir[word], dim=0)
            if planted:
                w_enc[:, j], b_enc[j] = 8 * self.word_dir[word], -4.0
            else:
                b_enc[j] = -1.0  # a dead latent: the control SAE is the same width
        return sae_from(w_enc, b_enc, w_dec)


def test_absorption_detects_a_planted_absorbing_latent():
    world = AbsorptionWorld()
    setting = absorption.AbsorptionSetting(max_k_value=3, precalc_sae_acts=True)  # k <= 3: fewer probe fits
    planted, control = absorption.run_absorption(world.loaded, HOOK, [("planted", world.sae(True)),
                                                                      ("control", world.sae(False))], setting, seed=0)
    assert control["absorption_fraction"] < 0.02 and control["full_absorption"] < 0.02
    assert planted["absorption_fraction"] > 0.1 and planted["full_absorption"] > 0.1
    details = planted["saebench"]["eval_result_details"]
    assert len(details) >= 20 and {"first_letter", "mean_absorption_fraction", "full_absorption_rate",
                                   "num_full_absorption", "num_probe_true_positives",
                                   "num_split_features"} <= set(details[0])
    assert planted["saebench"]["eval_type_id"] == "absorption_first_letter"
    assert planted["saebench"]["eval_config"]["random_seed"] == 0


class ReorderedVocab(absorption.IdOrderedVocab):
    """A tokenizer whose vocab dict comes in reverse order, as a fast tokenizer's may in another process."""

    def __init__(self, tokenizer):
        super().__init__(tokenizer)
        self.vocab = dict(reversed(self.vocab.items()))

    def get_vocab(self):
        return self.vocab


def test_saebench_word_lists_do_not_depend_on_the_tokenizers_dict_order():
    from sae_bench.evals.absorption.vocab import get_alpha_tokens

    tokenizer = word_tokenizer(["apple", "banana", "cherry", "date", "elder", "fig", "grape"])
    reordered = ReorderedVocab(tokenizer)
    assert get_alpha_tokens(reordered) != get_alpha_tokens(tokenizer)  # sae-bench follows the dict's order
    assert get_alpha_tokens(absorption.IdOrderedVocab(reordered)) == get_alpha_tokens(
        absorption.IdOrderedVocab(tokenizer))
    config = LlamaConfig(num_hidden_layers=1, hidden_size=16, num_attention_heads=2, num_key_value_heads=2,
                         intermediate_size=16, vocab_size=len(tokenizer), bos_token_id=1, pad_token_id=0)
    loaded = LoadedModel(AutoModelForCausalLM.from_config(config).eval(), reordered, "tiny", "test")
    hooked = absorption.HookedModel(loaded, "tiny", "cpu", keep_last=1)
    assert list(hooked.tokenizer.vocab.values()) == sorted(tokenizer.get_vocab().values())
    assert hooked.to_tokens("apple fig").tolist() == [[tokenizer.bos_token_id, *tokenizer("apple fig")["input_ids"]]]


def test_absorption_reads_resid_post_of_the_layer_before_a_resid_pre_hook():
    assert absorption.resid_post_layer("blocks.6.hook_resid_pre") == 5
    assert absorption.resid_post_layer("blocks.6.hook_resid_post") == 6
    with pytest.raises(absorption.AbsorptionUnavailable, match="embeddings"):
        absorption.resid_post_layer("blocks.0.hook_resid_pre")


def test_absorption_needs_words_for_every_letter():
    tokenizer = word_tokenizer(["apple", "banana", "cherry", "has", "the", "first", "letter"])
    config = LlamaConfig(num_hidden_layers=1, hidden_size=16, num_attention_heads=2, num_key_value_heads=2,
                         intermediate_size=16, vocab_size=len(tokenizer), bos_token_id=1, pad_token_id=0)
    loaded = LoadedModel(AutoModelForCausalLM.from_config(config).eval(), tokenizer, "tiny", "test")
    with pytest.raises(absorption.AbsorptionUnavailable, match="at least 5 single-token alphabetic words per first"):
        absorption.run_absorption(loaded, HOOK, [], absorption.CPU_REDUCED, seed=0)


def test_llm_family_run_merges_probing_into_the_family_results(tmp_path, capsys):
    from test_activations import llm_family

    from l0eval.cli import main
    from l0eval.results import read_results

    family = llm_family(tmp_path)
    assert main(["run", "--family", str(family), "--out", str(tmp_path / "out"), "--quiet", "--metrics", "snd,probing",
                 "--probe-datasets", DATASET, "156_athlete_sport_baseball", "--probe-k", "1", "16", "--seed", "3"]) == 0
    results = read_results(tmp_path / "out" / "tiny-llm-family.json")
    for entry in results["saes"]:
        assert {"sparse_probing_k1", "sparse_probing_k16", "sparse_probing_k1_auc"} <= set(entry["metrics"])
        assert set(entry["downstream"]["sparse_probing"]) == {DATASET, "156_athlete_sport_baseball"}
        assert "ce_loss_score" not in entry["metrics"]  # core's spliced CE/KL was not asked for
    assert all("sparse_probing_k16" in row and "s_n_dec@23" in row for row in results["by_l0"])
    baselines = results["downstream_baselines"]
    assert 0 <= baselines["residual_top_k"]["sparse_probing_k16"] <= 1
    assert set(baselines["residual_full_width"]["per_dataset"]) == {DATASET, "156_athlete_sport_baseball"}
    record = results["run"]["downstream"]
    assert record["metrics"] == ["snd", "probing"] and results["run"]["seeds"] == {"downstream": 3}
    assert record["sparse_probing"]["library"] == "sae-probes" and record["sparse_probing"]["ks"] == [1, 16]
    assert results["run"]["library_versions"]["sae-probes"] == record["sparse_probing"]["version"]
    assert all({"saebench_probing_k1", "saebench_probing_k50"} <= set(e["metrics"]) for e in results["saes"])
    assert record["saebench_probing"]["source"] == "sae-probes datasets (offline fallback)"
    assert 0 <= baselines["saebench_residual_top_k"]["saebench_probing_k1"] <= 1


def test_unknown_metric_is_a_clear_error(tmp_path, capsys):
    from test_activations import llm_family

    from l0eval.cli import main

    assert main(["run", "--family", str(llm_family(tmp_path)), "--metrics", "core,probes"]) == 2
    assert "unknown metric(s) probes" in capsys.readouterr().err
    assert main(["run", "--family", str(llm_family(tmp_path)), "--metrics", "probing"]) == 2
    assert "have no nominal_l0" in capsys.readouterr().err


def test_absorption_that_cannot_run_is_skipped_by_default_and_an_error_when_asked_for():
    from l0eval.downstream.suite import DownstreamConfig, run_downstream

    tokenizer = word_tokenizer(["apple", "has", "the", "first", "letter"])
    config = LlamaConfig(num_hidden_layers=1, hidden_size=16, num_attention_heads=2, num_key_value_heads=2,
                         intermediate_size=16, vocab_size=len(tokenizer), bos_token_id=1, pad_token_id=0)
    loaded = LoadedModel(AutoModelForCausalLM.from_config(config).eval(), tokenizer, "tiny", "test")
    outcome = run_downstream(loaded, HOOK, [], [], DownstreamConfig(metrics=("absorption",)), "cpu", [])
    assert "single-token alphabetic words" in outcome["record"]["skipped"]["absorption"]
    with pytest.raises(absorption.AbsorptionUnavailable):
        run_downstream(loaded, HOOK, [], [], DownstreamConfig(metrics=("absorption",), explicit=True), "cpu", [])
